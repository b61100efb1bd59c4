// monolith: the RideShare legacy application. Wires the hexagon together: SOCI persistence
// and a log notifier (driven side), the use cases, and the Poco HTTP API (driving side).
#include <soci/soci.h>
#include <CLI/CLI.hpp>

#include <ctime>
#include <iostream>

#include "monolith/application/demo_seeder.h"
#include "monolith/application/rideshare_service_impl.h"
#include "monolith/http/api_handler_factory.h"
#include "monolith/notifier/log_notifier.h"
#include "monolith/persistence/schema.h"
#include "monolith/persistence/soci_unit_of_work.h"
#include "strangler/common/db.h"
#include "strangler/common/host_port.h"
#include "strangler/common/json_api.h"

namespace {

class SystemClock : public strangler::monolith::ports::Clock {
 public:
  strangler::monolith::domain::EpochSeconds now() override { return std::time(nullptr); }
};

}  // namespace

int main(int argc, char** argv) {
  namespace common = strangler::common;
  namespace mono = strangler::monolith;

  CLI::App app{"RideShare monolith: the legacy taxi-hailing service"};
  std::string listen = "127.0.0.1:8081";
  std::string db = "sqlite3://db=monolith.db";
  int64_t seed = 0;
  unsigned threads = 16;
  bool access_log = false;
  app.add_option("--listen", listen, "HOST:PORT to serve on (port 0 picks a free one)");
  app.add_option("--db", db, "SOCI connection string (sqlite3://db=FILE or postgresql://...)");
  app.add_option("--seed", seed, "fill an empty database with N drivers, passengers and trips")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  app.add_option("--threads", threads, "request threads")->check(CLI::Range(1u, 256u));
  app.add_flag("--access-log", access_log, "log one line per request on stderr");
  CLI11_PARSE(app, argc, argv);

  auto address = common::parseHostPort(listen);
  if (!address.ok()) {
    std::cerr << "monolith: --listen: " << address.error().message << "\n";
    return 2;
  }
  auto target = common::parseConnectionString(db);
  if (!target.ok()) {
    std::cerr << "monolith: --db: " << target.error().message << "\n";
    return 2;
  }

  try {
    common::SessionPool pool(*target, threads);
    {
      soci::session sql(pool.pool());
      mono::persistence::ensureSchema(sql, pool.backend());
    }
    mono::persistence::SociUnitOfWork uow(pool);
    if (seed > 0) {
      const auto report = mono::application::seedDemoData(uow, seed);
      if (report.seeded) {
        std::cerr << "monolith: seeded " << report.drivers << " drivers, " << report.passengers
                  << " passengers, " << report.trips << " trips\n";
      } else {
        std::cerr << "monolith: database already has data; --seed skipped\n";
      }
    }
    mono::notifier::LogNotifier notifier(std::cerr);
    SystemClock clock;
    mono::application::RideShareServiceImpl service(uow, notifier, clock);

    common::serveUntilStopped("monolith", *address, threads,
                              mono::http::makeApiHandlerFactory(
                                  service, {.max_body_bytes = 64 * 1024, .access_log = access_log}),
                              "(db " + target->backendName() + ")");
  } catch (const std::exception& e) {
    std::cerr << "monolith: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
