#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "config_store.h"
#include "strangler/cli/commands.h"
#include "strangler/proxy/config.h"
#include "strangler/proxy/path_normalizer.h"
#include "strangler/proxy/router.h"

namespace strangler::cli {
namespace {

using nlohmann::ordered_json;

struct RouteArgs {
  std::string name;
  std::string path;
  std::string methods;
  std::string target;
  int percent = 0;
  bool json_output = false;
  std::string cases_file;
};

int refuse(const std::string& message) {
  std::cerr << "strangler: " << message << "\n";
  return 1;
}

std::vector<std::string> splitCsv(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Writes and journals an edit, says so, and reloads the proxy when --admin is given.
int finishEdit(const GlobalOptions& global, ConfigStore& store, const JournalEntry& entry,
               const std::string& done) {
  auto result = commitAndReload(store, entry, global.admin);
  if (!result.ok() && result.error().code != "reload_failed") {
    return refuse(result.error().message);
  }
  std::cout << done << "\n";
  if (!result.ok()) return refuse(result.error().message);
  if (*result) std::cout << "proxy reloaded: " << **result << "\n";
  return 0;
}

// Applies a stage change to one route: validated, written, journaled, and (with --admin) the
// proxy reloaded. Returns the exit code.
int changeStage(const GlobalOptions& global, const std::string& name, const std::string& action,
                const std::function<std::optional<std::string>(ordered_json& route)>& edit) {
  auto store = ConfigStore::open(global.config);
  if (!store.ok()) return refuse(store.error().message);
  ordered_json* route = store->route(name);
  if (route == nullptr) return refuse("no route named '" + name + "' in " + global.config);
  const ordered_json before = stageOf(*route);
  if (auto why = edit(*route)) return refuse(*why);
  const ordered_json after = stageOf(*route);
  if (after == before) {
    return refuse("route '" + name + "' is already " + after.dump() + ": nothing to do");
  }
  return finishEdit(global, *store, {nowIso8601(), name, action, before, after, whoAmI()},
                    "route " + name + ": " + before.dump() + " -> " + after.dump());
}

std::optional<std::string> needsTarget(const ordered_json& route, const std::string& stage) {
  if (route.value("target", "").empty()) {
    return "route '" + route.value("name", "") + "' has no target upstream: it cannot go to " +
           stage;
  }
  return std::nullopt;
}

void setStage(ordered_json& route, const std::string& stage, std::optional<int> percent) {
  route["stage"] = stage;
  if (percent) {
    route["percent"] = *percent;
  } else {
    route.erase("percent");
  }
}

int listRoutes(const GlobalOptions& global, bool json_output) {
  auto config = proxy::ProxyConfig::load(global.config);
  if (!config.ok()) return refuse(config.error().message);
  if (json_output) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : config->routes) {
      out.push_back({{"name", r.name},
                     {"path", r.path},
                     {"methods", r.methods},
                     {"target", r.target},
                     {"stage", proxy::stageName(r.stage)},
                     {"percent", r.percent}});
    }
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::printf("%-20s %-30s %-12s %-10s %s\n", "ROUTE", "PATH", "STAGE", "PERCENT", "TARGET");
  for (const auto& r : config->routes) {
    std::printf("%-20s %-30s %-12s %-10s %s\n", r.name.c_str(), r.path.c_str(),
                proxy::stageName(r.stage),
                r.stage == proxy::Stage::kCanary ? std::to_string(r.percent).c_str() : "-",
                r.target.empty() ? "-" : r.target.c_str());
  }
  return 0;
}

// Offline route tests: each case's (method, path, headers) through the proxy's own router.
int testRoutes(const GlobalOptions& global, const std::string& cases_file, bool json_output) {
  auto config = proxy::ProxyConfig::load(global.config);
  if (!config.ok()) return refuse(config.error().message);
  std::ifstream in(cases_file);
  if (!in) return refuse("cannot read " + cases_file);
  std::stringstream text;
  text << in.rdbuf();
  const auto cases = nlohmann::json::parse(text.str(), nullptr, false);
  if (cases.is_discarded() || !cases.contains("cases") || !cases["cases"].is_array()) {
    return refuse(cases_file + ": expected {\"cases\": [...]}");
  }
  proxy::Router router(*config);
  int failed = 0;
  nlohmann::json results = nlohmann::json::array();
  for (std::size_t i = 0; i < cases["cases"].size(); ++i) {
    const auto& c = cases["cases"][i];
    const std::string method = c.value("method", "GET");
    const std::string path = c.value("path", "/");
    proxy::HeaderList headers;
    if (c.contains("headers") && c["headers"].is_object()) {
      for (const auto& [k, v] : c["headers"].items())
        headers.emplace_back(k, v.get<std::string>());
    }
    // The same two steps as the proxy: normalize the target, then route the normalized path.
    const auto normalized = proxy::normalizeTarget(path);
    if (!normalized.ok()) {
      const bool expected_refusal =
          c.value("expect", nlohmann::json::object()).value("refused", false);
      if (!expected_refusal) ++failed;
      results.push_back({{"case", i},
                         {"method", method},
                         {"path", path},
                         {"refused", normalized.error().message},
                         {"ok", expected_refusal}});
      if (!json_output && !expected_refusal)
        std::cout << "FAIL case " << i << ": " << method << " " << path << " is refused ("
                  << normalized.error().message << ")\n";
      continue;
    }
    const auto decision = router.decide({method, normalized->path, &headers}, 0);
    const nlohmann::json got_route =
        decision.route != nullptr ? nlohmann::json(decision.route->name) : nlohmann::json(nullptr);
    const auto& expect = c.value("expect", nlohmann::json::object());
    bool ok = true;
    if (expect.contains("route") && expect["route"] != got_route) ok = false;
    if (expect.contains("upstream") && expect["upstream"] != decision.upstream) ok = false;
    if (!ok) ++failed;
    results.push_back({{"case", i},
                       {"method", method},
                       {"path", path},
                       {"route", got_route},
                       {"upstream", decision.upstream},
                       {"ok", ok}});
    if (!json_output && !ok) {
      std::cout << "FAIL case " << i << ": " << method << " " << path << " -> route "
                << got_route.dump() << ", upstream \"" << decision.upstream << "\"; expected "
                << expect.dump() << "\n";
    }
  }
  if (json_output) {
    std::cout << nlohmann::json{{"passed", results.size() - failed},
                                {"failed", failed},
                                {"cases", results}}
                     .dump()
              << "\n";
  } else {
    std::cout << results.size() - failed << " passed, " << failed << " failed\n";
  }
  return failed == 0 ? 0 : 1;
}

// Back one step per the journal: forward edits push, rollbacks pop.
int rollback(const GlobalOptions& global, const std::string& name) {
  std::optional<ordered_json> restore;
  {
    auto store = ConfigStore::open(global.config);
    if (!store.ok()) return refuse(store.error().message);
    std::vector<JournalEntry> stack;
    for (auto& e : store->journal()) {
      if (e.route != name) continue;
      if (e.action == "rollback") {
        if (!stack.empty()) stack.pop_back();
      } else if (e.action != "add") {
        stack.push_back(e);
      }
    }
    if (stack.empty()) return refuse("the journal has no step of route '" + name + "' to undo");
    restore = stack.back().from;
  }
  return changeStage(
      global, name, "rollback", [&](ordered_json& route) -> std::optional<std::string> {
        const std::string stage = restore->value("stage", "monolith");
        if (stage != "monolith") {
          if (auto why = needsTarget(route, stage)) return why;
        }
        setStage(route, stage,
                 restore->contains("percent") ? std::optional<int>((*restore)["percent"].get<int>())
                                              : std::nullopt);
        return std::nullopt;
      });
}

}  // namespace

void registerRouteCommands(CLI::App& app, GlobalOptions& global, Action& action) {
  auto args = std::make_shared<RouteArgs>();
  auto* routes = app.add_subcommand("routes", "move routes between the monolith and services");
  routes->require_subcommand(1);

  auto* list = routes->add_subcommand("list", "the routes, their stages and targets");
  list->add_flag("--json", args->json_output, "print JSON");
  list->footer("\nExample:\n  strangler routes list --config strangler.json\n");
  list->callback([&action, &global, args] {
    action = [&global, args] { return listRoutes(global, args->json_output); };
  });

  auto* add = routes->add_subcommand("add", "add a route (stage monolith)");
  add->add_option("NAME", args->name, "route name")->required();
  add->add_option("--path", args->path, "match.path: /exact, /with/{param}, /subtree/**")
      ->required();
  add->add_option("--methods", args->methods, "comma-separated methods (default: any)");
  add->add_option("--target", args->target, "the upstream the route moves to")->required();
  add->footer(
      "\nExample:\n  strangler routes add drivers --path '/api/drivers/**' --methods GET,PUT "
      "--target driver-service\n");
  add->callback([&action, &global, args] {
    action = [&global, args] {
      auto store = ConfigStore::open(global.config);
      if (!store.ok()) return refuse(store.error().message);
      if (store->route(args->name) != nullptr) return refuse("route '" + args->name + "' exists");
      ordered_json route{{"name", args->name}, {"match", {{"path", args->path}}}};
      if (!args->methods.empty()) route["match"]["methods"] = splitCsv(args->methods);
      route["target"] = args->target;
      route["stage"] = "monolith";
      if (!store->json().contains("routes")) store->json()["routes"] = ordered_json::array();
      store->json()["routes"].push_back(route);
      return finishEdit(global, *store,
                        {nowIso8601(), args->name, "add", nullptr, stageOf(route), whoAmI()},
                        "route " + args->name + " added (stage monolith)");
    };
  });

  const auto stageVerb = [&](const char* verb, const char* help, const std::string& stage,
                             bool with_percent) {
    auto* cmd = routes->add_subcommand(verb, help);
    cmd->add_option("NAME", args->name, "route name")->required();
    if (with_percent)
      cmd->add_option("--percent", args->percent, "share of traffic to the target, 1..99")
          ->required();
    cmd->footer(std::string("\nExample:\n  strangler routes ") + verb + " drivers" +
                (with_percent ? " --percent 10" : "") + " --admin http://127.0.0.1:9901\n");
    cmd->callback([&global, &action, args, stage, with_percent, verb] {
      action = [&global, args, stage, with_percent, verb] {
        if (with_percent && (args->percent < 1 || args->percent > 99)) {
          return refuse("--percent " + std::to_string(args->percent) + " is not in 1..99");
        }
        return changeStage(
            global, args->name, verb, [&](ordered_json& route) -> std::optional<std::string> {
              if (stage != "monolith") {
                if (auto why = needsTarget(route, stage)) return why;
              }
              setStage(route, stage,
                       with_percent ? std::optional<int>(args->percent) : std::nullopt);
              return std::nullopt;
            });
      };
    });
  };
  stageVerb("shadow", "serve from the monolith, mirror to the target and compare", "shadow", false);
  stageVerb("canary", "send --percent of the traffic to the target", "canary", true);
  stageVerb("extract", "send all traffic to the target", "extracted", false);
  stageVerb("reset", "send all traffic back to the monolith", "monolith", false);

  auto* back = routes->add_subcommand("rollback", "undo the route's last step, per the journal");
  back->add_option("NAME", args->name, "route name")->required();
  back->footer("\nExample:\n  strangler routes rollback drivers --admin http://127.0.0.1:9901\n");
  back->callback([&action, &global, args] {
    action = [&global, args] { return rollback(global, args->name); };
  });

  auto* test =
      routes->add_subcommand("test", "check (method, path, headers) -> route, upstream offline");
  test->add_option("CASES", args->cases_file, "cases JSON file")
      ->required()
      ->check(CLI::ExistingFile);
  test->add_flag("--json", args->json_output, "print JSON");
  test->footer("\nExample:\n  strangler routes test route-cases.json --config strangler.json\n");
  test->callback([&action, &global, args] {
    action = [&global, args] { return testRoutes(global, args->cases_file, args->json_output); };
  });

  auto* status =
      app.add_subcommand("status", "routes and stages, with live figures when the proxy answers");
  status->add_flag("--json", args->json_output, "print JSON");
  status->callback([&action, &global, args] {
    action = [&global, args] {
      auto config = proxy::ProxyConfig::load(global.config);
      if (!config.ok()) return refuse(config.error().message);
      std::string admin = global.admin;
      if (admin.empty()) admin = "http://" + config->admin.listen.toString();
      auto live = fetchAdmin(admin, "/routes");
      if (args->json_output) {
        nlohmann::json out{{"config", global.config},
                           {"proxy", live.ok() ? live.value() : nlohmann::json(nullptr)}};
        std::cout << out.dump() << "\n";
        return 0;
      }
      listRoutes(global, false);
      if (live.ok()) {
        std::cout << "\nproxy at " << admin << " (config version "
                  << live->value("version", nlohmann::json()).dump() << "):\n"
                  << live->dump(2) << "\n";
      } else {
        std::cout << "\nproxy not reachable at " << admin << ": " << live.error().message << "\n";
      }
      return 0;
    };
  });

  auto* config_cmd = app.add_subcommand("config", "validate and export configs");
  config_cmd->require_subcommand(1);
  auto* validate =
      config_cmd->add_subcommand("validate", "check a config file; errors name their key path");
  validate->add_option("FILE", args->cases_file, "config file")->required();
  validate->footer("\nExample:\n  strangler config validate strangler.json\n");
  validate->callback([&action, &global, args] {
    action = [args] {
      auto config = proxy::ProxyConfig::load(args->cases_file);
      if (!config.ok()) {
        std::cerr << args->cases_file << ":\n" << config.error().message << "\n";
        return 1;
      }
      std::cout << args->cases_file << ": valid (" << config->routes.size() << " routes, "
                << config->upstreams.size() << " upstreams)\n";
      return 0;
    };
  });
}

}  // namespace strangler::cli
