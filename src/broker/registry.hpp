#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/connection.hpp"

namespace v2::broker {

/// Who is connected, and which connection holds each name. Workers look up under a shared
/// lock; the I/O thread changes it under an exclusive one.
class Registry {
 public:
  void add(const std::shared_ptr<Connection>& connection);
  /// Forgets the connection and frees every name it held.
  void remove(const Connection& connection);

  enum class Claim : unsigned char { claimed, already_yours, taken };
  /// Gives `name` to `connection` unless another live connection holds it.
  Claim claim(std::string_view name, const std::shared_ptr<Connection>& connection);

  [[nodiscard]] std::shared_ptr<Connection> by_name(std::string_view name) const;
  [[nodiscard]] std::shared_ptr<Connection> by_id(std::uint64_t id) const;
  [[nodiscard]] std::vector<std::shared_ptr<Connection>> connections() const;
  /// Every registered name with its holder, sorted by name.
  [[nodiscard]] std::vector<std::pair<std::string, std::shared_ptr<Connection>>> names() const;
  [[nodiscard]] std::size_t size() const;

 private:
  // Lookup by string_view without building a std::string.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };

  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Connection>, Hash, std::equal_to<>> names_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> ids_;
};

}  // namespace v2::broker
