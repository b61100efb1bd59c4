#include "strangler/proxy/access_log.h"

#include <chrono>

namespace strangler::proxy {

common::Result<std::unique_ptr<AccessLog>> AccessLog::open(const std::string& destination) {
  using R = common::Result<std::unique_ptr<AccessLog>>;
  if (destination == "stdout")
    return std::unique_ptr<AccessLog>(new AccessLog(stdout, false, destination));
  std::FILE* file = std::fopen(destination.c_str(), "a");
  if (file == nullptr)
    return R::failure("unwritable", "cannot open access log '" + destination + "'");
  return std::unique_ptr<AccessLog>(new AccessLog(file, true, destination));
}

AccessLog::AccessLog(std::FILE* file, bool owned, std::string path)
    : file_(file), owned_(owned), path_(std::move(path)) {
  thread_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (owned_) std::fclose(file_);
}

void AccessLog::write(const std::string& line) {
  std::lock_guard lock(mutex_);
  pending_ += line;
  pending_ += '\n';
}

void AccessLog::reopen() {
  {
    std::lock_guard lock(mutex_);
    reopen_ = true;
  }
  wake_.notify_all();
}

void AccessLog::run() {
  std::string batch;
  for (;;) {
    bool stop = false;
    bool reopen = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_ || reopen_; });
      batch.swap(pending_);
      stop = stopping_;
      reopen = reopen_;
      reopen_ = false;
    }
    if (reopen && owned_) {
      // Lines queued before the signal go to the old file (the one rotation moved away).
      if (!batch.empty()) {
        std::fwrite(batch.data(), 1, batch.size(), file_);
        batch.clear();
      }
      if (std::FILE* fresh = std::fopen(path_.c_str(), "a")) {
        std::fclose(file_);
        file_ = fresh;
      } else {
        std::fprintf(stderr,
                     "strangler-proxy: cannot reopen access log '%s'; still writing the "
                     "file already open\n",
                     path_.c_str());
      }
    }
    if (!batch.empty()) {
      std::fwrite(batch.data(), 1, batch.size(), file_);
      std::fflush(file_);
      batch.clear();
    }
    if (stop) return;
  }
}

}  // namespace strangler::proxy
