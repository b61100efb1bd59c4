// strangler-proxy: parses the command line, starts the proxy and turns signals into reloads
// (SIGHUP), log reopening (SIGUSR1, after a rotation) and graceful stops (SIGTERM, SIGINT).
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "strangler/proxy/proxy_app.h"

int main(int argc, char** argv) {
  using strangler::proxy::ProxyApp;
  using strangler::proxy::ProxyOptions;
  CLI::App cli{"strangler-proxy: routes each request to the monolith or an extracted service"};
  std::string config_path;
  std::string listen;
  std::string admin_listen;
  std::string tls_listen;
  int workers = 0;
  int grace_ms = 10000;
  cli.add_option("--config", config_path,
                 "config file (strangler.json) or etcd URL (etcd://HOST:PORT[,HOST:PORT]/PREFIX)")
      ->required();
  cli.add_option("--listen", listen, "proxy address HOST:PORT (overrides the config)");
  cli.add_option("--tls-listen", tls_listen,
                 "HTTPS address HOST:PORT (overrides tls.listen; needs \"tls\" in the config)");
  cli.add_option("--admin-listen", admin_listen,
                 "admin API address HOST:PORT (overrides the config)");
  std::string advertise_admin;
  cli.add_option("--advertise-admin", advertise_admin,
                 "the admin address other replicas reach this one at (etcd configs; default: the "
                 "admin address, with this host's name when it listens on every interface)");
  cli.add_option("--workers", workers,
                 "event loop threads (default: the config's, else one per core)")
      ->check(CLI::Range(1, 256));
  bool check_only = false;
  cli.add_flag("--check-config", check_only,
               "validate the config, print every error, and exit (0: valid)");
  cli.add_option("--grace-ms", grace_ms, "how long a stop waits for requests in flight")
      ->check(CLI::Range(0, 600000));
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = cli.exit(error);
    return code == 0 ? 0 : 2;
  }

  if (check_only) {
    auto config = strangler::proxy::ProxyConfig::load(config_path);
    if (!config) {
      std::cerr << config.error().message << "\n";
      return 1;
    }
    std::printf("%s: valid (%zu routes, %zu upstreams)\n", config_path.c_str(),
                config->routes.size(), config->upstreams.size());
    return 0;
  }

  ProxyOptions options;
  options.config_path = config_path;
  for (auto [text, target] :
       {std::pair{&listen, &options.listen}, std::pair{&admin_listen, &options.admin_listen},
        std::pair{&tls_listen, &options.tls_listen},
        std::pair{&advertise_admin, &options.advertise_admin}}) {
    if (text->empty()) continue;
    auto address = strangler::common::parseHostPort(*text);
    if (!address) {
      std::cerr << "strangler-proxy: " << address.error().message << "\n";
      return 2;
    }
    *target = address.value();
  }
  if (workers > 0) options.workers = workers;

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // One descriptor per client and per upstream connection: use all the process may have.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  auto app = ProxyApp::start(options);
  if (!app) {
    std::cerr << "strangler-proxy: " << app.error().message << "\n";
    return 1;
  }
  const auto proxy = (*app)->proxyAddress();
  const auto admin = (*app)->adminAddress();
  const auto https = (*app)->tlsAddress();
  const std::string https_text = https ? " https://" + https->toString() : "";
  std::printf("strangler-proxy listening on http://%s%s admin http://%s (config version %llu)\n",
              proxy.toString().c_str(), https_text.c_str(), admin.toString().c_str(),
              static_cast<unsigned long long>((*app)->current()->version));
  std::fflush(stdout);

  for (;;) {
    int signal_number = 0;
    if (sigwait(&signals, &signal_number) != 0) continue;
    if (signal_number == SIGUSR1) {
      (*app)->reopenLogs();
      continue;
    }
    if (signal_number == SIGHUP) {
      auto version = (*app)->reload();
      if (version) {
        std::printf("strangler-proxy reloaded config version %llu\n",
                    static_cast<unsigned long long>(*version));
      } else {
        std::printf("strangler-proxy reload rejected, previous config kept:\n%s\n",
                    version.error().message.c_str());
      }
      std::fflush(stdout);
      continue;
    }
    std::printf("strangler-proxy stopping\n");
    std::fflush(stdout);
    (*app)->stop(std::chrono::milliseconds(grace_ms));
    std::printf("strangler-proxy stopped\n");
    std::fflush(stdout);
    return 0;
  }
}
