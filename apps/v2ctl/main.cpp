// v2ctl: command-line client of the v2broker daemon. Exit codes are in failure.hpp.

#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "failure.hpp"
#include "simdjson.h"
#include "sys/error.hpp"
#include "top.hpp"
#include "v2broker/client.hpp"
#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"

namespace {

using v2ctl::Exit;
using v2ctl::Failure;

struct Common {
  std::string socket_path = v2::default_socket_path();
  double timeout_seconds = 5.0;
  std::string framing = "ndjson";

  [[nodiscard]] std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<std::int64_t>(timeout_seconds * 1000.0));
  }
};

v2::Client connect(const Common& common) {
  v2::ClientOptions options;
  options.framing =
      common.framing == "binary" ? v2::wire::Framing::binary : v2::wire::Framing::ndjson;
  options.connect_timeout = common.timeout();
  return v2::Client::connect(common.socket_path, options);
}

/// Checks a --payload value before anything is sent, so a typo is a usage error.
void check_json(std::string_view text, std::string_view option) {
  if (text.empty()) {
    return;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element ignored;
  const simdjson::padded_string padded(text);
  if (const auto error = parser.parse(padded).get(ignored); error != simdjson::SUCCESS) {
    throw Failure{Exit::usage,
                  std::string(option) + " is not valid JSON: " + simdjson::error_message(error)};
  }
}

void write_stdout(std::string_view text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    throw Failure{Exit::io, "cannot write to stdout: " + v2::sys::errno_name(errno)};
  }
}

/// The message as one NDJSON line, in the wire codec's encoding.
std::string json_line(const v2::Message& message) {
  std::string line;
  if (const auto result = v2::wire::encode_ndjson(message, line); !result) {
    throw Failure{Exit::io, "cannot print message id=" + message.id + " from " + message.source +
                                ": " + result.text};
  }
  return line;
}

// Rendering of a JSON payload for people: "key: value" lines, nested objects indented, array
// items introduced by "- ", arrays of plain values on one line. Works for any shape.

/// A number for people: whole numbers without a fraction, others to three decimals, tiny ones
/// with three significant digits.
void append_number(std::string& out, double number) {
  char text[64];
  if (number == std::trunc(number) && std::fabs(number) < 1e15) {
    std::snprintf(text, sizeof text, "%.0f", number);
    out += text;
    return;
  }
  if (std::fabs(number) < 0.01) {
    std::snprintf(text, sizeof text, "%.3g", number);
    out += text;
    return;
  }
  std::snprintf(text, sizeof text, "%.3f", number);
  std::string_view shown(text);
  while (shown.back() == '0') {
    shown.remove_suffix(1);
  }
  if (shown.back() == '.') {
    shown.remove_suffix(1);
  }
  out += shown;
}

void append_scalar(std::string& out, simdjson::dom::element value, std::size_t indent) {
  using simdjson::dom::element_type;
  switch (value.type()) {
    case element_type::INT64:
      out += std::to_string(std::int64_t(value));
      break;
    case element_type::UINT64:
      out += std::to_string(std::uint64_t(value));
      break;
    case element_type::DOUBLE:
      append_number(out, double(value));
      break;
    case element_type::BOOL:
      out += bool(value) ? "true" : "false";
      break;
    case element_type::NULL_VALUE:
      out += "-";
      break;
    case element_type::STRING: {
      // Continuation lines of a multi-line text line up under its first line.
      std::string_view text(value);
      while (!text.empty() && text.back() == '\n') {
        text.remove_suffix(1);
      }
      for (const char c : text) {
        out.push_back(c);
        if (c == '\n') {
          out.append(indent, ' ');
        }
      }
      break;
    }
    case element_type::ARRAY:
    case element_type::OBJECT:
      break;
  }
}

bool is_container(simdjson::dom::element value) {
  return value.type() == simdjson::dom::element_type::ARRAY ||
         value.type() == simdjson::dom::element_type::OBJECT;
}

