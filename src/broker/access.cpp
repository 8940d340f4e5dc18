#include "broker/access.hpp"

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <limits>
#include <utility>

#include "sys/error.hpp"

namespace v2::broker {
namespace {

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) {
    return {};
  }
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// A decimal id below the "no id" value (uid_t)-1; nothing when `text` is not one.
std::optional<std::uint32_t> parse_id(const std::string& text) {
  std::uint32_t value = 0;
  const auto [rest, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || rest != text.data() + text.size() ||
      value == std::numeric_limits<std::uint32_t>::max()) {
    return std::nullopt;
  }
  return value;
}

// Calls a getpwnam_r-style lookup with a buffer that grows while the entry does not fit.
template <typename Entry, typename Lookup>
bool look_up(const std::string& name, Entry& entry, Lookup lookup) {
  std::vector<char> buffer(std::size_t{16} * 1024);
  for (;;) {
    Entry* found = nullptr;
    const int rc = lookup(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (rc == ERANGE && buffer.size() < (std::size_t{1} << 24U)) {
      buffer.resize(buffer.size() * 4);
      continue;
    }
    return rc == 0 && found != nullptr;
  }
}

template <typename Id, typename Resolve>
std::vector<Id> resolve_all(const std::vector<std::string>& entries, const std::string& flag,
                            const char* kind, std::vector<std::string>& problems, Resolve resolve) {
  std::vector<Id> ids;
  for (const std::string& raw : entries) {
    const std::string entry = trimmed(raw);
    const auto id = entry.empty() ? std::nullopt : resolve(entry);
    if (id) {
      ids.push_back(*id);
      continue;
    }
    std::string problem = flag;
    problem.append("=").append(entry.empty() ? raw : entry).append(": ");
    problem.append(entry.empty() ? std::string("an empty entry (a list is comma-separated)")
                                 : std::string("no such ") + kind + " (a number or a name)");
    problems.push_back(std::move(problem));
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

bool listed(const auto& ids, auto id) {
  return std::binary_search(ids.begin(), ids.end(), id);
}

// The peer's supplementary groups as recorded at connect(2). SO_PEERGROUPS (Linux 4.13) is
// used rather than /proc/PID/status: the pid may have exited and been reused since.
std::vector<gid_t> peer_groups(int fd, int& error) {
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto length = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &length) == 0) {
      groups.resize(length / sizeof(gid_t));
      error = 0;
      return groups;
    }
    error = errno;
    if (error != ERANGE) {
      break;
    }
    groups.resize(length / sizeof(gid_t) + 1);  // the kernel said how many there are
  }
  return {};
}

}  // namespace

std::optional<uid_t> resolve_user(const std::string& text) {
  if (const auto id = parse_id(text)) {
    return static_cast<uid_t>(*id);
  }
  passwd entry{};
  if (!look_up(text, entry, ::getpwnam_r)) {
    return std::nullopt;
  }
  return entry.pw_uid;
}

std::optional<gid_t> resolve_group(const std::string& text) {
  if (const auto id = parse_id(text)) {
    return static_cast<gid_t>(*id);
  }
  group entry{};
  if (!look_up(text, entry, ::getgrnam_r)) {
    return std::nullopt;
  }
  return entry.gr_gid;
}

std::vector<uid_t> resolve_users(const std::vector<std::string>& entries, const std::string& flag,
                                 std::vector<std::string>& problems) {
  return resolve_all<uid_t>(entries, flag, "user", problems, resolve_user);
}

std::vector<gid_t> resolve_groups(const std::vector<std::string>& entries, const std::string& flag,
                                  std::vector<std::string>& problems) {
  return resolve_all<gid_t>(entries, flag, "group", problems, resolve_group);
}

AccessPolicy::AccessPolicy(std::vector<uid_t> uids, std::vector<gid_t> gids, uid_t owner)
    : uids_(std::move(uids)), gids_(std::move(gids)), owner_(owner) {
  std::sort(uids_.begin(), uids_.end());
  std::sort(gids_.begin(), gids_.end());
}

std::string AccessPolicy::describe() const {
  const auto list = [](const auto& ids) {
    std::string text;
    for (const auto id : ids) {
      text += (text.empty() ? "" : ",") + std::to_string(id);
    }
    return text.empty() ? std::string("none") : text;
  };
  return "uids=" + list(uids_) + " gids=" + list(gids_) +
         " (and root, and uid=" + std::to_string(owner_) + ": the broker's own)";
}

std::string AccessPolicy::refusal(int fd, const ucred& peer) const {
  if (!restricts() || peer.uid == 0 || peer.uid == owner_ || listed(uids_, peer.uid) ||
      listed(gids_, peer.gid)) {
    return {};
  }
  std::string why = "uid=" + std::to_string(peer.uid) + " gid=" + std::to_string(peer.gid);
  if (gids_.empty()) {
    return why + " not in --allow-uid";
  }
  int error = 0;
  const std::vector<gid_t> groups = peer_groups(fd, error);
  for (const gid_t group : groups) {
    if (listed(gids_, group)) {
      return {};
    }
  }
  why += " groups=";
  for (std::size_t i = 0; i < groups.size(); ++i) {
    why += (i == 0 ? "" : ",") + std::to_string(groups[i]);
  }
  if (error != 0) {
    why += "(unreadable: getsockopt(SO_PEERGROUPS): " + sys::errno_name(error) + ")";
  }
  return why + " not in --allow-uid or --allow-gid";
}

}  // namespace v2::broker
