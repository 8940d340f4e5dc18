// The optimizer benchmark suite. Run with --help for Google Benchmark's flags; bench/README.md
// says what each benchmark reports, in which unit, and which direction is better.

#include <benchmark/benchmark.h>

#include <charconv>
#include <span>
#include <string>
#include <string_view>

#include "support.hpp"
#include "sys/thread.hpp"
#include "v2broker/tuning.hpp"

namespace {

// --benchmark_repetitions=N overrides the suite's default (set per benchmark, where it would
// otherwise win over the flag).
v2::bench::SuiteOptions parse_options(std::span<char*> args) {
  v2::bench::SuiteOptions options;
  constexpr std::string_view kFlag = "--benchmark_repetitions=";
  for (const char* arg : args) {
    const std::string_view text(arg);
    if (text.starts_with(kFlag)) {
      const std::string_view value = text.substr(kFlag.size());
      int repetitions = 0;
      const auto [end, error] =
          std::from_chars(value.data(), value.data() + value.size(), repetitions);
      if (error == std::errc{} && end == value.data() + value.size() && repetitions > 0) {
        options.repetitions = repetitions;
      }
    }
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const auto options = parse_options(std::span(argv, static_cast<std::size_t>(argc)));
  v2::bench::register_latency_consistency(options);
  v2::bench::register_large_payload_memory(options);
  v2::bench::register_throughput(options);
  v2::bench::register_end_to_end_latency(options);

  benchmark::AddCustomContext("compiler", "g++ " __VERSION__);
#ifdef NDEBUG
  benchmark::AddCustomContext("assertions", "off (NDEBUG)");
#else
  benchmark::AddCustomContext("assertions", "on");
#endif
  const auto cpus = v2::allowed_cpus();
  benchmark::AddCustomContext("allowed_cpus", v2::sys::format_cpu_list(cpus));
  benchmark::AddCustomContext("clock_overhead_ns",
                              std::to_string(static_cast<long>(v2::bench::clock_overhead_ns())));

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
