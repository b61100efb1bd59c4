#pragma once

#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strangler/testing/temp_dir.h"

namespace strangler::cli {

/// The lines of `<config>.journal.jsonl`, parsed, oldest first.
inline std::vector<nlohmann::json> journalOf(const std::string& config) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(strangler::testing::readFile(config + ".journal.jsonl"));
  for (std::string line; std::getline(in, line);)
    lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace strangler::cli
