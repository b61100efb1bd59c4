#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace strangler::cli {

/// Options every verb accepts, before or after it.
struct GlobalOptions {
  std::string config = "strangler.json";
  std::string admin;
};

/// What a verb does once its options are parsed; returns the exit code (0 done, 1 refused).
using Action = std::function<int()>;

/// Registers `strangler routes ...` and `strangler status`.
void registerRouteCommands(CLI::App& app, GlobalOptions& global, Action& action);

/// Registers `strangler config validate` and `strangler config export`.
void registerConfigCommands(CLI::App& app, GlobalOptions& global, Action& action);

/// Registers `strangler register` (a service instance in etcd, under a kept-alive lease).
void registerRegisterCommand(CLI::App& app, GlobalOptions& global, Action& action);

/// Registers `strangler demo` (the side-by-side demo deployment).
void registerDemoCommand(CLI::App& app, GlobalOptions& global, Action& action);

/// Registers `strangler sync ...` (data sync between the monolith's and a service's database).
void registerSyncCommands(CLI::App& app, GlobalOptions& global, Action& action);

}  // namespace strangler::cli
