#pragma once

// A broker process started by v2bench on a socket in a fresh temporary directory, stopped with
// SIGTERM (SIGKILL after a grace period) and reaped when the run ends.

#include <sys/types.h>

#include <string>
#include <vector>

namespace v2bench {

enum class ReadyCheck : unsigned char {
  connect,      ///< ready once a Unix stream connect succeeds (v2broker)
  socket_file,  ///< ready once the socket file exists (a ZeroMQ ipc:// endpoint)
};

class SpawnedBroker {
 public:
  /// Starts `program` with `args` followed by `--socket <tmpdir>/broker.sock`; its output goes
  /// to <tmpdir>/broker.log. Waits until it is ready (at most 10 s). Throws std::runtime_error
  /// with the log's tail when it exits or is not ready in time.
  SpawnedBroker(const std::string& program, const std::vector<std::string>& args, ReadyCheck ready);
  SpawnedBroker(const SpawnedBroker&) = delete;
  SpawnedBroker& operator=(const SpawnedBroker&) = delete;
  /// Stops the broker if still running and removes the temporary directory.
  ~SpawnedBroker();

  [[nodiscard]] const std::string& socket_path() const noexcept { return socket_path_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  /// CPU time the broker used so far (user + system), from /proc; -1 when unreadable.
  [[nodiscard]] double cpu_seconds() const;

  /// SIGTERM, then waits up to `grace_s` before SIGKILL. Returns the exit status as the shell
  /// shows it (128 + signal when killed). Idempotent: later calls return the first status.
  int stop(double grace_s = 10.0);

  /// The last `bytes` of the broker's log.
  [[nodiscard]] std::string log_tail(std::size_t bytes = 4000) const;

 private:
  std::string dir_;
  std::string socket_path_;
  std::string log_path_;
  pid_t pid_ = -1;
  int status_ = -1;
};

}  // namespace v2bench
