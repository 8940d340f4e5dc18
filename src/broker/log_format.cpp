#include "broker/log_format.hpp"

#include <spdlog/spdlog.h>
#include <sys/prctl.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>

namespace v2::broker {
namespace {

// "2024-05-01T12:00:00.123456Z"
std::string rfc3339_micros(spdlog::log_clock::time_point time) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
  const auto seconds = static_cast<std::time_t>(micros / 1'000'000);
  const auto fraction = static_cast<long>(micros % 1'000'000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[48];
  const std::size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof(text) - n, ".%06ldZ", fraction);
  return text;
}

// The calling thread's name as the kernel has it (threads are renamed after they start, so it
// is read for every record rather than cached).
std::string current_thread_name() {
  char name[17] = {};
  if (::prctl(PR_GET_NAME, name, 0, 0, 0) != 0) {
    return {};
  }
  return name;
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    // nlohmann::json does the escaping: quotes, backslashes and control characters as JSON
    // requires, and with error_handler_t::replace, invalid UTF-8 as U+FFFD instead of a throw.
    nlohmann::ordered_json line;
    line["time"] = rfc3339_micros(msg.time);
    const auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string(level.data(), level.size());
    line["message"] = std::string(msg.payload.data(), msg.payload.size());
    line["thread_id"] = msg.thread_id;
    line["thread"] = current_thread_name();
    line["logger"] = std::string(msg.logger_name.data(), msg.logger_name.size());
    const std::string text =
        line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }

  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::optional<LogFormat> parse_log_format(std::string_view name) noexcept {
  if (name == "text") {
    return LogFormat::text;
  }
  if (name == "json") {
    return LogFormat::json;
  }
  return std::nullopt;
}

std::unique_ptr<spdlog::formatter> make_json_formatter() {
  return std::make_unique<JsonFormatter>();
}

void apply_log_format(LogFormat format) {
  if (format == LogFormat::json) {
    spdlog::set_formatter(make_json_formatter());
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
}

}  // namespace v2::broker
