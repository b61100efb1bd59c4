// `strangler register`: third-party registration of a service instance in etcd, for processes
// that cannot register themselves. The key lives under a lease kept alive until the command is
// stopped (SIGINT, SIGTERM), which revokes it; killed outright, the lease expires after its TTL.
#include <csignal>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "strangler/cli/commands.h"
#include "strangler/common/etcd_client.h"

namespace strangler::cli {
namespace {

struct RegisterArgs {
  std::string service;
  std::string address;
  int ttl = 10;
  std::string etcd;
  std::string prefix = "/services";
};

int registerInstance(const GlobalOptions& global, const RegisterArgs& args) {
  std::vector<common::HostPort> members;
  if (!args.etcd.empty()) {
    auto parsed = common::parseEtcdEndpoints(args.etcd);
    if (!parsed.ok()) {
      std::cerr << "strangler: --etcd: " << parsed.error().message << "\n";
      return 2;
    }
    members = *parsed;
  } else if (common::isEtcdUrl(global.config)) {
    auto parsed = common::parseEtcdUrl(global.config);
    if (!parsed.ok()) {
      std::cerr << "strangler: --config: " << parsed.error().message << "\n";
      return 2;
    }
    members = parsed->endpoints;
  } else {
    std::cerr << "strangler: register needs etcd: --etcd http://HOST:PORT or --config etcd://...\n";
    return 2;
  }
  auto address = common::parseHostPort(args.address);
  if (!address.ok() || address->port == 0) {
    std::cerr << "strangler: --address '" << args.address << "' is not HOST:PORT\n";
    return 2;
  }
  std::string prefix = args.prefix;
  while (!prefix.empty() && prefix.back() == '/')
    prefix.pop_back();
  const std::string key = prefix + "/" + args.service + "/" + address->toString();

  // Taken synchronously below; the keep-alive thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto keeper = common::EtcdLeaseKeeper::start(
      common::EtcdClient(members), args.ttl,
      {{key,
        nlohmann::json{{"address", address->toString()}, {"registered_by", "strangler"}}.dump()}});
  if (!keeper.ok()) {
    std::cerr << "strangler: cannot register: " << keeper.error().message << "\n";
    return 1;
  }
  std::cout << "registered " << args.service << " at " << address->toString() << " (key " << key
            << ", lease " << (*keeper)->lease() << ", ttl " << args.ttl << " s)" << std::endl;
  int received = 0;
  sigwait(&signals, &received);
  (*keeper)->stop();
  std::cout << "deregistered " << key << std::endl;
  return 0;
}

}  // namespace

void registerRegisterCommand(CLI::App& app, GlobalOptions& global, Action& action) {
  auto args = std::make_shared<RegisterArgs>();
  auto* cmd = app.add_subcommand(
      "register", "register a service instance in etcd under a lease, until stopped");
  cmd->add_option("--service", args->service, "service name (the key is PREFIX/NAME/ADDRESS)")
      ->required();
  cmd->add_option("--address", args->address, "the instance's HOST:PORT")->required();
  cmd->add_option("--ttl", args->ttl, "lease TTL in seconds (kept alive every TTL/3)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_option("--etcd", args->etcd,
                  "etcd members, http://HOST:PORT[,HOST:PORT] (default: those of --config)");
  cmd->add_option("--prefix", args->prefix, "key prefix of the services")->capture_default_str();
  cmd->footer(
      "\nExample:\n  strangler register --service driver-service --address 127.0.0.1:8082 "
      "--ttl 5 --etcd http://127.0.0.1:2379\n"
      "\nA proxy upstream with \"discovery\": {\"etcd_prefix\": \"/services/driver-service\"} "
      "sends\n"
      "to the instance while the command runs; SIGINT/SIGTERM deregister it at once.\n");
  cmd->callback([&action, &global, args] {
    action = [&global, args] { return registerInstance(global, *args); };
  });
}

}  // namespace strangler::cli