bool is_empty_container(simdjson::dom::element value) {
  if (value.type() == simdjson::dom::element_type::ARRAY) {
    return simdjson::dom::array(value).size() == 0;
  }
  if (value.type() == simdjson::dom::element_type::OBJECT) {
    return simdjson::dom::object(value).size() == 0;
  }
  return false;
}

/// True for an array whose items are all plain values: it fits on one line.
bool is_flat_array(simdjson::dom::element value) {
  if (value.type() != simdjson::dom::element_type::ARRAY) {
    return false;
  }
  const simdjson::dom::array items(value);
  return std::none_of(items.begin(), items.end(),
                      [](simdjson::dom::element item) { return is_container(item); });
}

void append_inline(std::string& out, simdjson::dom::element value, std::size_t indent) {
  if (value.type() == simdjson::dom::element_type::ARRAY) {
    const simdjson::dom::array items(value);
    if (items.size() == 0) {
      out += "(none)";
      return;
    }
    bool first = true;
    for (const simdjson::dom::element item : items) {
      if (!first) {
        out += ", ";
      }
      first = false;
      append_scalar(out, item, indent);
    }
    return;
  }
  if (value.type() == simdjson::dom::element_type::OBJECT) {
    out += "(none)";
    return;
  }
  append_scalar(out, value, indent);
}

void render(std::string& out, simdjson::dom::element value, std::size_t indent);

/// Which key introduces an object in a list: its name, when it has a plain one.
constexpr std::string_view kLeadingKey = "name";

enum class Order : std::uint8_t { as_sent, name_first };

void render_object(std::string& out, simdjson::dom::object object, std::size_t indent,
                   Order order) {
  // Keys of one-line values are padded to a common width, so their values form a column.
  constexpr std::size_t kWidestAlignedKey = 28;
  std::size_t width = 0;
  for (const auto field : object) {
    if (!is_container(field.value) || is_flat_array(field.value) ||
        is_empty_container(field.value)) {
      width = std::max(width, std::min(field.key.size(), kWidestAlignedKey));
    }
  }

  const auto render_field = [&](const simdjson::dom::key_value_pair& field) {
    out.append(indent, ' ');
    out.append(field.key);
    out.push_back(':');
    if (is_container(field.value) && !is_flat_array(field.value) &&
        !is_empty_container(field.value)) {
      out.push_back('\n');
      render(out, field.value, indent + 2);
      return;
    }
    out.append(width > field.key.size() ? width - field.key.size() : 0, ' ');
    out.push_back(' ');
    append_inline(out, field.value, indent + width + 2);
    out.push_back('\n');
  };

  const auto leads = [&](const simdjson::dom::key_value_pair& field) {
    return order == Order::name_first && field.key == kLeadingKey && !is_container(field.value);
  };
  for (const auto field : object) {
    if (leads(field)) {
      render_field(field);
    }
  }
  for (const auto field : object) {
    if (!leads(field)) {
      render_field(field);
    }
  }
}

void render(std::string& out, simdjson::dom::element value, std::size_t indent) {
  if (value.type() == simdjson::dom::element_type::OBJECT) {
    render_object(out, simdjson::dom::object(value), indent, Order::as_sent);
    return;
  }
  if (value.type() != simdjson::dom::element_type::ARRAY) {
    out.append(indent, ' ');
    append_scalar(out, value, indent);
    out.push_back('\n');
    return;
  }

  for (const simdjson::dom::element item : simdjson::dom::array(value)) {
    if (!is_container(item) || is_flat_array(item) || is_empty_container(item)) {
      out.append(indent, ' ');
      out += "- ";
      append_inline(out, item, indent + 2);
      out.push_back('\n');
      continue;
    }
    // Rendered two columns deeper, then the first line's indentation becomes the item's "- ".
    const std::size_t start = out.size();
    if (item.type() == simdjson::dom::element_type::OBJECT) {
      render_object(out, simdjson::dom::object(item), indent + 2, Order::name_first);
    } else {
      render(out, item, indent + 2);
    }
    if (out.size() > start + indent + 1) {
      out[start + indent] = '-';
    }
  }
}

