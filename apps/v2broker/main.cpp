#include <malloc.h>

#include "broker/cli.hpp"

namespace {

// Payloads of this size or more get their own mapping, returned to the kernel when freed.
constexpr int kMmapThreshold = 256 * 1024;

}  // namespace

int main(int argc, char** argv) {
  // Large payloads are allocated on the I/O thread and freed on a worker. glibc's default
  // raises its mmap threshold after each large free (up to 32 MiB), after which multi-MiB
  // payloads come from the arenas and keep them at their peak: with occasional 1-4 MiB messages
  // the broker's RSS grew past 200 MiB within minutes. A fixed threshold keeps it flat.
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  return v2::broker::broker_main(argc, argv);
}
