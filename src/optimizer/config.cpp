#include "v2broker/config.hpp"

#include <algorithm>
#include <string>

#include "v2broker/tuning.hpp"

namespace v2 {
namespace {

constexpr std::size_t kMinAutoWorkers = 4;

std::string join(const std::vector<std::string>& parts) {
  std::string text;
  for (const auto& part : parts) {
    if (!text.empty()) {
      text += "; ";
    }
    text += part;
  }
  return text;
}

std::string describe_all(const std::vector<ConfigIssue>& issues) {
  std::vector<std::string> parts;
  parts.reserve(issues.size());
  for (const auto& issue : issues) {
    parts.push_back(issue.describe());
  }
  return "invalid configuration: " + join(parts);
}

std::string ns_text(std::chrono::nanoseconds value) {
  return std::to_string(value.count()) + "ns";
}

}  // namespace

std::string_view to_string(OfferPolicy policy) noexcept {
  switch (policy) {
    case OfferPolicy::drop:
      return "drop";
    case OfferPolicy::block:
      return "block";
    case OfferPolicy::timeout:
      return "timeout";
    case OfferPolicy::drop_oldest:
      return "drop_oldest";
  }
  return "unknown";
}

std::optional<OfferPolicy> parse_offer_policy(std::string_view name) noexcept {
  if (name == "drop") {
    return OfferPolicy::drop;
  }
  if (name == "block") {
    return OfferPolicy::block;
  }
  if (name == "timeout") {
    return OfferPolicy::timeout;
  }
  if (name == "drop_oldest" || name == "drop-oldest") {
    return OfferPolicy::drop_oldest;
  }
  return std::nullopt;
}

std::string_view to_string(IoClass io_class) noexcept {
  switch (io_class) {
    case IoClass::none:
      return "none";
    case IoClass::realtime:
      return "realtime";
    case IoClass::best_effort:
      return "best-effort";
    case IoClass::idle:
      return "idle";
  }
  return "unknown";
}

std::string ConfigIssue::describe() const {
  return field + "=" + value + ": " + reason;
}

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
    : std::invalid_argument(describe_all(issues)), issues_(std::move(issues)) {}

std::vector<ConfigIssue> validate(const OptimizerConfig& config) {
  std::vector<ConfigIssue> issues;
  auto reject = [&issues](std::string field, std::string value, std::string reason) {
    issues.push_back({std::move(field), std::move(value), std::move(reason)});
  };

  if (config.buffer_capacity == 0 || config.buffer_capacity > kMaxBufferCapacity) {
    reject("buffer_capacity", std::to_string(config.buffer_capacity),
           "must be within 1.." + std::to_string(kMaxBufferCapacity));
  }
  if (config.workers > kMaxWorkers) {
    reject("workers", std::to_string(config.workers),
           "must be at most " + std::to_string(kMaxWorkers) + " (0 means one per allowed CPU)");
  }
  if (config.batch_size == 0) {
    reject("batch_size", "0", "must be at least 1");
  }
  if (config.batch_size > config.buffer_capacity && config.buffer_capacity != 0) {
    reject("batch_size", std::to_string(config.batch_size),
           "must not exceed buffer_capacity=" + std::to_string(config.buffer_capacity));
  }
  if (config.stats_interval <= std::chrono::nanoseconds::zero()) {
    reject("stats_interval", ns_text(config.stats_interval), "must be positive");
  }
  if (config.offer_timeout < std::chrono::nanoseconds::zero()) {
    reject("offer_timeout", ns_text(config.offer_timeout), "must not be negative");
  }
  if (config.idle_spin < std::chrono::nanoseconds::zero()) {
    reject("idle_spin", ns_text(config.idle_spin), "must not be negative");
  }
  if (config.flush_interval < std::chrono::nanoseconds::zero()) {
    reject("flush_interval", ns_text(config.flush_interval), "must not be negative");
  }

  const TuningConfig& tuning = config.tuning;
  if (tuning.nice < -20 || tuning.nice > 19) {
    reject("tuning.nice", std::to_string(tuning.nice), "must be within -20..19");
  }
  if (tuning.io_level < 0 || tuning.io_level > 7) {
    reject("tuning.io_level", std::to_string(tuning.io_level), "must be within 0..7");
  }
  if (tuning.realtime_priority < 0 || tuning.realtime_priority > kMaxRealtimePriority) {
    reject("tuning.realtime_priority", std::to_string(tuning.realtime_priority),
           "must be within 0..99 (0: the normal policy)");
  }
  if (tuning.io_class == IoClass::none && tuning.set_io_priority) {
    reject("tuning.io_class", "none", "must be realtime, best-effort or idle");
  }
  if (!tuning.cpus.empty()) {
    const std::vector<int> allowed = allowed_cpus();
    for (const int cpu : tuning.cpus) {
      if (std::find(allowed.begin(), allowed.end(), cpu) == allowed.end()) {
        std::string allowed_text;
        for (const int a : allowed) {
          if (!allowed_text.empty()) {
            allowed_text += ',';
          }
          allowed_text += std::to_string(a);
        }
        reject("tuning.cpus", std::to_string(cpu),
               "the process may not run on this CPU (allowed: " + allowed_text + ")");
      }
    }
  }
  return issues;
}

std::size_t resolved_worker_count(const OptimizerConfig& config) {
  if (config.workers != 0) {
    return config.workers;
  }
  return std::max(allowed_cpus().size(), kMinAutoWorkers);
}

}  // namespace v2
