#pragma once

#include <filesystem>
#include <string>

namespace strangler::testing {

/// A fresh directory under $TMPDIR, removed with its contents on destruction
/// (kept when STRANGLER_KEEP_TMP is set, for post-mortems).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "strangler-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// path() / name, as a string.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// The whole content of a file ("" when it cannot be read).
std::string readFile(const std::string& path);

}  // namespace strangler::testing
