#pragma once

#include <ostream>

#include "broker/server.hpp"

namespace v2::broker {

/// `v2broker --check`: tries each configured Linux tuning on a short-lived thread (nothing else
/// is changed, nothing is started), prints what would be in force for this user on this machine
/// with the fix for each shortfall, and returns 0 when every enabled tuning would apply, 1
/// otherwise.
int run_check(const BrokerOptions& options, std::ostream& out);

}  // namespace v2::broker
