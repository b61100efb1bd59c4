// strangler: the command line that drives a migration. Each verb group registers its own
// subcommands (src/<group>_commands.cpp); this file only wires them together.
#include <iostream>

#include "strangler/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"strangler: migrate a monolith to services one route at a time, reversibly"};
  app.require_subcommand(1);
  strangler::cli::GlobalOptions global;
  // Global options are accepted before or after the verb.
  app.add_option("--config", global.config, "the proxy config file or etcd URL")
      ->capture_default_str();
  app.add_option("--admin", global.admin, "the running proxy's admin URL, to reload after edits");
  app.fallthrough();
  strangler::cli::Action action;
  strangler::cli::registerRouteCommands(app, global, action);
  strangler::cli::registerConfigCommands(app, global, action);
  strangler::cli::registerSyncCommands(app, global, action);
  strangler::cli::registerRegisterCommand(app, global, action);
  strangler::cli::registerDemoCommand(app, global, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (!action) {
    std::cerr << app.help();
    return 2;
  }
  try {
    return action();
  } catch (const std::exception& e) {
    std::cerr << "strangler: " << e.what() << "\n";
    return 1;
  }
}
