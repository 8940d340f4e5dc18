#include "broker/cli.hpp"

int main(int argc, char** argv) {
  return v2::broker::broker_main(argc, argv);
}
