#pragma once
// Concurrent clients whose every write carries a counter (tests of cutovers under live writes).

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "strangler/testing/http_client.h"

namespace strangler::testing {

/// Clients moving drivers through proxies: writer w owns the drivers with id % writers == w, and
/// every write sets latitude 37 + counter * 1e-5 (exact in micro-degrees on both sides), so the
/// last acknowledged value of every driver is known. Each write is followed by a read.
class CounterWriters {
 public:
  /// Writers send to the proxies on `ports` in turn; they move drivers first_id..last_id.
  CounterWriters(std::vector<uint16_t> ports, int first_id, int last_id, int writers)
      : ports_(std::move(ports)), first_id_(first_id), last_id_(last_id), writers_(writers) {}
  ~CounterWriters() { stop(); }

  void start() {
    for (int w = 0; w < writers_; ++w)
      threads_.emplace_back([this, w] { run(w); });
  }
  void stop() {
    running_ = false;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }
  int64_t sent() const { return sent_; }
  int64_t failed() const { return failed_; }
  std::string lastFailure() {
    std::lock_guard lock(mutex_);
    return last_failure_;
  }
  std::map<int, int64_t> acknowledged() {
    std::lock_guard lock(mutex_);
    return acked_;
  }

 private:
  void run(int w) {
    std::mt19937 rng(static_cast<unsigned>(w + 1));
    int64_t counter = 0;
    std::vector<int> mine;
    for (int id = first_id_; id <= last_id_; ++id)
      if (id % writers_ == w) mine.push_back(id);
    std::size_t turn = static_cast<std::size_t>(w);
    while (running_) {
      const int id = mine[rng() % mine.size()];
      ++counter;
      char body[96];
      std::snprintf(body, sizeof body, R"({"lat": %.5f, "lng": 127.0})",
                    37.0 + static_cast<double>(counter) * 1e-5);
      ++sent_;
      const uint16_t port = ports_[turn++ % ports_.size()];
      const auto response =
          httpRequest("127.0.0.1", port, "PUT", "/api/drivers/" + std::to_string(id) + "/location",
                      body, {{"X-User-Id", std::to_string(id)}}, std::chrono::seconds(10));
      if (response.status == 200) {
        std::lock_guard lock(mutex_);
        acked_[id] = counter;
      } else {
        ++failed_;
        std::lock_guard lock(mutex_);
        last_failure_ = "PUT " + std::to_string(id) + ": " + std::to_string(response.status) + " " +
                        response.body.substr(0, 200);
      }
      // Reads too, split by the canary.
      const auto read = httpRequest("127.0.0.1", port, "GET", "/api/drivers/" + std::to_string(id),
                                    "", {}, std::chrono::seconds(10));
      ++sent_;
      if (read.status != 200) {
        ++failed_;
        std::lock_guard lock(mutex_);
        last_failure_ = "GET " + std::to_string(id) + ": " + std::to_string(read.status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  std::vector<uint16_t> ports_;
  int first_id_;
  int last_id_;
  int writers_;
  std::atomic<bool> running_{true};
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> failed_{0};
  std::mutex mutex_;
  std::map<int, int64_t> acked_;
  std::string last_failure_;
  std::vector<std::thread> threads_;
};

}  // namespace strangler::testing