/// The payload of `message` for people; raw text when it is not JSON.
std::string readable(const v2::Message& message, std::size_t indent) {
  if (message.payload.empty()) {
    return std::string(indent, ' ') + "(no payload)\n";
  }
  if (message.encoding != v2::PayloadEncoding::json) {
    return std::string(message.payload.view()) + "\n";
  }
  simdjson::dom::parser parser;
  simdjson::dom::element document;
  const simdjson::padded_string padded(message.payload.view());
  if (parser.parse(padded).get(document) != simdjson::SUCCESS) {
    return std::string(message.payload.view()) + "\n";
  }
  std::string out;
  render(out, document, indent);
  return out;
}

/// The payload as JSON text on one line; `null` when there is none.
std::string raw_json(const v2::Message& message) {
  if (message.payload.empty()) {
    return "null";
  }
  std::string text(message.payload.view());
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

/// Calls `method`; an error reply becomes Failure{broker_error}.
v2::Message call_or_fail(v2::Client& client, std::string_view method, std::string_view payload,
                         const Common& common) {
  v2::Message reply = client.call(method, payload, common.timeout());
  if (reply.type == v2::MessageType::error) {
    throw Failure{Exit::broker_error,
                  "the broker answered " + std::string(method) + " with an error: " + reply.error};
  }
  return reply;
}

int run_listen(const Common& common, const std::string& name) {
  // SIGINT and SIGTERM are read from a signalfd next to the socket, so a signal ends the loop
  // cleanly wherever it arrives.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  if (auto blocked = v2::sys::call_errno(
          "sigprocmask", [&] { return ::sigprocmask(SIG_BLOCK, &signals, nullptr); },
          [] { return std::string("SIGINT,SIGTERM"); });
      !blocked) {
    throw Failure{Exit::io, blocked.error().message};
  }
  auto opened = v2::sys::call_errno(
      "signalfd", [&] { return ::signalfd(-1, &signals, SFD_CLOEXEC); },
      [] { return std::string("SIGINT,SIGTERM"); });
  if (!opened) {
    throw Failure{Exit::io, opened.error().message};
  }
  const int signal_fd = opened.value();

  v2::Client client = connect(common);
  client.register_name(name, common.timeout());

  while (true) {
    while (std::optional<v2::Message> message = client.receive(std::chrono::milliseconds(0))) {
      write_stdout(json_line(*message));
    }

    pollfd fds[2] = {{client.fd(), POLLIN, 0}, {signal_fd, POLLIN, 0}};
    auto ready = v2::sys::call_errno(
        "poll", [&] { return ::poll(fds, 2, -1); },
        [&] { return "socket=" + client.socket_path(); });
    if (!ready) {
      if (ready.code() == EINTR) {
        continue;
      }
      throw Failure{Exit::io, ready.error().message};
    }
    if ((fds[1].revents & POLLIN) != 0) {
      ::close(signal_fd);
      return static_cast<int>(Exit::ok);
    }
  }
}

struct SendOptions {
  std::string to;
  std::string type;
  std::string id = "v2ctl";
  std::string payload;
  std::string as;
  std::string correlation_id;
  std::string error_text;
  bool wait = false;
};

