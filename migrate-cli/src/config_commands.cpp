// `strangler config export`: the proxy config translated for nginx or Envoy.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <unistd.h>

#include "config_export.h"
#include "config_store.h"
#include "strangler/cli/commands.h"
#include "strangler/proxy/config.h"

namespace strangler::cli {
namespace {

struct ExportArgs {
  std::string format;
  std::string output;
  std::string file;
  bool if_absent = false;  ///< push: only when no config is stored yet
};

// Writes `text` to `path` through a temporary file and a rename, so that a reader (or an nginx
// reload) never sees half a file.
bool writeAtomically(const std::string& path, const std::string& text, std::string& error) {
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      error = "cannot write " + temp;
      std::remove(temp.c_str());
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    error = "cannot rename " + temp + " to " + path + ": " + ec.message();
    std::remove(temp.c_str());
    return false;
  }
  return true;
}

int exportConfig(const GlobalOptions& global, const ExportArgs& args) {
  const std::string source = args.file.empty() ? global.config : args.file;
  auto config = proxy::ProxyConfig::load(source);
  if (!config.ok()) {
    std::cerr << "strangler: " << source << " is not a valid config, nothing exported:\n"
              << config.error().message << "\n";
    return 1;
  }
  const std::string name = std::filesystem::path(source).filename().string();
  const ExportedConfig exported =
      args.format == "nginx" ? exportNginx(*config, name) : exportEnvoy(*config, name);
  for (const auto& note : exported.notes)
    std::cerr << "note: " << note << "\n";
  if (args.output.empty() || args.output == "-") {
    std::cout << exported.text;
    return std::cout ? 0 : 1;
  }
  std::string error;
  if (!writeAtomically(args.output, exported.text, error)) {
    std::cerr << "strangler: " << error << "\n";
    return 1;
  }
  std::cerr << "wrote " << args.output << " (" << args.format << ", " << config->routes.size()
            << " routes, " << config->upstreams.size() << " upstreams)\n";
  return 0;
}

// Stores a file's config, validated, at the --config location (an etcd prefix, or a file),
// journaled as "push"; a concurrent edit makes it read and try again.
int pushConfig(const GlobalOptions& global, const std::string& file, bool if_absent) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::cerr << "strangler: cannot read " << file << "\n";
    return 1;
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto config = proxy::ProxyConfig::parse(text.str());
  if (!config.ok()) {
    std::cerr << "strangler: " << file << " is not a valid config, nothing pushed:\n"
              << config.error().message << "\n";
    return 1;
  }
  const auto document = nlohmann::ordered_json::parse(text.str());
  return retryEdits([&] {
    auto store = ConfigStore::open(global.config, ConfigStore::Mode::kReplace);
    if (!store.ok()) {
      std::cerr << "strangler: " << store.error().message << "\n";
      return 1;
    }
    if (if_absent && !store->json().is_null()) {
      // A deployment's seed job runs again on every apply: live edits win over the seed.
      std::cout << "kept the config already at " << global.config << " (--if-absent)\n";
      return 0;
    }
    nlohmann::ordered_json before{{"config_hash", nullptr}};
    if (!store->json().is_null()) {
      auto old = proxy::ProxyConfig::create(nlohmann::json::parse(store->json().dump()));
      if (old.ok()) before["config_hash"] = old->hash;
    }
    store->json() = document;
    JournalEntry entry{nowIso8601(),
                       "",
                       "push",
                       before,
                       {{"config_hash", config->hash}},
                       whoAmI(),
                       {{"file", std::filesystem::path(file).filename().string()}}};
    auto result = commitAndReload(*store, entry, global.admin);
    if (!result.ok() && result.error().code == "conflict") return kRetryEdit;
    if (!result.ok() && result.error().code != "reload_failed") {
      std::cerr << "strangler: " << result.error().message << "\n";
      return 1;
    }
    std::cout << "pushed " << file << " to " << global.config << " (" << config->routes.size()
              << " routes, config " << config->hash << ")\n";
    if (!result.ok()) {
      std::cerr << "strangler: " << result.error().message << "\n";
      return 1;
    }
    if (*result) std::cout << "proxy reloaded: " << **result << "\n";
    return 0;
  });
}

}  // namespace

void registerConfigCommands(CLI::App& app, GlobalOptions& global, Action& action) {
  auto* config_cmd = app.add_subcommand("config", "validate, push and export configs");
  config_cmd->require_subcommand(1);
  auto args = std::make_shared<ExportArgs>();

  auto* validate =
      config_cmd->add_subcommand("validate", "check a config file; errors name their key path");
  validate->add_option("FILE", args->file, "config file")->required();
  validate->footer("\nExample:\n  strangler config validate strangler.json\n");
  validate->callback([&action, args] {
    action = [args] {
      auto config = proxy::ProxyConfig::load(args->file);
      if (!config.ok()) {
        std::cerr << args->file << ":\n" << config.error().message << "\n";
        return 1;
      }
      std::cout << args->file << ": valid (" << config->routes.size() << " routes, "
                << config->upstreams.size() << " upstreams)\n";
      return 0;
    };
  });

  auto* push = config_cmd->add_subcommand(
      "push", "validate a config file and store it at --config (an etcd URL), journaled");
  push->add_option("FILE", args->file, "config file")->required();
  push->add_flag("--if-absent", args->if_absent,
                 "store it only when no config is stored yet (a deployment's seed)");
  push->footer(
      "\nExample:\n  strangler config push strangler.json --config "
      "etcd://127.0.0.1:2379/strangler/prod\n"
      "\nThe document goes to PREFIX/config in one transaction with its journal line\n"
      "(PREFIX/journal/<sequence>); every proxy following that prefix applies it.\n");
  push->callback([&action, &global, args] {
    action = [&global, args] { return pushConfig(global, args->file, args->if_absent); };
  });

  auto* export_cmd = config_cmd->add_subcommand(
      "export", "translate the config (routes, stages, canary weights) for nginx or Envoy");
  export_cmd
      ->add_option("--format", args->format, "nginx (an nginx.conf) or envoy (JSON bootstrap)")
      ->required()
      ->check(CLI::IsMember({"nginx", "envoy"}));
  export_cmd->add_option("--output,-o", args->output, "write here (atomically); default stdout");
  export_cmd->add_option("FILE", args->file, "config file (default: --config)");
  export_cmd->footer(
      "\nExamples:\n"
      "  strangler config export --format nginx --config strangler.json --output nginx.conf\n"
      "  nginx -p \"$PWD\" -c \"$PWD/nginx.conf\" -g 'daemon off;'\n"
      "  strangler config export --format envoy -o envoy.json\n"
      "\nWhat the target cannot express exactly is printed as notes on stderr (and kept as\n"
      "comments or metadata in the file): nginx splits a canary per key but with its own hash,\n"
      "so a key may sit on the other side than in strangler-proxy; Envoy's split is per "
      "request.\n");
  export_cmd->callback([&action, &global, args] {
    action = [&global, args] { return exportConfig(global, *args); };
  });
}

}  // namespace strangler::cli
