#include "broker/registry.hpp"

#include <algorithm>
#include <mutex>

namespace v2::broker {

void Registry::add(const std::shared_ptr<Connection>& connection) {
  const std::unique_lock lock(mutex_);
  ids_.emplace(connection->id(), connection);
}

void Registry::remove(const Connection& connection) {
  const std::unique_lock lock(mutex_);
  ids_.erase(connection.id());
  for (auto it = names_.begin(); it != names_.end();) {
    it = it->second.get() == &connection ? names_.erase(it) : std::next(it);
  }
}

Registry::Claim Registry::claim(std::string_view name,
                                const std::shared_ptr<Connection>& connection) {
  const std::unique_lock lock(mutex_);
  const auto it = names_.find(name);
  if (it != names_.end()) {
    return it->second == connection ? Claim::already_yours : Claim::taken;
  }
  names_.emplace(std::string(name), connection);
  return Claim::claimed;
}

std::shared_ptr<Connection> Registry::by_name(std::string_view name) const {
  const std::shared_lock lock(mutex_);
  const auto it = names_.find(name);
  return it == names_.end() ? nullptr : it->second;
}

std::shared_ptr<Connection> Registry::by_id(std::uint64_t id) const {
  const std::shared_lock lock(mutex_);
  const auto it = ids_.find(id);
  return it == ids_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Connection>> Registry::connections() const {
  const std::shared_lock lock(mutex_);
  std::vector<std::shared_ptr<Connection>> all;
  all.reserve(ids_.size());
  for (const auto& [id, connection] : ids_) {
    all.push_back(connection);
  }
  return all;
}

std::vector<std::pair<std::string, std::shared_ptr<Connection>>> Registry::names() const {
  std::vector<std::pair<std::string, std::shared_ptr<Connection>>> all;
  {
    const std::shared_lock lock(mutex_);
    all.assign(names_.begin(), names_.end());
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return all;
}

std::size_t Registry::size() const {
  const std::shared_lock lock(mutex_);
  return ids_.size();
}

}  // namespace v2::broker
