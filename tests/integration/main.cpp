// Entry point of the integration tests. The binary doubles as a small client process the tests
// start, SIGKILL and inspect from outside:
//
//   v2_integration_tests --v2-receiver SOCKET NAME
//
// connects (NDJSON), registers NAME, prints "ready" on stdout and reads until the broker closes
// the connection, discarding what it receives.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "broker_process.hpp"

namespace {

int run_receiver(const std::string& socket_path, const std::string& name) {
  using v2::integration::Peer;
  Peer peer(socket_path, v2::wire::Framing::ndjson);
  const v2::Message reply = peer.register_name(name);
  if (reply.type != v2::MessageType::response) {
    std::fprintf(stderr, "register %s refused: %s\n", name.c_str(), reply.error.c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  try {
    for (;;) {
      (void)peer.receive(std::chrono::hours(1));
    }
  } catch (const v2::integration::HungUp&) {
    return 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--v2-receiver") == 0) {
    try {
      return run_receiver(argv[2], argv[3]);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "receiver: %s\n", error.what());
      return 1;
    }
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
