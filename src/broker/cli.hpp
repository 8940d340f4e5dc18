#pragma once

namespace v2::broker {

/// The v2broker command line: parses flags (and an optional config file), then either prints
/// the capability check or runs the daemon. Returns the process exit code.
int broker_main(int argc, char** argv);

}  // namespace v2::broker
