#include "route_gates.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace strangler::cli {
namespace {

using nlohmann::json;

std::string percent(double rate) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f%%", rate * 100.0);
  return buffer;
}

std::string number(double value, const char* format) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

double field(const json& object, std::initializer_list<const char*> path) {
  const json* at = &object;
  for (const char* key : path) {
    if (!at->is_object() || !at->contains(key)) return 0.0;
    at = &(*at)[key];
  }
  return at->is_number() ? at->get<double>() : 0.0;
}

GateCheck samples(double seen, int64_t minimum, const char* what) {
  return {std::string("samples (") + what + ")", number(seen, "%.0f"),
          "≥ " + std::to_string(minimum), seen >= static_cast<double>(minimum), ""};
}

GateCheck rate(const char* name, double value, double limit) {
  return {name, percent(value), "≤ " + percent(limit), value <= limit, ""};
}

}  // namespace

bool GateReport::passed() const {
  return std::all_of(checks.begin(), checks.end(), [](const GateCheck& c) { return c.passed; });
}

json GateReport::toJson() const {
  json out = {{"from", proxy::describeStep(from)},
              {"to", proxy::describeStep(to)},
              {"passed", passed()},
              {"gates", json::array()}};
  for (const auto& c : checks) {
    json gate = {{"gate", c.name}, {"figure", c.figure}, {"limit", c.limit}, {"passed", c.passed}};
    if (!c.note.empty()) gate["note"] = c.note;
    out["gates"].push_back(gate);
  }
  return out;
}

std::string GateReport::table() const {
  std::ostringstream out;
  if (checks.empty()) {
    out << "  (no gate: leaving " << proxy::describeStep(from) << ")\n";
    return out.str();
  }
  char line[256];
  std::snprintf(line, sizeof line, "  %-28s %-12s %-12s %s\n", "gate", "figure", "limit", "");
  out << line;
  for (const auto& c : checks) {
    std::snprintf(line, sizeof line, "  %-28s %-12s %-12s %s%s\n", c.name.c_str(), c.figure.c_str(),
                  c.limit.c_str(), c.passed ? "ok" : "FAILED",
                  c.note.empty() ? "" : ("  (" + c.note + ")").c_str());
    out << line;
  }
  return out.str();
}

GateReport judgeGates(const proxy::RouteConfig& route, const proxy::PlanStep& from,
                      const proxy::PlanStep& to, const json& live) {
  GateReport report{from, to, {}};
  const auto& gates = route.gates;
  switch (from.stage) {
    case proxy::Stage::kMonolith:
    case proxy::Stage::kExtracted:
      break;
    case proxy::Stage::kShadow: {
      const double compared = field(live, {"shadow", "compared"});
      const double failed = field(live, {"shadow", "target_errors"});
      report.checks.push_back(samples(compared, gates.min_samples, "comparisons"));
      // Copies dropped under load leave a sample nobody chose: refuse to judge on it.
      const double sampled = field(live, {"shadow", "sampled"});
      const double share = sampled > 0 ? compared / sampled : 0.0;
      GateCheck coverage{"compared share", percent(share), "≥ " + percent(gates.min_compared_share),
                         share >= gates.min_compared_share, ""};
      if (sampled <= 0) coverage.note = "no copy taken in this step";
      report.checks.push_back(coverage);
      // Mismatches a re-check showed to be sync lag are left out; pending ones still count.
      const double counted =
          field(live, {"shadow", "mismatched"}) - field(live, {"shadow", "mismatched_by", "lag"});
      GateCheck mismatches =
          rate("mismatch rate", compared > 0 ? std::max(0.0, counted) / compared : 0,
               gates.max_mismatch_rate);
      if (const double lag = field(live, {"shadow", "mismatched_by", "lag"}); lag > 0)
        mismatches.note = number(lag, "%.0f") + " lag mismatches left out";
      report.checks.push_back(mismatches);
      const double replays = compared + failed;
      report.checks.push_back(
          rate("target error rate", replays > 0 ? failed / replays : 0, gates.max_error_rate));
      break;
    }
    case proxy::Stage::kCanary: {
      report.checks.push_back(samples(field(live, {"sides", "target", "requests"}),
                                      gates.min_samples, "target requests"));
      report.checks.push_back(rate("target error rate",
                                   field(live, {"sides", "target", "error_rate"}),
                                   gates.max_error_rate));
      const double target_p99 = field(live, {"sides", "target", "p99_ms"});
      const double monolith_p99 = field(live, {"sides", "monolith", "p99_ms"});
      GateCheck latency{"p99 vs monolith", "", "≤ " + number(gates.max_latency_ratio, "%.2f×"),
                        true, ""};
      if (monolith_p99 <= 0.0 || field(live, {"sides", "monolith", "requests"}) <= 0) {
        latency.figure = "-";
        latency.note = "no monolith requests in this step to compare with";
      } else {
        const double ratio = target_p99 / monolith_p99;
        latency.figure = number(ratio, "%.2f×") + " (" + number(target_p99, "%.1f") + "/" +
                         number(monolith_p99, "%.1f") + " ms)";
        latency.passed = ratio <= gates.max_latency_ratio;
      }
      report.checks.push_back(latency);
      break;
    }
  }
  // With replicas sharing an etcd config the figures are every replica's summed: a replica left
  // out (no answer, still on another step) may hold exactly the errors that should stop this.
  if (!report.checks.empty() && live.contains("replicas") && live["replicas"].is_object()) {
    const json& replicas = live["replicas"];
    const size_t counted = replicas.value("counted", json::array()).size();
    const json missing = replicas.value("not_counted", json::array());
    GateCheck all{"replicas counted",
                  std::to_string(counted) + " of " + std::to_string(counted + missing.size()),
                  "all", missing.empty(), ""};
    for (const auto& left : missing) {
      all.note += (all.note.empty() ? "" : "; ") + left.value("replica", std::string("?")) + ": " +
                  left.value("reason", std::string("?"));
    }
    report.checks.push_back(all);
  }
  return report;
}

}  // namespace strangler::cli
