#pragma once

#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sys/error.hpp"

namespace v2::sys {

/// Longest thread name the kernel keeps, in bytes, without the terminating NUL.
inline constexpr std::size_t kMaxThreadName = 15;

/// The calling thread's kernel id. Never fails.
[[nodiscard]] pid_t gettid() noexcept;

/// Names the calling thread (pthread_setname_np). Fails with ERANGE above kMaxThreadName bytes.
Status set_current_thread_name(std::string_view name);

/// The name of thread `tid` of this process as the kernel reports it
/// (/proc/self/task/TID/comm, without the newline). ENOENT once the thread has exited.
[[nodiscard]] Result<std::string> thread_name(pid_t tid);

/// Kernel ids of every thread of this process (/proc/self/task), ascending. A racy observer:
/// threads may start or exit while it reads.
[[nodiscard]] Result<std::vector<pid_t>> list_threads();

/// Restricts thread `tid` (0: the calling thread) to `cpus` (sched_setaffinity).
Status set_affinity(pid_t tid, std::span<const int> cpus);

/// The CPUs thread `tid` (0: the calling thread) may run on (sched_getaffinity), ascending.
[[nodiscard]] Result<std::vector<int>> get_affinity(pid_t tid);

/// "0-3,6,8-9" for {0,1,2,3,6,8,9} (the kernel's cpu list format); "" for none. `cpus` must be
/// ascending.
[[nodiscard]] std::string format_cpu_list(std::span<const int> cpus);

/// Reads a whole small file, such as one under /proc.
[[nodiscard]] Result<std::string> read_text_file(const std::string& path);

}  // namespace v2::sys
