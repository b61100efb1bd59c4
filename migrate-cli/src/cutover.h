#pragma once
// The fenced cutover: a route and the ownership of its data move together, in one command, all
// or nothing, with every proxy replica holding the route's writes while the data changes hands.

#include <nlohmann/json.hpp>

#include <string>

#include "strangler/cli/commands.h"

namespace strangler::cli {

struct CutoverRequest {
  std::string route;
  std::string mapping = "drivers";
  std::string from_db;             ///< the monolith's database
  std::string to_db;               ///< the service's database
  bool to_service = true;          ///< extract (the service takes the data) or roll back
  nlohmann::ordered_json step;     ///< the route's stage after the switch ({"stage", "percent"})
  std::string action = "extract";  ///< the journal's action for the switch
  int timeout_ms = 10000;          ///< bound on waiting for in-flight writes and the drain
  bool json_output = false;
};

/// Runs the cutover:
/// 1. fence: every replica holds new unsafe requests on the route (POST /routes/NAME/hold) and
///    its in-flight ones finish;
/// 2. drain: the running `sync watch` applies every change up to the positions read now;
/// 3. flip: the data's owner is recorded with that fence;
/// 4. switch: the route's new stage is written (journaled) and every replica serves it;
/// 5. release: held requests go to the new owner; the longest hold is the write pause.
/// A failure undoes the steps before it and releases the hold (exit 1 with the reason). Run
/// again after an interruption, it finishes what the owner recorded (or says it is done).
int runCutover(const GlobalOptions& global, const CutoverRequest& request);

}  // namespace strangler::cli
