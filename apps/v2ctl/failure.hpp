#pragma once

// How v2ctl commands end: exit codes and the error that carries one.

#include <string>

namespace v2ctl {

/// 0 success, 1 the broker (or the target) answered with an error reply, 2 usage error, 3 cannot
/// connect or an I/O error (including a reply that did not come in time, or a lost broker).
enum class Exit : int { ok = 0, broker_error = 1, usage = 2, io = 3 };

/// An error that ends the program with `code` after printing `text` to stderr.
struct Failure {
  Exit code;
  std::string text;
};

}  // namespace v2ctl
