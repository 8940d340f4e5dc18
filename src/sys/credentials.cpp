#include "sys/credentials.hpp"

#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <climits>
#include <memory>

namespace v2::sys {
namespace {

struct CapFree {
  void operator()(cap_t caps) const noexcept { ::cap_free(caps); }
};

cap_value_t to_cap_value(Capability capability) noexcept {
  switch (capability) {
    case Capability::sys_nice:
      return CAP_SYS_NICE;
    case Capability::sys_admin:
      return CAP_SYS_ADMIN;
  }
  return CAP_SYS_NICE;
}

std::string cap_context(cap_value_t value) {
  std::unique_ptr<char, decltype(&::cap_free)> name(::cap_to_name(value), &::cap_free);
  return kv("cap", name ? std::string_view(name.get()) : std::string_view("?"));
}

}  // namespace

Result<CapabilityFlags> capability_flags(Capability capability) {
  const cap_value_t value = to_cap_value(capability);
  auto proc = call_errno(
      "cap_get_proc", [] { return ::cap_get_proc(); }, [] { return kv("pid", ::getpid()); });
  if (!proc) {
    return proc.error();
  }
  const std::unique_ptr<std::remove_pointer_t<cap_t>, CapFree> caps(proc.value());

  CapabilityFlags flags;
  const std::array<std::pair<cap_flag_t, bool*>, 3> sets{{
      {CAP_EFFECTIVE, &flags.effective},
      {CAP_PERMITTED, &flags.permitted},
      {CAP_INHERITABLE, &flags.inheritable},
  }};
  for (const auto& entry : sets) {
    const cap_flag_t set = entry.first;
    cap_flag_value_t is_set = CAP_CLEAR;
    auto got = call_errno(
        "cap_get_flag", [&] { return ::cap_get_flag(caps.get(), value, set, &is_set); },
        [&] { return cap_context(value) + ", " + kv("set", static_cast<long long>(set)); });
    if (!got) {
      return got.error();
    }
    *entry.second = is_set == CAP_SET;
  }

  auto bound = call_errno(
      "cap_get_bound", [&] { return ::cap_get_bound(value); }, [&] { return cap_context(value); });
  if (!bound) {
    return bound.error();
  }
  flags.bounding = bound.value() == 1;
  return flags;
}

Result<bool> no_new_privs() {
  auto value = call_errno(
      "prctl", [] { return ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); },
      [] { return std::string("option=PR_GET_NO_NEW_PRIVS"); });
  if (!value) {
    return value.error();
  }
  return value.value() == 1;
}

Result<unsigned long long> nice_rlimit() {
  rlimit limit{};
  auto got = call_errno(
      "getrlimit", [&] { return ::getrlimit(RLIMIT_NICE, &limit); },
      [] { return std::string("resource=RLIMIT_NICE"); });
  if (!got) {
    return got.error();
  }
  return static_cast<unsigned long long>(limit.rlim_cur);
}

Result<unsigned long long> rtprio_rlimit() {
  rlimit limit{};
  auto got = call_errno(
      "getrlimit", [&] { return ::getrlimit(RLIMIT_RTPRIO, &limit); },
      [] { return std::string("resource=RLIMIT_RTPRIO"); });
  if (!got) {
    return got.error();
  }
  return static_cast<unsigned long long>(limit.rlim_cur);
}

uid_t geteuid() noexcept {
  return ::geteuid();
}

Result<std::string> executable_path() {
  std::array<char, PATH_MAX> buffer{};
  auto length = call_errno(
      "readlink", [&] { return ::readlink("/proc/self/exe", buffer.data(), buffer.size()); },
      [] { return std::string("path=/proc/self/exe"); });
  if (!length) {
    return length.error();
  }
  return std::string(buffer.data(), static_cast<std::size_t>(length.value()));
}

}  // namespace v2::sys
