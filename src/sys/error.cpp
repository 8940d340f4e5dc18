#include "sys/error.hpp"

#include <cstring>

namespace v2::sys {

std::string errno_text(int error) {
  return errno_name(error) + " (" + std::strerror(error) + ")";
}

std::string errno_name(int error) {
  if (const char* name = ::strerrorname_np(error); name != nullptr) {
    return name;
  }
  return "errno=" + std::to_string(error);
}

SysError SysError::from(int code, std::string_view call, std::string_view context) {
  std::string message;
  message.reserve(call.size() + context.size() + 16);
  message.append(call).append("(").append(context).append("): ").append(errno_name(code));
  return SysError{code, std::move(message)};
}

std::string kv(std::string_view key, std::string_view value) {
  std::string text;
  text.reserve(key.size() + value.size() + 1);
  text.append(key).append("=").append(value);
  return text;
}

std::string kv(std::string_view key, long long value) {
  return kv(key, std::to_string(value));
}

}  // namespace v2::sys
