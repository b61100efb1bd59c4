#pragma once
// One side's hash per key, as `sync verify --watch` keeps it between rounds.
//
// Memory: a vector of (key, hash) sorted by key, filled by the full pass (16 bytes a row), and a
// hash map for keys that appeared since (merged into the vector once it holds more than an eighth
// of it). A deleted key keeps its slot in the vector with hash 0 until then.

#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sync_side.h"

namespace strangler::acl::sync::detail {

constexpr uint64_t kAbsent = 0;

inline uint64_t hashOf(const std::string& text) {
  const uint64_t hash = fnv1a(text);
  return hash == kAbsent ? 1 : hash;
}

/// The hash of each key's row on one side (kAbsent: no row).
class KeyHashes {
 public:
  void clear() {
    sorted_.clear();
    added_.clear();
    size_ = 0;
  }
  /// Filled by the full pass: keys ascending.
  void append(int64_t key, uint64_t hash) {
    sorted_.emplace_back(key, hash);
    ++size_;
  }
  /// Paired monolith keys arrive out of order: sorted once, at the end.
  void finishPass() {
    if (!std::is_sorted(sorted_.begin(), sorted_.end())) std::sort(sorted_.begin(), sorted_.end());
    sorted_.shrink_to_fit();
  }
  uint64_t get(int64_t key) const {
    if (const auto* slot = find(key)) return slot->second;
    const auto it = added_.find(key);
    return it == added_.end() ? kAbsent : it->second;
  }
  void set(int64_t key, uint64_t hash) {
    const uint64_t old = get(key);
    size_ += (hash != kAbsent ? 1 : 0) - (old != kAbsent ? 1 : 0);
    if (auto* slot = find(key)) {
      slot->second = hash;
    } else if (hash == kAbsent) {
      added_.erase(key);
    } else {
      added_[key] = hash;
    }
    if (added_.size() > std::max<std::size_t>(4096, sorted_.size() / 8)) compact();
  }
  int64_t size() const { return size_; }
  const std::vector<std::pair<int64_t, uint64_t>>& sorted() const { return sorted_; }
  int64_t bytes() const {
    // A node of the map: the pair, the next pointer and the cached hash, plus its bucket.
    return static_cast<int64_t>(sorted_.capacity() * sizeof(sorted_[0]) +
                                added_.size() * (sizeof(std::pair<int64_t, uint64_t>) + 16) +
                                added_.bucket_count() * sizeof(void*));
  }

 private:
  std::pair<int64_t, uint64_t>* find(int64_t key) {
    auto it = std::lower_bound(sorted_.begin(), sorted_.end(), key,
                               [](const auto& entry, int64_t k) { return entry.first < k; });
    return it != sorted_.end() && it->first == key ? &*it : nullptr;
  }
  const std::pair<int64_t, uint64_t>* find(int64_t key) const {
    return const_cast<KeyHashes*>(this)->find(key);
  }
  void compact() {
    std::vector<std::pair<int64_t, uint64_t>> merged(added_.begin(), added_.end());
    std::sort(merged.begin(), merged.end());
    for (const auto& entry : sorted_)
      if (entry.second != kAbsent) merged.push_back(entry);
    std::inplace_merge(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(added_.size()),
                       merged.end());
    merged.shrink_to_fit();
    sorted_.swap(merged);
    added_.clear();
  }

  std::vector<std::pair<int64_t, uint64_t>> sorted_;
  std::unordered_map<int64_t, uint64_t> added_;
  int64_t size_ = 0;
};

}  // namespace strangler::acl::sync::detail
