#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <regex>
#include <sstream>

#include "config_store.h"
#include "cutover.h"
#include "route_gates.h"
#include "strangler/acl/sync_engine.h"
#include "strangler/cli/commands.h"
#include "strangler/common/etcd_client.h"
#include "strangler/proxy/config.h"
#include "strangler/proxy/path_normalizer.h"
#include "strangler/proxy/router.h"

namespace strangler::cli {
namespace {

using nlohmann::ordered_json;
namespace sync = acl::sync;

struct RouteArgs {
  std::string name;
  std::string path;
  std::string methods;
  std::string target;
  int percent = 0;
  bool json_output = false;
  std::string cases_file;
  bool force = false;
  bool with_data = false;
  std::string from_db;
  std::string to_db;
  std::string mapping = "drivers";
  std::string data;  // routes add --data
  int timeout_ms = 10000;
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
  if (!result.ok() && result.error().code == "conflict") return kRetryEdit;
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
                const std::function<std::optional<std::string>(ordered_json& route)>& edit,
                const ordered_json& extra = ordered_json::object()) {
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
  return finishEdit(global, *store, {nowIso8601(), name, action, before, after, whoAmI(), extra},
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

// Back one step per the journal: forward edits push, rollbacks pop. A step that moved data
// ownership with the route (extract --with-data) is undone with it: the route goes back first
// (the service stops taking writes), then the ownership (which drains the service's changes).
int rollback(const GlobalOptions& global, const RouteArgs& args) {
  const std::string& name = args.name;
  std::optional<ordered_json> restore;
  ordered_json data;
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
    if (stack.back().extra.contains("data")) data = stack.back().extra["data"];
  }
  std::string from_db = args.from_db;
  std::string to_db = args.to_db;
  if (!data.is_null()) {
    if (from_db.empty()) from_db = data.value("from", "");
    if (to_db.empty()) to_db = data.value("to", "");
    if (from_db.find("***") != std::string::npos || to_db.find("***") != std::string::npos)
      return refuse(
          "this step moved data ownership too; pass --from and --to (the journal keeps "
          "the connection strings without their passwords)");
  }
  if (!data.is_null()) {
    // The step moved the data's ownership with the route: undo both with the same fenced walk.
    CutoverRequest request;
    request.route = name;
    request.mapping = data.value("mapping", "drivers");
    request.from_db = from_db;
    request.to_db = to_db;
    request.to_service = false;
    request.step = ordered_json{{"stage", restore->value("stage", "monolith")}};
    if (restore->contains("percent")) request.step["percent"] = (*restore)["percent"];
    request.action = "rollback";
    request.timeout_ms = args.timeout_ms;
    request.json_output = args.json_output;
    return runCutover(global, request);
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

// The admin URL to ask: --admin, else the config's admin.listen.
std::string adminUrl(const GlobalOptions& global, const proxy::ProxyConfig& config) {
  return global.admin.empty() ? "http://" + config.admin.listen.toString() : global.admin;
}

proxy::PlanStep stepOf(const ordered_json& route) {
  const auto stage = proxy::parseStage(route.value("stage", "monolith"));
  return {stage.value_or(proxy::Stage::kMonolith),
          stage == proxy::Stage::kCanary ? route.value("percent", 0) : 0};
}

void setStep(ordered_json& route, const proxy::PlanStep& step) {
  setStage(route, proxy::stageName(step.stage),
           step.stage == proxy::Stage::kCanary ? std::optional<int>(step.percent) : std::nullopt);
}

// Each replica alone, beside the sums: its own figures of each route's current step, and which
// one is the decider.
void printEachReplica(const nlohmann::json& replicas, const common::Result<nlohmann::json>& roles) {
  const std::string decider = roles.ok() && (*roles)["decider"].is_string()
                                  ? (*roles)["decider"].get<std::string>()
                                  : std::string();
  std::cout << "\neach replica alone" << (decider.empty() ? " (no decider now)" : "") << ":\n";
  for (const auto& replica : replicas) {
    const std::string id = replica.value("id", "");
    std::cout << "  " << id << (id == decider ? " (decider)" : "");
    if (!replica.value("answered", false)) {
      std::cout << ": no answer (" << replica.value("error", "") << "; its registry entry written "
                << replica.value("registered_at", "?") << ")\n";
      continue;
    }
    std::cout << ", config version " << replica.value("version", 0) << "\n";
    const nlohmann::json routes = replica.value("routes", nlohmann::json::object());
    for (const auto& [route, figures] : routes.items()) {
      const auto side = [&](const char* which, const char* key) {
        return figures.contains("sides") ? figures["sides"][which].value(key, 0.0) : 0.0;
      };
      std::printf(
          "    %-16s %-12s monolith %6.0f  target %6.0f  err %6.2f%%  compared %6.0f\n",
          route.c_str(),
          (figures.value("stage", "") + (figures.value("stage", "") == "canary"
                                             ? " " + std::to_string(figures.value("percent", 0))
                                             : std::string()))
              .c_str(),
          side("monolith", "requests"), side("target", "requests"),
          side("target", "error_rate") * 100.0,
          figures.contains("shadow") ? figures["shadow"].value("compared", 0.0) : 0.0);
    }
  }
}

// Next step of the route's plan, only when the proxy's live figures pass the route's gates.
int advance(const GlobalOptions& global, const RouteArgs& args) {
  auto store = ConfigStore::open(global.config);
  if (!store.ok()) return refuse(store.error().message);
  ordered_json* raw = store->route(args.name);
  if (raw == nullptr) return refuse("no route named '" + args.name + "' in " + global.config);
  auto config = proxy::ProxyConfig::create(nlohmann::json::parse(store->json().dump()));
  if (!config.ok()) return refuse(config.error().message);
  const proxy::RouteConfig& route = *config->findRoute(args.name);
  if (route.target.empty())
    return refuse("route '" + args.name + "' has no target upstream: there is nowhere to advance");
  const proxy::PlanStep from = stepOf(*raw);
  const auto to = proxy::nextStep(route.effectivePlan(), from);
  if (!to)
    return refuse("route '" + args.name + "' is at the last step of its plan (" +
                  proxy::describeStep(from) + ")");

  nlohmann::json live_route = nlohmann::json::object();
  if (from.stage != proxy::Stage::kMonolith) {
    const std::string admin = adminUrl(global, *config);
    auto live = fetchAdmin(admin, "/routes");
    if (!live.ok() && !args.force) {
      return refuse("advance judges the proxy's live figures, and the proxy at " + admin +
                    " did not answer (" + live.error().message +
                    "); pass --admin URL, or --force to skip the gates");
    }
    if (live.ok()) {
      for (const auto& r : live->value("routes", nlohmann::json::array())) {
        if (r.value("name", "") == args.name) live_route = r;
      }
      const std::string live_step = live_route.value("stage", "") == "canary"
                                        ? "canary " + std::to_string(live_route.value("percent", 0))
                                        : live_route.value("stage", "(none)");
      if (live_step != proxy::describeStep(from) && !args.force) {
        return refuse("the proxy serves route '" + args.name + "' as " + live_step +
                      " but the file says " + proxy::describeStep(from) +
                      ": reload the proxy first, so the gates judge the step in force");
      }
    }
  }
  const GateReport report = judgeGates(route, from, *to, live_route);
  if (args.json_output) std::cout << report.toJson().dump() << "\n";
  if (!args.json_output) {
    std::cout << "route " << args.name << ": " << proxy::describeStep(from) << " -> "
              << proxy::describeStep(*to) << "\n"
              << report.table();
  }
  if (!report.passed() && !args.force) {
    return refuse("advance refused: route '" + args.name + "' does not pass its gates yet");
  }
  const ordered_json before = stageOf(*raw);
  setStep(*raw, *to);
  JournalEntry entry{nowIso8601(), args.name, "advance", before, stageOf(*raw), whoAmI()};
  entry.extra["gates"] = report.toJson()["gates"];
  if (!report.passed()) entry.extra["forced"] = true;
  return finishEdit(global, *store, entry,
                    "route " + args.name + ": " + before.dump() + " -> " + stageOf(*raw).dump() +
                        (report.passed() ? "" : " (forced past failed gates)"));
}

// A connection string without its password, for the journal.
// Cutover as one fenced step: the route and the ownership of its data move together.
int extractWithData(const GlobalOptions& global, const RouteArgs& args) {
  if (args.from_db.empty() || args.to_db.empty())
    return refuse("--with-data needs --from and --to (the monolith's and the service's databases)");
  CutoverRequest request;
  request.route = args.name;
  request.mapping = args.mapping;
  request.from_db = args.from_db;
  request.to_db = args.to_db;
  request.to_service = true;
  request.step = ordered_json{{"stage", "extracted"}};
  request.action = "extract";
  request.timeout_ms = args.timeout_ms;
  request.json_output = args.json_output;
  return runCutover(global, request);
}

int addRoute(const GlobalOptions& global, const RouteArgs& args) {
  auto store = ConfigStore::open(global.config);
  if (!store.ok()) return refuse(store.error().message);
  if (store->route(args.name) != nullptr) return refuse("route '" + args.name + "' exists");
  ordered_json route{{"name", args.name}, {"match", {{"path", args.path}}}};
  if (!args.methods.empty()) route["match"]["methods"] = splitCsv(args.methods);
  route["target"] = args.target;
  route["stage"] = "monolith";
  if (!args.data.empty()) route["data"] = args.data;
  if (!store->json().contains("routes")) store->json()["routes"] = ordered_json::array();
  store->json()["routes"].push_back(route);
  return finishEdit(global, *store,
                    {nowIso8601(), args.name, "add", nullptr, stageOf(route), whoAmI()},
                    "route " + args.name + " added (stage monolith)");
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
  add->add_option("--data", args->data,
                  "the sync mapping whose rows this route writes: its canary splits reads only, "
                  "writes go to the data's owner");
  add->footer(
      "\nExample:\n  strangler routes add drivers --path '/api/drivers/**' --methods GET,PUT "
      "--target driver-service\n");
  add->callback([&action, &global, args] {
    action = [&global, args] { return retryEdits([&] { return addRoute(global, *args); }); };
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
        if (args->with_data) return extractWithData(global, *args);
        if (with_percent && (args->percent < 1 || args->percent > 99)) {
          return refuse("--percent " + std::to_string(args->percent) + " is not in 1..99");
        }
        return retryEdits([&] {
          return changeStage(
              global, args->name, verb, [&](ordered_json& route) -> std::optional<std::string> {
                if (stage != "monolith") {
                  if (auto why = needsTarget(route, stage)) return why;
                }
                setStage(route, stage,
                         with_percent ? std::optional<int>(args->percent) : std::nullopt);
                return std::nullopt;
              });
        });
      };
    });
    return cmd;
  };
  stageVerb("shadow", "serve from the monolith, mirror to the target and compare", "shadow", false);
  stageVerb("canary", "send --percent of the traffic to the target", "canary", true);
  auto* extract = stageVerb("extract", "send all traffic to the target", "extracted", false);
  extract->add_flag("--with-data", args->with_data,
                    "also flip the sync: the service takes ownership of the mapping's writes");
  extract->add_option("--from", args->from_db, "with --with-data: the monolith's database");
  extract->add_option("--to", args->to_db, "with --with-data: the service's database");
  extract->add_option("--mapping", args->mapping, "with --with-data: the sync mapping")
      ->capture_default_str();
  extract
      ->add_option("--timeout", args->timeout_ms,
                   "with --with-data: ms to wait for in-flight writes and the drain")
      ->check(CLI::Range(100, 60000))
      ->capture_default_str();
  extract->add_flag("--json", args->json_output, "with --with-data: print the cutover's figures");
  extract->footer(
      "\nExamples:\n  strangler routes extract drivers --admin http://127.0.0.1:9901\n"
      "  strangler routes extract drivers --with-data --from sqlite3://monolith.db "
      "--to sqlite3://drivers.db\n");
  stageVerb("reset", "send all traffic back to the monolith", "monolith", false);

  auto* next = routes->add_subcommand(
      "advance", "next step of the route's plan, if the proxy's live figures pass its gates");
  next->add_option("NAME", args->name, "route name")->required();
  next->add_flag("--json", args->json_output, "print the gate report as JSON");
  next->add_flag("--force", args->force, "advance even when gates fail (journaled as forced)");
  next->footer(
      "\nThe plan defaults to shadow -> canary 1 -> 10 -> 50 -> extracted; a route may set its "
      "own\n"
      "(\"plan\": [\"shadow\", 5, 25, \"extracted\"]) and its gates (\"gates\": {\"min_samples\": "
      "100,\n"
      "\"max_mismatch_rate\": 0.01, \"max_error_rate\": 0.01, \"max_latency_ratio\": 1.5}).\n"
      "\nExample:\n  strangler routes advance drivers --admin http://127.0.0.1:9901\n");
  next->callback([&action, &global, args] {
    action = [&global, args] { return retryEdits([&] { return advance(global, *args); }); };
  });

  auto* back = routes->add_subcommand("rollback", "undo the route's last step, per the journal");
  back->add_option("NAME", args->name, "route name")->required();
  back->add_option("--from", args->from_db,
                   "when the step moved data: the monolith's database (default: the journal's)");
  back->add_option("--to", args->to_db,
                   "when the step moved data: the service's database (default: the journal's)");
  back->add_option("--timeout", args->timeout_ms,
                   "when the step moved data: ms to wait for in-flight writes and the drain")
      ->check(CLI::Range(100, 60000))
      ->capture_default_str();
  back->add_flag("--json", args->json_output, "when the step moved data: print its figures");
  back->footer("\nExample:\n  strangler routes rollback drivers --admin http://127.0.0.1:9901\n");
  back->callback([&action, &global, args] {
    action = [&global, args] { return retryEdits([&] { return rollback(global, *args); }); };
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
  status->footer(
      "\nExample:\n  strangler status --config strangler.json --admin http://127.0.0.1:9901\n");
  status->callback([&action, &global, args] {
    action = [&global, args] {
      auto config = proxy::ProxyConfig::load(global.config);
      if (!config.ok()) return refuse(config.error().message);
      // With an etcd config: every replica registered under the prefix, and what it applied.
      nlohmann::json replicas = nullptr;
      int64_t config_revision = 0;
      if (common::isEtcdUrl(global.config)) {
        auto location = common::parseEtcdUrl(global.config);
        if (!location.ok()) return refuse(location.error().message);
        common::EtcdClient etcd(location->endpoints);
        auto current = etcd.get(location->key("config"));
        if (current.ok() && current->first) config_revision = current->first->mod_revision;
        auto found = etcd.getPrefix(location->key("replicas/"));
        if (!found.ok()) return refuse(found.error().message);
        replicas = nlohmann::json::array();
        for (const auto& kv : found->kvs) {
          auto doc = nlohmann::json::parse(kv.value, nullptr, false);
          if (doc.is_discarded() || !doc.is_object()) continue;
          doc["in_sync"] = doc.value("config_revision", int64_t{0}) == config_revision;
          replicas.push_back(doc);
        }
      }
      std::string admin = global.admin;
      if (admin.empty() && replicas.is_array() && !replicas.empty())
        admin = "http://" + replicas[0].value("admin", "");
      if (admin.empty()) admin = "http://" + config->admin.listen.toString();
      auto live = fetchAdmin(admin, "/routes");
      if (args->json_output) {
        nlohmann::json out{{"config", global.config},
                           {"proxy", live.ok() ? live.value() : nlohmann::json(nullptr)}};
        if (replicas.is_array()) {
          out["config_revision"] = config_revision;
          out["replicas"] = replicas;
        }
        std::cout << out.dump() << "\n";
        return 0;
      }
      listRoutes(global, false);
      if (replicas.is_array()) {
        std::cout << "\nreplicas (config revision " << config_revision << " in etcd):\n";
        std::printf("  %-28s %-22s %-22s %9s %8s %s\n", "ID", "PROXY", "ADMIN", "REVISION",
                    "VERSION", "STATE");
        for (const auto& r : replicas) {
          std::printf("  %-28s %-22s %-22s %9lld %8lld %s\n", r.value("id", "").c_str(),
                      r.value("listen", "").c_str(), r.value("admin", "").c_str(),
                      static_cast<long long>(r.value("config_revision", int64_t{0})),
                      static_cast<long long>(r.value("version", int64_t{0})),
                      r.value("in_sync", false) ? "in sync" : "behind");
        }
        if (replicas.empty()) std::cout << "  (none registered)\n";
      }
      if (live.ok()) {
        const nlohmann::json each = live->value("replicas", nlohmann::json());
        std::cout << "\nproxy at " << admin << " (config version "
                  << live->value("version", nlohmann::json()).dump() << ", "
                  << live->value("config_hash", "") << "), figures of each route's current step"
                  << (each.is_array()
                          ? ", summed over the " + std::to_string(each.size()) + " replicas"
                          : std::string())
                  << ":\n";
        char line[256];
        std::snprintf(line, sizeof line, "  %-16s %-12s %9s %9s %8s %9s %9s %9s\n", "route", "step",
                      "monolith", "target", "err%", "p99 mon", "p99 tgt", "mismatch");
        std::cout << line;
        for (const auto& r : live->value("routes", nlohmann::json::array())) {
          const auto side = [&](const char* which, const char* key) {
            return r.contains("sides") ? r["sides"][which].value(key, 0.0) : 0.0;
          };
          const std::string step = r.value("stage", "") == "canary"
                                       ? "canary " + std::to_string(r.value("percent", 0))
                                       : r.value("stage", "");
          const double compared = r.contains("shadow") ? r["shadow"].value("compared", 0.0) : 0;
          std::snprintf(line, sizeof line,
                        "  %-16s %-12s %9.0f %9.0f %7.2f%% %7.1fms %7.1fms %8.2f%%\n",
                        r.value("name", "").c_str(), step.c_str(), side("monolith", "requests"),
                        side("target", "requests"), side("target", "error_rate") * 100.0,
                        side("monolith", "p99_ms"), side("target", "p99_ms"),
                        compared > 0 ? r["shadow"].value("mismatch_rate", 0.0) * 100.0 : 0.0);
          std::cout << line;
          // The shadow's sample as it was: compared, and every copy dropped with its reason.
          const double dropped = r.contains("shadow") ? r["shadow"].value("dropped", 0.0) : 0;
          if (compared > 0 || dropped > 0) {
            std::string reasons;
            const nlohmann::json by = r["shadow"].value("dropped_by", nlohmann::json::object());
            for (const auto& [reason, count] : by.items()) {
              reasons += (reasons.empty() ? " (" : ", ") + reason + " " + count.dump();
            }
            if (!reasons.empty()) reasons += ")";
            // Mismatches by class: only real, unchecked and pending ones count against the gate.
            std::string classes;
            const nlohmann::json classed =
                r["shadow"].value("mismatched_by", nlohmann::json::object());
            for (const auto& [klass, count] : classed.items()) {
              if (count.get<double>() > 0)
                classes += (classes.empty() ? " (" : ", ") + klass + " " + count.dump();
            }
            if (!classes.empty()) classes += ")";
            char share[32];
            std::snprintf(share, sizeof share, "%.1f%%",
                          r["shadow"].value("compared_share", 0.0) * 100.0);
            std::cout << "    shadow: " << static_cast<long long>(compared) << " compared ("
                      << share << " of the sample), "
                      << static_cast<long long>(r["shadow"].value("mismatched", 0.0))
                      << " mismatched" << classes << ", " << static_cast<long long>(dropped)
                      << " dropped" << reasons << "\n";
          }
          // Replicas whose figures are not in the sum: the gates refuse until they are.
          for (const auto& left : r.contains("replicas")
                                      ? r["replicas"].value("not_counted", nlohmann::json::array())
                                      : nlohmann::json::array()) {
            std::cout << "    not counted: " << left.value("replica", "") << " ("
                      << left.value("reason", "") << ")\n";
          }
        }
        if (each.is_array()) printEachReplica(each, fetchAdmin(admin, "/replicas"));
      } else {
        std::cout << "\nproxy not reachable at " << admin << ": " << live.error().message << "\n";
      }
      return 0;
    };
  });
}

}  // namespace strangler::cli
