// v2bench_zmq_peer: the broker a user would otherwise write with ZeroMQ, for side-by-side
// comparison with v2broker. A ROUTER socket bound to ipc://PATH forwards by name, as v2broker
// does: clients are DEALERs whose routing id is their name; a message is the frames
// [target, type, id, payload]; the broker forwards [source, type, id, payload] to the target.
// A request to "broker" with id RPCRegister is answered, so a client knows the broker has seen
// its name. ZMQ_ROUTER_MANDATORY makes a full receiver block the broker (back-pressure, like
// v2broker's block policy) and an unknown target an error reply instead of a silent drop.
//
// Usage: v2bench_zmq_peer --socket PATH [--io-threads N] [--hwm N]
// SIGTERM or SIGINT stops it; it removes the socket file.

#include <unistd.h>
#include <zmq.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

volatile std::sig_atomic_t g_stop = 0;

void on_signal(int) {
  g_stop = 1;
}

constexpr char kTypeRequest = 0;
constexpr char kTypeResponse = 1;
constexpr char kTypeError = 3;

struct Options {
  std::string socket_path;
  int io_threads = 1;
  int hwm = 1000;  // ZeroMQ's default for both directions
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "v2bench_zmq_peer: %s\nusage: v2bench_zmq_peer --socket PATH "
               "[--io-threads N] [--hwm N]\n",
               why);
  std::exit(2);
}

int positive_int(std::string_view text, const char* option) {
  int value = 0;
  const auto [rest, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || rest != text.data() + text.size() || value <= 0) {
    std::fprintf(stderr, "v2bench_zmq_peer: %s needs a positive integer, not '%.*s'\n", option,
                 static_cast<int>(text.size()), text.data());
    std::exit(2);
  }
  return value;
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) {
      usage("missing value after an option");
    }
    const char* value = argv[++i];
    if (arg == "--socket") {
      options.socket_path = value;
    } else if (arg == "--io-threads") {
      options.io_threads = positive_int(value, "--io-threads");
    } else if (arg == "--hwm") {
      options.hwm = positive_int(value, "--hwm");
    } else {
      usage("unknown option");
    }
  }
  if (options.socket_path.empty()) {
    usage("--socket is required");
  }
  if (options.io_threads < 1 || options.hwm < 0) {
    usage("--io-threads must be >= 1 and --hwm >= 0");
  }
  return options;
}

int fail(const char* call) {
  std::fprintf(stderr, "v2bench_zmq_peer: %s failed: %s\n", call, zmq_strerror(zmq_errno()));
  return 1;
}

// Sends one frame, waiting while the receiver's pipe is full (ZMQ_SNDTIMEO bounds each wait so
// a stop request is seen); false on any other failure (EHOSTUNREACH: no such name) or stop.
bool send_frame(void* socket, zmq_msg_t& frame, int flags) {
  while (zmq_msg_send(&frame, socket, flags) < 0) {
    if ((zmq_errno() != EINTR && zmq_errno() != EAGAIN) || g_stop != 0) {
      return false;
    }
  }
  return true;
}

bool send_bytes(void* socket, std::string_view bytes, int flags) {
  while (zmq_send(socket, bytes.data(), bytes.size(), flags) < 0) {
    if ((zmq_errno() != EINTR && zmq_errno() != EAGAIN) || g_stop != 0) {
      return false;
    }
  }
  return true;
}

