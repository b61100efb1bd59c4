#pragma once

// Tests start real processes with the project's own launcher.
#include "strangler/common/process.h"

namespace strangler::testing {
using common::ChildProcess;
using common::CommandResult;
using common::runCommand;
}  // namespace strangler::testing