int run_send(const Common& common, const SendOptions& options) {
  check_json(options.payload, "--payload");

  v2::Message message;
  const std::string type_name =
      options.type.empty() ? (options.wait ? "request" : "event") : options.type;
  message.type = v2::parse_message_type(type_name).value_or(v2::MessageType::event);
  message.id = options.id;
  message.target = options.to;
  if (!options.payload.empty()) {
    message.payload = v2::Payload::copy_of(options.payload);
  }
  if (message.type == v2::MessageType::error) {
    message.error = options.error_text.empty() ? "error" : options.error_text;
  }
  message.correlation_id =
      options.correlation_id.empty() ? v2::Client::next_correlation_id() : options.correlation_id;

  v2::Client client = connect(common);
  client.register_name(options.as.empty() ? "v2ctl-" + std::to_string(::getpid()) : options.as,
                       common.timeout());
  client.send(message);
  if (!options.wait) {
    return static_cast<int>(Exit::ok);
  }

  std::optional<v2::Message> reply =
      client.wait_for_reply(message.correlation_id, common.timeout());
  if (!reply) {
    throw Failure{Exit::io, "no reply from " + options.to + " within " +
                                std::to_string(common.timeout().count()) +
                                " ms (correlation_id=" + message.correlation_id + ")"};
  }
  write_stdout(json_line(*reply));
  return static_cast<int>(reply->type == v2::MessageType::error ? Exit::broker_error : Exit::ok);
}

int run_call(const Common& common, const std::string& method, const std::string& payload,
             bool json) {
  check_json(payload, "--payload");
  v2::Client client = connect(common);
  const v2::Message reply = call_or_fail(client, method, payload, common);
  write_stdout(json ? raw_json(reply) + "\n" : readable(reply, 0));
  return static_cast<int>(Exit::ok);
}

int run_stats(const Common& common, bool json) {
  v2::Client client = connect(common);
  const v2::Message messages = call_or_fail(client, "RPCGetMessageStats", "", common);
  const v2::Message kernel = call_or_fail(client, "RPCGetKernelMetrics", "", common);
  if (json) {
    write_stdout("{\"message_stats\":" + raw_json(messages) +
                 ",\"kernel_metrics\":" + raw_json(kernel) + "}\n");
  } else {
    write_stdout("Message stats\n" + readable(messages, 2) + "\nKernel metrics\n" +
                 readable(kernel, 2));
  }
  return static_cast<int>(Exit::ok);
}

int run_status(const Common& common, bool json) {
  v2::Client client = connect(common);
  const v2::Message status = call_or_fail(client, "RPCGetTuningStatus", "", common);
  write_stdout(json ? raw_json(status) + "\n"
                    : "Tuning status (socket " + common.socket_path + ")\n" + readable(status, 2));
  return static_cast<int>(Exit::ok);
}

