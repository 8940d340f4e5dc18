#pragma once

#include <sys/types.h>

#include <string>

#include "sys/error.hpp"

namespace v2::sys {

/// The capabilities the tuning needs.
enum class Capability : unsigned char { sys_nice, sys_admin };

/// Where one capability is set for the calling thread.
struct CapabilityFlags {
  bool effective = false;
  bool permitted = false;
  bool inheritable = false;
  bool bounding = false;
};

/// Reads `capability` for the calling thread (libcap: cap_get_proc, cap_get_flag,
/// cap_get_bound). Capabilities are per thread; threads inherit them from their creator.
[[nodiscard]] Result<CapabilityFlags> capability_flags(Capability capability);

/// prctl(PR_GET_NO_NEW_PRIVS): when set, exec ignores file capabilities (setcap).
[[nodiscard]] Result<bool> no_new_privs();

/// The RLIMIT_NICE soft limit (getrlimit); RLIM_INFINITY when unlimited.
[[nodiscard]] Result<unsigned long long> nice_rlimit();

/// The RLIMIT_RTPRIO soft limit: the highest real-time priority an unprivileged thread may
/// take; RLIM_INFINITY when unlimited.
[[nodiscard]] Result<unsigned long long> rtprio_rlimit();

/// The effective user id. Never fails.
[[nodiscard]] uid_t geteuid() noexcept;

/// The running program's path (readlink /proc/self/exe).
[[nodiscard]] Result<std::string> executable_path();

}  // namespace v2::sys
