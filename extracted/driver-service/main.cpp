// driver-service: the first service extracted from RideShare. Wires its own store (SOCI), the
// monolith client for data it does not own, the use cases, and both APIs (its own /v2 and the
// legacy /api/drivers through the ACL).
#include <Poco/URI.h>
#include <CLI/CLI.hpp>

#include <ctime>
#include <iostream>
#include <memory>
#include <optional>

#include "driver_service/application/driver_service_impl.h"
#include "driver_service/http/routes.h"
#include "driver_service/monolith/monolith_trip_stats.h"
#include "driver_service/persistence/soci_driver_store.h"
#include "strangler/common/db.h"
#include "strangler/common/etcd_client.h"
#include "strangler/common/host_port.h"
#include "strangler/common/json_api.h"

namespace {

class SystemClock : public strangler::driver_service::ports::Clock {
 public:
  strangler::driver_service::domain::EpochSeconds now() override { return std::time(nullptr); }
};

}  // namespace

int main(int argc, char** argv) {
  namespace common = strangler::common;
  namespace ds = strangler::driver_service;

  CLI::App app{"driver-service: drivers, extracted from the RideShare monolith"};
  std::string listen = "127.0.0.1:8082";
  std::string db = "sqlite3://db=driver-service.db";
  std::string monolith_url;
  unsigned threads = 16;
  bool access_log = false;
  app.add_option("--listen", listen, "HOST:PORT to serve on (port 0 picks a free one)");
  app.add_option("--db", db, "SOCI connection string of the service's own database");
  app.add_option("--monolith", monolith_url,
                 "the monolith's base URL (http://HOST:PORT) for data the service does not own");
  app.add_option("--threads", threads, "request threads")->check(CLI::Range(1u, 256u));
  app.add_flag("--access-log", access_log, "log one line per request on stderr");
  std::string register_url;
  int register_ttl = 5;
  app.add_option("--register", register_url,
                 "register the listen address in etcd under this prefix, with a lease kept alive "
                 "(etcd://HOST:PORT[,HOST:PORT]/services/driver-service)");
  app.add_option("--register-ttl", register_ttl, "the registration lease's TTL in seconds")
      ->check(CLI::Range(1, 3600));
  CLI11_PARSE(app, argc, argv);
  std::optional<common::EtcdLocation> registry;
  if (!register_url.empty()) {
    auto parsed = common::parseEtcdUrl(register_url);
    if (!parsed.ok()) {
      std::cerr << "driver-service: --register: " << parsed.error().message << "\n";
      return 2;
    }
    registry = *parsed;
  }

  auto address = common::parseHostPort(listen);
  if (!address.ok()) {
    std::cerr << "driver-service: --listen: " << address.error().message << "\n";
    return 2;
  }
  auto target = common::parseConnectionString(db);
  if (!target.ok()) {
    std::cerr << "driver-service: --db: " << target.error().message << "\n";
    return 2;
  }
  std::unique_ptr<ds::ports::TripStats> stats = std::make_unique<ds::monolith::NoTripStats>();
  if (!monolith_url.empty()) {
    Poco::URI uri(monolith_url);
    if (uri.getScheme() != "http" || uri.getHost().empty()) {
      std::cerr << "driver-service: --monolith: '" << monolith_url << "' is not http://HOST:PORT\n";
      return 2;
    }
    stats = std::make_unique<ds::monolith::MonolithTripStats>(uri.getHost(), uri.getPort(),
                                                              std::chrono::milliseconds(500));
  }

  try {
    common::SessionPool pool(*target, threads);
    ds::persistence::ensureSchema(pool);
    ds::persistence::SociDriverStore store(pool);
    SystemClock clock;
    ds::application::DriverServiceImpl service(store, *stats, clock);

    auto routes = ds::http::modernRoutes(service);
    auto legacy = ds::http::legacyRoutes(service);
    routes.insert(routes.end(), legacy.begin(), legacy.end());
    routes.push_back({"GET", "/healthz", [&service](const common::ApiCall&) {
                        if (!service.healthy())
                          return common::errorReply(503, "unavailable",
                                                    "database is not answering");
                        return common::ApiReply{200, {{"status", "ok"}}, {}};
                      }});
    common::JsonApiOptions options;
    options.access_log = access_log;
    options.map_exception = [](const std::exception& e) -> std::optional<common::ApiReply> {
      if (dynamic_cast<const ds::ports::StorageError*>(&e) != nullptr)
        return common::errorReply(503, "storage_unavailable", e.what());
      return std::nullopt;
    };

    // Registered once serving; the lease is revoked (the instance deregistered) on the way out.
    std::unique_ptr<common::EtcdLeaseKeeper> registration;
    common::serveUntilStopped(
        "driver-service", *address, threads,
        new common::JsonApiHandlerFactory(std::move(routes), std::move(options)),
        "(db " + target->backendName() + ")", [&](const common::HostPort& bound) {
          if (!registry) return;
          const std::string key = registry->key(bound.toString());
          auto kept = common::EtcdLeaseKeeper::start(
              common::EtcdClient(registry->endpoints), register_ttl,
              {{key, nlohmann::json{{"address", bound.toString()}}.dump()}});
          if (!kept.ok()) {
            std::cerr << "driver-service: cannot register in etcd: " << kept.error().message
                      << "\n";
            return;
          }
          registration = std::move(kept).value();
          std::cout << "driver-service registered at " << key << " (ttl " << register_ttl << " s)"
                    << std::endl;
        });
    registration.reset();
  } catch (const std::exception& e) {
    std::cerr << "driver-service: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
