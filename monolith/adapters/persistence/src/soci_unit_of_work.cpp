#include "monolith/persistence/soci_unit_of_work.h"

#include <soci/soci.h>

#include "soci_repositories.h"

namespace strangler::monolith::persistence {

void SociUnitOfWork::run(Mode mode, const std::function<bool(ports::Repositories&)>& work) {
  try {
    soci::session sql(pool_.pool());
    common::Transaction tx(sql, pool_.backend(),
                           mode == Mode::kWrite ? common::Transaction::Mode::kWrite
                                                : common::Transaction::Mode::kRead);
    SociRepositories repos(sql);
    if (work(repos)) tx.commit();
  } catch (const soci::soci_error& e) {
    throw ports::StorageError(std::string("database error: ") + e.what());
  }
}

}  // namespace strangler::monolith::persistence
