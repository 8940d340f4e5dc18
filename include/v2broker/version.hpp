#pragma once

#include <string_view>

namespace v2 {

inline constexpr std::string_view kVersion = "0.1.0";

}  // namespace v2
