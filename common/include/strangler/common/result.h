#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace strangler::common {

/// A failure that callers are expected to handle: a short machine-readable code
/// ("not_found", "invalid_argument", ...) and a message an operator can read.
struct Error {
  std::string code;
  std::string message;
};

/// Either a value or an error, by default an Error (g++ 12 has no std::expected in C++20 mode).
template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  Result(E error) : state_(std::in_place_index<1>, std::move(error)) {}

  /// Builds a failed result.
  static Result failure(std::string code, std::string message) requires std::is_same_v<E, Error> {
    return Result(Error{std::move(code), std::move(message)});
  }

  /// True when a value is held.
  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  /// The value; only valid when ok().
  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  /// The error; only valid when !ok().
  const E& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, E> state_;
};

/// A Result that carries no value on success.
template <>
class [[nodiscard]] Result<void, Error> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}

  static Result failure(std::string code, std::string message) {
    return Result(Error{std::move(code), std::move(message)});
  }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace strangler::common
