#pragma once

#include <cerrno>
#include <concepts>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace v2::sys {

/// "EACCES" for EACCES (strerrorname_np), "errno=N" for a value the C library does not name.
[[nodiscard]] std::string errno_name(int error);

/// "EACCES (Permission denied)": the name and the C library's description.
[[nodiscard]] std::string errno_text(int error);

/// A failed system call: its errno value and "call(key=value, ...): ENAME".
struct SysError {
  int code = 0;
  std::string message;

  /// Builds "call(context): ENAME".
  [[nodiscard]] static SysError from(int code, std::string_view call, std::string_view context);
};

/// The outcome of a system call with no value: success or a SysError.
class [[nodiscard]] Status {
 public:
  Status() = default;
  // Implicit, so that a wrapper can `return SysError::from(...)`.
  Status(SysError error) : error_(std::move(error)), failed_(true) {}

  [[nodiscard]] bool ok() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return ok(); }
  /// errno of the failure, 0 on success.
  [[nodiscard]] int code() const noexcept { return failed_ ? error_.code : 0; }
  /// Only meaningful when !ok().
  [[nodiscard]] const SysError& error() const noexcept { return error_; }

 private:
  SysError error_;
  bool failed_ = false;
};

/// The outcome of a system call that yields a value: the value or a SysError.
template <typename T>
class [[nodiscard]] Result {
 public:
  // Implicit, so that a wrapper can return either a value or `SysError::from(...)`.
  Result(T value) : state_(std::move(value)) {}
  Result(SysError error) : state_(std::move(error)) {}

  [[nodiscard]] bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  /// errno of the failure, 0 on success.
  [[nodiscard]] int code() const noexcept { return ok() ? 0 : std::get<1>(state_).code; }

  /// Precondition: ok().
  [[nodiscard]] const T& value() const& { return std::get<0>(state_); }
  [[nodiscard]] T&& value() && { return std::get<0>(std::move(state_)); }
  [[nodiscard]] T value_or(T fallback) const& { return ok() ? value() : std::move(fallback); }

  /// Precondition: !ok().
  [[nodiscard]] const SysError& error() const& { return std::get<1>(state_); }

  [[nodiscard]] Status status() const { return ok() ? Status{} : Status{error()}; }

 private:
  std::variant<T, SysError> state_;
};

/// "key=value" for building an error's context.
[[nodiscard]] std::string kv(std::string_view key, std::string_view value);
[[nodiscard]] std::string kv(std::string_view key, long long value);

// One helper per failure convention. Each runs `call`, and on failure reads the error at once,
// before anything else can overwrite errno; only then is `context()` evaluated to build the
// "key=value, ..." text of the message, so a successful call costs no formatting.

/// -1 and errno (most system calls), or a null pointer and errno (opendir, cap_get_proc).
template <typename Call, typename Context>
requires std::invocable<Call&> && std::invocable<Context&>
auto call_errno(std::string_view name, Call&& call, Context&& context)
    -> Result<std::invoke_result_t<Call&>> {
  auto rc = call();
  bool failed = false;
  if constexpr (std::is_pointer_v<decltype(rc)>) {
    failed = rc == nullptr;
  } else {
    failed = rc == -1;
  }
  if (failed) {
    const int error = errno;
    return SysError::from(error, name, context());
  }
  return rc;
}

/// errno cleared before the call, failure only when errno is set afterwards: for calls whose
/// every return value is legitimate (getpriority may return -1).
template <typename Call, typename Context>
requires std::invocable<Call&> && std::invocable<Context&>
auto call_errno_cleared(std::string_view name, Call&& call, Context&& context)
    -> Result<std::invoke_result_t<Call&>> {
  errno = 0;
  auto rc = call();
  const int error = errno;
  if (error != 0) {
    return SysError::from(error, name, context());
  }
  return rc;
}

/// pthread style: the call returns 0 or the error number; errno is not used.
template <typename Call, typename Context>
requires std::invocable<Call&> && std::invocable<Context&> Status
call_returned_code(std::string_view name, Call&& call, Context&& context) {
  const int rc = call();
  if (rc != 0) {
    return SysError::from(rc, name, context());
  }
  return {};
}

/// Negative errno (raw kernel interfaces): a result below 0 is -error; otherwise the value.
template <typename Call, typename Context>
requires std::invocable<Call&> && std::invocable<Context&>
auto call_negative_errno(std::string_view name, Call&& call, Context&& context)
    -> Result<std::invoke_result_t<Call&>> {
  auto rc = call();
  if (rc < 0) {
    return SysError::from(static_cast<int>(-rc), name, context());
  }
  return rc;
}

}  // namespace v2::sys
