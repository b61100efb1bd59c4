#pragma once

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace strangler::testing {

/// Reports one measured figure of a fault or abuse test: prints
/// "FIGURE name = value (goal: goal) - what" and, when STRANGLER_FAULT_REPORT names a file,
/// appends the figure there as a JSON line (scripts/fault-suite.sh collects them into a table).
inline void reportFigure(const std::string& name, double value, const std::string& goal,
                         const std::string& what) {
  std::ostringstream text;
  text << value;
  std::cout << "FIGURE " << name << " = " << text.str() << " (goal: " << goal << ") - " << what
            << std::endl;
  if (const char* path = std::getenv("STRANGLER_FAULT_REPORT"); path != nullptr && *path) {
    std::ofstream out(path, std::ios::app);
    out << nlohmann::json{{"name", name}, {"value", value}, {"goal", goal}, {"what", what}}.dump()
        << "\n";
  }
}

}  // namespace strangler::testing