// A reply from "broker" to `to`: [to, "broker", type, id, payload].
void reply(void* socket, zmq_msg_t& to, char type, zmq_msg_t& id, std::string_view payload) {
  zmq_msg_t copy;
  zmq_msg_init(&copy);
  zmq_msg_copy(&copy, &to);
  if (!send_frame(socket, copy, ZMQ_SNDMORE)) {
    zmq_msg_close(&copy);
    return;  // the sender is gone (EHOSTUNREACH): nobody to tell
  }
  (void)send_bytes(socket, "broker", ZMQ_SNDMORE);
  (void)send_bytes(socket, std::string_view(&type, 1), ZMQ_SNDMORE);
  zmq_msg_init(&copy);
  zmq_msg_copy(&copy, &id);
  (void)send_frame(socket, copy, ZMQ_SNDMORE);
  (void)send_bytes(socket, payload, 0);
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);

  struct sigaction action {};
  action.sa_handler = on_signal;  // no SA_RESTART: a blocking zmq call returns EINTR
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGTERM, &action, nullptr) != 0 || sigaction(SIGINT, &action, nullptr) != 0) {
    std::perror("v2bench_zmq_peer: sigaction");
    return 1;
  }

  void* context = zmq_ctx_new();
  if (context == nullptr || zmq_ctx_set(context, ZMQ_IO_THREADS, options.io_threads) != 0) {
    return fail("zmq_ctx_new");
  }
  void* router = zmq_socket(context, ZMQ_ROUTER);
  const int one = 1;
  const int linger = 1000;
  const int wait_ms = 100;  // every blocking call returns this often to look at g_stop
  if (router == nullptr || zmq_setsockopt(router, ZMQ_SNDTIMEO, &wait_ms, sizeof(wait_ms)) != 0 ||
      zmq_setsockopt(router, ZMQ_RCVTIMEO, &wait_ms, sizeof(wait_ms)) != 0 ||
      zmq_setsockopt(router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) != 0 ||
      zmq_setsockopt(router, ZMQ_SNDHWM, &options.hwm, sizeof(options.hwm)) != 0 ||
      zmq_setsockopt(router, ZMQ_RCVHWM, &options.hwm, sizeof(options.hwm)) != 0 ||
      zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof(linger)) != 0) {
    return fail("zmq_socket/zmq_setsockopt");
  }
  const std::string endpoint = "ipc://" + options.socket_path;
  (void)::unlink(options.socket_path.c_str());  // a stale file from a killed run
  if (zmq_bind(router, endpoint.c_str()) != 0) {
    return fail("zmq_bind");
  }
  std::fprintf(stderr, "v2bench_zmq_peer: listening on %s (io_threads=%d hwm=%d)\n",
               endpoint.c_str(), options.io_threads, options.hwm);

  // frames: [source, target, type, id, payload]
  std::array<zmq_msg_t, 5> frames{};
  for (auto& f : frames) {
    zmq_msg_init(&f);
  }
  unsigned long long forwarded = 0;
  unsigned long long refused = 0;
  while (g_stop == 0) {
    if (zmq_msg_recv(frames.data(), router, 0) < 0) {
      if (zmq_errno() == EINTR || zmq_errno() == EAGAIN) {
        continue;
      }
      return fail("zmq_msg_recv");
    }
    std::size_t parts = 1;
    bool oversized = false;
    while (zmq_msg_more(&frames[parts - 1]) != 0) {
      if (parts == frames.size()) {
        oversized = true;
        zmq_msg_t rest;
        zmq_msg_init(&rest);
        while (zmq_msg_more(&frames[parts - 1]) != 0 && zmq_msg_recv(&rest, router, 0) >= 0 &&
               zmq_msg_more(&rest) != 0) {
        }
        zmq_msg_close(&rest);
        break;
      }
      if (zmq_msg_recv(&frames[parts], router, 0) < 0) {
        break;
      }
      ++parts;
    }
    if (oversized || parts != frames.size() || zmq_msg_size(&frames[2]) != 1) {
      ++refused;
      reply(router, frames[0], kTypeError, frames[parts > 3 ? 3 : 0],
            "malformed: expected frames [target, type, id, payload]");
      continue;
    }

    const std::string_view target(static_cast<const char*>(zmq_msg_data(&frames[1])),
                                  zmq_msg_size(&frames[1]));
    if (target == "broker") {
      const char type = *static_cast<const char*>(zmq_msg_data(&frames[2]));
      const std::string_view id(static_cast<const char*>(zmq_msg_data(&frames[3])),
                                zmq_msg_size(&frames[3]));
      if (type == kTypeRequest && id == "RPCRegister") {
        reply(router, frames[0], kTypeResponse, frames[3], "{\"registered\":true}");
      } else {
        reply(router, frames[0], kTypeError, frames[3], "unknown RPC method");
      }
      continue;
    }

    // Forward: [target, source, type, id, payload]; the frames move without copying.
    zmq_msg_t source;
    zmq_msg_init(&source);
    zmq_msg_copy(&source, frames.data());  // kept for an error reply
    if (!send_frame(router, frames[1], ZMQ_SNDMORE)) {
      if (g_stop != 0) {
        zmq_msg_close(&source);
        break;
      }
      ++refused;
      reply(router, source, kTypeError, frames[3], "unknown target");
      zmq_msg_close(&source);
      continue;
    }
    zmq_msg_close(&source);
    (void)send_frame(router, frames[0], ZMQ_SNDMORE);
    (void)send_frame(router, frames[2], ZMQ_SNDMORE);
    (void)send_frame(router, frames[3], ZMQ_SNDMORE);
    (void)send_frame(router, frames[4], 0);
    ++forwarded;
  }

  for (auto& f : frames) {
    zmq_msg_close(&f);
  }
  zmq_close(router);
  zmq_ctx_term(context);
  (void)::unlink(options.socket_path.c_str());
  std::fprintf(stderr, "v2bench_zmq_peer: stopped; forwarded=%llu refused=%llu\n", forwarded,
               refused);
  return 0;
}
