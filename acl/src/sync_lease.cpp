#include "sync_lease.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>

namespace strangler::acl::sync::detail {
namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<LeaseRow> readLease(Side& side, const std::string& mapping, int64_t now) {
  std::string holder;
  long long expires = 0;
  soci::indicator ind = soci::i_null;
  *side.sql << "SELECT holder, expires_at_ms FROM strangler_sync_lease WHERE mapping = :m",
      soci::use(mapping), soci::into(holder, ind), soci::into(expires);
  if (ind != soci::i_ok) return std::nullopt;
  return LeaseRow{holder, expires - now};
}

// A holder on this host whose process is gone (killed) cannot renew: its lease is stale now,
// not only once it expires.
bool holderIsGone(const std::string& holder) {
  const auto colon = holder.rfind(':');
  if (colon == std::string::npos) return false;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  if (holder.substr(0, colon) != host) return false;
  try {
    std::size_t used = 0;
    const long pid = std::stol(holder.substr(colon + 1), &used);
    if (used != holder.size() - colon - 1 || pid <= 0) return false;
    return kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

std::optional<LeaseRow> acquireLease(Side& side, const std::string& mapping,
                                     const std::string& holder, int ttl_ms) {
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  const int64_t now = nowMs();
  side.engine().lockLease(side, mapping);
  auto current = readLease(side, mapping, now);
  if (current && current->holder != holder && !current->holder.empty() &&
      current->expires_in_ms > 0 && !holderIsGone(current->holder)) {
    return current;
  }
  const long long expires = now + ttl_ms;
  *side.sql << "INSERT INTO strangler_sync_lease (mapping, holder, expires_at_ms) VALUES"
               " (:m, :h, :e) ON CONFLICT (mapping) DO UPDATE SET holder = excluded.holder,"
               " expires_at_ms = excluded.expires_at_ms",
      soci::use(mapping), soci::use(holder), soci::use(expires);
  tx.commit();
  return std::nullopt;
}

void releaseLease(Side& side, const std::string& mapping, const std::string& holder) {
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  *side.sql << "DELETE FROM strangler_sync_lease WHERE mapping = :m AND holder = :h",
      soci::use(mapping), soci::use(holder);
  tx.commit();
}

std::optional<LeaseRow> currentLease(Side& side, const std::string& mapping) {
  auto lease = readLease(side, mapping, nowMs());
  if (!lease || lease->holder.empty() || lease->expires_in_ms <= 0 || holderIsGone(lease->holder))
    return std::nullopt;
  return lease;
}

std::string defaultHolder() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid());
}

}  // namespace strangler::acl::sync::detail