int run(int argc, char** argv) {
  CLI::App app{"Command-line client of the v2broker daemon.", "v2ctl"};
  app.require_subcommand(1);
  app.fallthrough();

  Common common;
  app.add_option("--socket", common.socket_path, "broker socket")->capture_default_str();
  app.add_option("--timeout", common.timeout_seconds,
                 "seconds to wait for the connection and for each reply")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--framing", common.framing, "wire framing to speak")
      ->check(CLI::IsMember({"ndjson", "binary"}))
      ->capture_default_str();
  app.footer(
      "Exit codes: 0 ok, 1 error reply from the broker or target, 2 usage, 3 cannot connect or "
      "I/O error.");

  std::string listen_name;
  CLI::App* listen = app.add_subcommand(
      "listen",
      "Register NAME and print each message received as a JSON line, until SIGINT or "
      "SIGTERM.");
  listen->add_option("NAME", listen_name, "name to register")->required();

  SendOptions send_options;
  CLI::App* send = app.add_subcommand(
      "send",
      "Send one message to a registered process. Without --wait it returns once the message is "
      "written, so an error reply (unknown target, ...) is not seen; use --wait to get it.");
  send->add_option("--to", send_options.to, "target's registered name")->required();
  send->add_option("--type", send_options.type,
                   "message type (default: request with --wait, event without)")
      ->check(CLI::IsMember({"request", "response", "event", "error"}));
  send->add_option("--id", send_options.id, "message id")->capture_default_str();
  send->add_option("--payload", send_options.payload, "JSON payload");
  send->add_option("--error", send_options.error_text, "error text, for --type error");
  send->add_option("--as", send_options.as, "name to register first (default: v2ctl-PID)");
  send->add_option("--correlation-id", send_options.correlation_id,
                   "correlation id (default: a fresh one)");
  send->add_flag("--wait", send_options.wait,
                 "wait for the reply with the same correlation id and print it as a JSON line");

  std::string method;
  std::string call_payload;
  bool call_json = false;
  CLI::App* call = app.add_subcommand("call", "Call a broker method and print its result.");
  call->add_option("METHOD", method, "method, e.g. RPCListProcesses")->required();
  call->add_option("--payload", call_payload, "JSON payload of the call");
  call->add_flag("--json", call_json, "print the reply payload as JSON");

  bool stats_json = false;
  CLI::App* stats =
      app.add_subcommand("stats", "Message statistics and kernel metrics of the broker.");
  stats->add_flag("--json", stats_json, "print both payloads as one JSON object");

  bool status_json = false;
  CLI::App* status = app.add_subcommand(
      "status", "What each Linux tuning achieved, per thread, and why not, with the fix.");
  status->add_flag("--json", status_json, "print the payload as JSON");

  std::string top_interval = "1s";
  bool top_once = false;
  CLI::App* top = app.add_subcommand(
      "top", "A live view of the broker: rates, queue, drops, latency, workers, tuning.");
  top->footer(
      "Shows uptime, connections and names, message rates (total and by type, from the counter "
      "changes over each interval, leaving out the view's own calls), queue depth and "
      "saturation, drops and refusals by reason (total, and +change over the interval), queue "
      "and route latency (the broker's last stats interval, and since start), per-worker load, "
      "and the tuning in force per thread with the reason for what is not.\n"
      "On a terminal the view is redrawn in place (space refreshes at once) until q, Ctrl-C, "
      "SIGTERM or SIGHUP (exit 0). "
      "When stdout is not a terminal, or with --once, it prints one plain snapshot after one "
      "interval and exits 0. If the broker goes away it exits 3 with a message on stderr.");
  top->add_option("--interval", top_interval,
                  "time between refreshes, and the period of the rates (e.g. 500ms, 2s; at "
                  "least 50ms)")
      ->check(CLI::Validator(
          [](std::string& text) {
            return v2ctl::parse_interval(text) ? std::string()
                                               : "not an interval of at least 50ms (examples: "
                                                 "200ms, 1s, 0.5s)";
          },
          "DURATION"))
      ->capture_default_str();
  top->add_flag("--once", top_once, "print one plain snapshot and exit, even on a terminal");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? static_cast<int>(Exit::ok) : static_cast<int>(Exit::usage);
  }

  if (listen->parsed()) {
    return run_listen(common, listen_name);
  }
  if (send->parsed()) {
    return run_send(common, send_options);
  }
  if (call->parsed()) {
    return run_call(common, method, call_payload, call_json);
  }
  if (stats->parsed()) {
    return run_stats(common, stats_json);
  }
  if (top->parsed()) {
    v2ctl::TopOptions options;
    options.socket_path = common.socket_path;
    options.framing =
        common.framing == "binary" ? v2::wire::Framing::binary : v2::wire::Framing::ndjson;
    options.timeout = common.timeout();
    options.interval = v2ctl::parse_interval(top_interval).value_or(options.interval);
    options.once = top_once;
    return v2ctl::run_top(options);
  }
  return run_status(common, status_json);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Failure& failure) {
    std::fprintf(stderr, "v2ctl: %s\n", failure.text.c_str());
    return static_cast<int>(failure.code);
  } catch (const v2::ClientError& error) {
    std::fprintf(stderr, "v2ctl: %s\n", error.what());
    return static_cast<int>(error.code() == v2::ClientErrc::refused ? Exit::broker_error
                                                                    : Exit::io);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "v2ctl: %s\n", error.what());
    return static_cast<int>(Exit::io);
  }
}
