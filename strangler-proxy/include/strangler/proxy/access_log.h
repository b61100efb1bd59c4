#pragma once

#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "strangler/common/result.h"

namespace strangler::proxy {

/// JSON access log lines, one per request, written by a background thread so that loop threads
/// never block on the file.
class AccessLog {
 public:
  /// "stdout" or a file path (appended to).
  static common::Result<std::unique_ptr<AccessLog>> open(const std::string& destination);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  /// Queues one line (without the newline).
  void write(const std::string& line);
  /// Opens the file again by its path before the next write (after a log rotation moved it:
  /// SIGUSR1). If it cannot be opened, lines keep going to the file already open.
  void reopen();

 private:
  AccessLog(std::FILE* file, bool owned, std::string path);
  void run();

  std::FILE* file_;
  bool owned_;
  std::string path_;
  bool reopen_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::string pending_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace strangler::proxy
