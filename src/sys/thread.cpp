#include "sys/thread.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <memory>

namespace v2::sys {
namespace {

constexpr std::size_t kMaskWordBits = sizeof(unsigned long) * CHAR_BIT;
// The kernel rejects a mask shorter than its own CPU count; start at 1024 CPUs, as glibc does,
// and grow until it fits.
constexpr std::size_t kInitialMaskWords = 1024 / kMaskWordBits;
constexpr std::size_t kMaxMaskWords = (1U << 22U) / kMaskWordBits;

std::string tid_context(pid_t tid) {
  return kv("tid", tid);
}

struct DirCloser {
  void operator()(DIR* dir) const noexcept { ::closedir(dir); }
};

}  // namespace

pid_t gettid() noexcept {
  return ::gettid();
}

Status set_current_thread_name(std::string_view name) {
  const std::string terminated(name);
  return call_returned_code(
      "pthread_setname_np",
      [&] { return ::pthread_setname_np(::pthread_self(), terminated.c_str()); },
      [&] { return kv("tid", gettid()) + ", " + kv("name", name); });
}

Result<std::string> thread_name(pid_t tid) {
  auto text = read_text_file("/proc/self/task/" + std::to_string(tid) + "/comm");
  if (!text) {
    return text;
  }
  std::string name = std::move(text).value();
  while (!name.empty() && name.back() == '\n') {
    name.pop_back();
  }
  return name;
}

Result<std::vector<pid_t>> list_threads() {
  constexpr std::string_view kPath = "/proc/self/task";
  auto opened = call_errno(
      "opendir", [&] { return ::opendir(kPath.data()); }, [&] { return kv("path", kPath); });
  if (!opened) {
    return opened.error();
  }
  const std::unique_ptr<DIR, DirCloser> dir(opened.value());

  std::vector<pid_t> tids;
  for (;;) {
    auto entry = call_errno_cleared(
        "readdir", [&] { return ::readdir(dir.get()); }, [&] { return kv("path", kPath); });
    if (!entry) {
      return entry.error();
    }
    if (entry.value() == nullptr) {
      break;
    }
    const std::string_view name(entry.value()->d_name);
    pid_t tid = 0;
    const auto [end, error] = std::from_chars(name.data(), name.data() + name.size(), tid);
    if (error == std::errc{} && end == name.data() + name.size()) {
      tids.push_back(tid);
    }
  }
  std::sort(tids.begin(), tids.end());
  return tids;
}

Status set_affinity(pid_t tid, std::span<const int> cpus) {
  const auto context = [&] { return tid_context(tid) + ", " + kv("cpus", format_cpu_list(cpus)); };
  int highest = -1;
  for (const int cpu : cpus) {
    if (cpu < 0) {
      return SysError::from(EINVAL, "sched_setaffinity", context());
    }
    highest = std::max(highest, cpu);
  }

  const auto words =
      std::max(kInitialMaskWords, static_cast<std::size_t>(highest) / kMaskWordBits + 1);
  std::vector<unsigned long> mask(words, 0UL);
  for (const int cpu : cpus) {
    const auto bit = static_cast<std::size_t>(cpu);
    mask[bit / kMaskWordBits] |= 1UL << (bit % kMaskWordBits);
  }
  return call_errno(
             "sched_setaffinity",
             [&] {
               return ::syscall(SYS_sched_setaffinity, tid, mask.size() * sizeof(unsigned long),
                                mask.data());
             },
             context)
      .status();
}

Result<std::vector<int>> get_affinity(pid_t tid) {
  for (std::size_t words = kInitialMaskWords;; words *= 2) {
    std::vector<unsigned long> mask(words, 0UL);
    const std::size_t bytes = words * sizeof(unsigned long);
    auto copied = call_errno(
        "sched_getaffinity",
        [&] { return ::syscall(SYS_sched_getaffinity, tid, bytes, mask.data()); },
        [&] { return tid_context(tid) + ", " + kv("mask_bytes", static_cast<long long>(bytes)); });
    if (!copied) {
      if (copied.code() == EINVAL && words < kMaxMaskWords) {
        continue;  // the kernel has more CPUs than this mask holds
      }
      return copied.error();
    }

    std::vector<int> cpus;
    for (std::size_t bit = 0; bit < words * kMaskWordBits; ++bit) {
      if ((mask[bit / kMaskWordBits] >> (bit % kMaskWordBits)) & 1UL) {
        cpus.push_back(static_cast<int>(bit));
      }
    }
    return cpus;
  }
}

std::string format_cpu_list(std::span<const int> cpus) {
  std::string text;
  std::size_t i = 0;
  while (i < cpus.size()) {
    std::size_t last = i;
    while (last + 1 < cpus.size() && cpus[last + 1] == cpus[last] + 1) {
      ++last;
    }
    if (!text.empty()) {
      text += ',';
    }
    text += std::to_string(cpus[i]);
    if (last > i) {
      text += '-';
      text += std::to_string(cpus[last]);
    }
    i = last + 1;
  }
  return text;
}

Result<std::string> read_text_file(const std::string& path) {
  auto opened = call_errno(
      "open", [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); },
      [&] { return kv("path", path); });
  if (!opened) {
    return opened.error();
  }
  const int fd = opened.value();

  std::string text;
  std::array<char, 512> buffer{};
  for (;;) {
    auto got = call_errno(
        "read", [&] { return ::read(fd, buffer.data(), buffer.size()); },
        [&] { return kv("path", path) + ", " + kv("fd", fd); });
    if (!got && got.code() == EINTR) {
      continue;
    }
    if (!got || got.value() == 0) {
      ::close(fd);
      if (!got) {
        return got.error();
      }
      return text;
    }
    text.append(buffer.data(), static_cast<std::size_t>(got.value()));
  }
}

}  // namespace v2::sys
