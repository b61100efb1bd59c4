#pragma once

#include <functional>

#include "monolith/ports/repositories.h"

namespace strangler::monolith::ports {

/// Runs work against the repositories inside one database transaction.
class UnitOfWork {
 public:
  enum class Mode { kRead, kWrite };
  virtual ~UnitOfWork() = default;
  /// Runs `work` in a transaction; commits when it returns true, rolls back when it returns
  /// false or throws. Throws StorageError when the database fails.
  virtual void run(Mode mode, const std::function<bool(Repositories&)>& work) = 0;
};

}  // namespace strangler::monolith::ports
