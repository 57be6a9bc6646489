// Error handling for library code: functions return Result<T> or Status
// instead of throwing or aborting, so the CLI and the server can turn every
// failure into one clear message.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace ama {

struct Error {
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}      // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(v_); }
  const std::string& message() const { return error().message; }

 private:
  std::variant<T, Error> v_;
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : failed_(true), message_(std::move(error.message)) {}  // NOLINT
  static Status Ok() { return {}; }

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string& message() const { return message_; }
  Error error() const { return Error{message_}; }

 private:
  bool failed_ = false;
  std::string message_;
};

inline Error make_error(std::string message) { return Error{std::move(message)}; }

}  // namespace ama

// Propagate a failed Status/Result from the current function.
#define AMA_TRY(expr)                                  \
  do {                                                 \
    auto ama_try_result_ = (expr);                     \
    if (!ama_try_result_.ok()) return ama_try_result_.error(); \
  } while (0)
