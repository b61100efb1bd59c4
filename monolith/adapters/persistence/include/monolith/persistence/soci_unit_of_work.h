#pragma once

#include "monolith/ports/unit_of_work.h"
#include "strangler/common/db.h"

namespace strangler::monolith::persistence {

/// UnitOfWork over a SOCI session pool: each run() leases one session, opens a transaction and
/// hands out repositories bound to it. soci::soci_error becomes ports::StorageError.
class SociUnitOfWork : public ports::UnitOfWork {
 public:
  explicit SociUnitOfWork(common::SessionPool& pool) : pool_(pool) {}
  void run(Mode mode, const std::function<bool(ports::Repositories&)>& work) override;

 private:
  common::SessionPool& pool_;
};

}  // namespace strangler::monolith::persistence
