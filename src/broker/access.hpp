#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace v2::broker {

/// A user id from a number or a user name (getpwnam_r); nothing when no such user exists.
[[nodiscard]] std::optional<uid_t> resolve_user(const std::string& text);

/// A group id from a number or a group name (getgrnam_r); nothing when no such group exists.
[[nodiscard]] std::optional<gid_t> resolve_group(const std::string& text);

/// Resolves the entries of `--allow-uid` (already split at commas; surrounding blanks are
/// ignored). Each entry that is empty or names no user adds "FLAG=ENTRY: why" to `problems`.
[[nodiscard]] std::vector<uid_t> resolve_users(const std::vector<std::string>& entries,
                                               const std::string& flag,
                                               std::vector<std::string>& problems);

/// The same for `--allow-gid` and group names.
[[nodiscard]] std::vector<gid_t> resolve_groups(const std::vector<std::string>& entries,
                                                const std::string& flag,
                                                std::vector<std::string>& problems);

/// Who may connect, beyond what the socket file's mode and group already decide.
///
/// With no user and no group listed, everyone who can open the socket file is admitted. Once
/// either list is given, a peer is admitted when its uid is listed, or its primary gid or one of
/// its supplementary groups is listed, or it is root or the broker's own effective uid (so the
/// operator's v2ctl always works). Credentials are the ones the kernel recorded at connect(2)
/// (SO_PEERCRED, SO_PEERGROUPS), so a peer cannot change them afterwards.
class AccessPolicy {
 public:
  AccessPolicy() = default;
  AccessPolicy(std::vector<uid_t> uids, std::vector<gid_t> gids, uid_t owner);

  /// False when every peer is admitted and no check is needed.
  [[nodiscard]] bool restricts() const noexcept { return !uids_.empty() || !gids_.empty(); }

  /// Empty when the peer of the connected socket `fd`, with SO_PEERCRED `peer`, is admitted;
  /// otherwise why not, as key=value text for the log. Reads the supplementary groups
  /// (SO_PEERGROUPS) only when the uid and primary gid did not decide. Never blocks.
  [[nodiscard]] std::string refusal(int fd, const ucred& peer) const;

  /// "uids=1000,1001 gids=27 (and root, and uid=N: the broker's own)" for the start-up log.
  [[nodiscard]] std::string describe() const;

 private:
  std::vector<uid_t> uids_;
  std::vector<gid_t> gids_;
  uid_t owner_ = 0;
};

}  // namespace v2::broker
