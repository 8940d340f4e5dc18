#include <malloc.h>

#include "broker/cli.hpp"

namespace {

// Payloads of this size or more get their own mapping, returned to the kernel when freed.
constexpr int kMmapThreshold = 2 * 1024 * 1024;
// Free memory at the top of an arena is returned to the kernel only past this much.
constexpr int kTrimThreshold = 8 * 1024 * 1024;

}  // namespace

int main(int argc, char** argv) {
  // Large payloads are allocated on the I/O thread and freed on a worker. glibc's default
  // raises its mmap threshold after each large free (up to 32 MiB), after which multi-MiB
  // payloads come from the arenas and keep them at their peak: with occasional 1-4 MiB messages
  // the broker's RSS grew past 200 MiB within minutes. Fixed thresholds bound that. A lower
  // mmap threshold (256 KiB was tried) maps and faults in every 1 MiB payload afresh, 257 page
  // faults each, and halved 1 MiB throughput; a small trim threshold returned and re-faulted
  // the arenas' top between messages.
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
  return v2::broker::broker_main(argc, argv);
}
