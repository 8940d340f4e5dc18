#include "broker/metrics_http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <list>
#include <stdexcept>
#include <utility>
#include <vector>

#include "sys/error.hpp"

namespace v2::broker {
namespace {

using sys::errno_text;
using Clock = std::chrono::steady_clock;

constexpr int kBacklog = 16;
// After the response, the connection is read until the client closes it (so that closing with
// unread request bytes does not reset the connection and cut the response short), this long.
constexpr std::chrono::milliseconds kDrainTimeout{1000};
constexpr std::chrono::milliseconds kAcceptPause{1000};

struct Client {
  enum class State : unsigned char { reading, writing, draining };

  int fd = -1;
  State state = State::reading;
  Clock::time_point request_deadline;
  Clock::time_point exchange_deadline;
  std::string in;
  std::string out;
  std::size_t sent = 0;
};

std::string status_response(std::string_view status, std::string_view extra_headers) {
  const std::string body = std::string(status) + "\n";
  std::string response = "HTTP/1.1 " + std::string(status) + "\r\n";
  response += "Content-Type: text/plain; charset=utf-8\r\n";
  response += extra_headers;
  response += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  return response + body;
}

// The end of the request head ("\r\n\r\n", or "\n\n" from lenient clients), or npos.
std::size_t head_end(std::string_view in) {
  const std::size_t crlf = in.find("\r\n\r\n");
  const std::size_t lf = in.find("\n\n");
  return std::min(crlf == std::string_view::npos ? crlf : crlf + 4,
                  lf == std::string_view::npos ? lf : lf + 2);
}

}  // namespace

bool MetricsEndpoint::is_loopback() const noexcept {
  if (address.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
    return (ntohl(v4.sin_addr.s_addr) >> 24U) == 127U;
  }
  if (address.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
    if (IN6_IS_ADDR_LOOPBACK(&v6.sin6_addr)) {
      return true;
    }
    return IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr) && v6.sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

std::string MetricsEndpoint::to_string() const {
  char host[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
    ::inet_ntop(AF_INET, &v4.sin_addr, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(ntohs(v4.sin_port));
  }
  const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
  ::inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof(host));
  return "[" + std::string(host) + "]:" + std::to_string(ntohs(v6.sin6_port));
}

std::optional<MetricsEndpoint> parse_metrics_endpoint(std::string_view text, std::string& problem) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    problem = "expected ADDRESS:PORT (e.g. 127.0.0.1:9464 or [::1]:9464)";
    return std::nullopt;
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [rest, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || rest != port_text.data() + port_text.size() ||
      port > 65535) {
    problem = "port must be a number from 0 to 65535 (0: any free port)";
    return std::nullopt;
  }

  MetricsEndpoint endpoint;
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) {
    const std::string address(host.substr(1, host.size() - 2));
    auto& v6 = reinterpret_cast<sockaddr_in6&>(endpoint.address);
    if (::inet_pton(AF_INET6, address.c_str(), &v6.sin6_addr) != 1) {
      problem = "not a numeric IPv6 address: " + address;
      return std::nullopt;
    }
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(static_cast<std::uint16_t>(port));
    endpoint.length = sizeof(sockaddr_in6);
    return endpoint;
  }
  const std::string address(host);
  auto& v4 = reinterpret_cast<sockaddr_in&>(endpoint.address);
  if (::inet_pton(AF_INET, address.c_str(), &v4.sin_addr) != 1) {
    problem = address.find(':') != std::string::npos
                  ? "an IPv6 address goes in brackets: [" + address + "]:PORT"
                  : "not a numeric IPv4 address: " + address;
    return std::nullopt;
  }
  v4.sin_family = AF_INET;
  v4.sin_port = htons(static_cast<std::uint16_t>(port));
  endpoint.length = sizeof(sockaddr_in);
  return endpoint;
}

MetricsHttpServer::MetricsHttpServer(const MetricsEndpoint& endpoint, Render render,
                                     MetricsHttpLimits limits)
    : render_(std::move(render)), limits_(limits) {
  const std::string where = "metrics address=" + endpoint.to_string();
  listen_fd_ = ::socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    throw std::runtime_error("socket(" + where + "): " + errno_text(errno));
  }
  const auto fail = [&](const char* call) {
    const int error = errno;
    ::close(listen_fd_);
    if (stop_fd_ >= 0) {
      ::close(stop_fd_);
    }
    throw std::runtime_error(std::string(call) + "(" + where + "): " + errno_text(error));
  };
  const int one = 1;
  // A restarted broker may bind while connections of the old one linger in TIME_WAIT.
  if (::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    fail("setsockopt(SO_REUSEADDR)");
  }
  // [::] means IPv6 only, as written; IPv4 is a separate address.
  if (endpoint.address.ss_family == AF_INET6 &&
      ::setsockopt(listen_fd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
    fail("setsockopt(IPV6_V6ONLY)");
  }
  if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) !=
      0) {
    fail("bind");
  }
  if (::listen(listen_fd_, kBacklog) != 0) {
    fail("listen");
  }
  MetricsEndpoint bound;
  bound.length = sizeof(bound.address);
  if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound.address), &bound.length) != 0) {
    fail("getsockname");
  }
  bound_ = bound.to_string();
  stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (stop_fd_ < 0) {
    fail("eventfd");
  }
  thread_ = std::thread([this] { serve(); });
}

MetricsHttpServer::~MetricsHttpServer() {
  const std::uint64_t one = 1;
  if (::write(stop_fd_, &one, sizeof(one)) != sizeof(one)) {
    spdlog::error("metrics: cannot wake the metrics thread: {}", errno_text(errno));
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  ::close(stop_fd_);
  ::close(listen_fd_);
}

namespace {

// The response to a complete request head.
std::string respond(std::string_view head, const MetricsHttpServer::Render& render) {
  const std::string_view line = head.substr(0, head.find_first_of("\r\n"));
  const std::size_t first_space = line.find(' ');
  const std::size_t second_space =
      first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos ||
      line.substr(second_space + 1).rfind("HTTP/1.", 0) != 0) {
    return status_response("400 Bad Request", {});
  }
  const std::string_view method = line.substr(0, first_space);
  const std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
  if (method != "GET" && method != "HEAD") {
    return status_response("405 Method Not Allowed", "Allow: GET, HEAD\r\n");
  }
  if (target.substr(0, target.find('?')) != "/metrics") {
    return status_response("404 Not Found", {});
  }
  std::string body;
  try {
    body = render();
  } catch (const std::exception& error) {
    spdlog::warn("metrics: cannot render the metrics: {}", error.what());
    return status_response("500 Internal Server Error", {});
  }
  std::string response =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  if (method == "GET") {
    response += body;
  }
  return response;
}

// Reads what the client sent; false when the connection is done with (closed or failed).
bool read_request(Client& c, const MetricsHttpServer::Render& render, std::size_t max_bytes) {
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::recv(c.fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n == 0) {
      return false;  // closed before a complete request
    }
    if (n < 0) {
      return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
    c.in.append(chunk, static_cast<std::size_t>(n));
    const std::size_t end = head_end(c.in);
    if (end != std::string::npos && end <= max_bytes) {
      c.out = respond(std::string_view(c.in).substr(0, end), render);
    } else if (c.in.size() > max_bytes) {
      c.out = status_response("431 Request Header Fields Too Large", {});
    } else {
      continue;
    }
    c.in.clear();
    c.state = Client::State::writing;
    return true;
  }
}

// Sends what is left of the response; false when the connection failed.
bool write_response(Client& c) {
  while (c.sent < c.out.size()) {
    const ssize_t n =
        ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
    c.sent += static_cast<std::size_t>(n);
  }
  ::shutdown(c.fd, SHUT_WR);
  c.state = Client::State::draining;
  c.exchange_deadline = std::min(c.exchange_deadline, Clock::now() + kDrainTimeout);
  return true;
}

// Discards what the client still sends; false once it closed.
bool drain(Client& c) {
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::recv(c.fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n > 0) {
      continue;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
  }
}

}  // namespace

void MetricsHttpServer::serve() noexcept {
  if (const int rc = ::pthread_setname_np(::pthread_self(), "v2-metrics"); rc != 0) {
    spdlog::debug("metrics: pthread_setname_np: {}", errno_text(rc));
  }
  std::list<Client> clients;
  std::vector<pollfd> fds;
  const auto close_client = [&](std::list<Client>::iterator it) {
    ::close(it->fd);
    return clients.erase(it);
  };

  Clock::time_point accept_resume{};  // after an accept failure such as EMFILE
  for (;;) {
    const auto now = Clock::now();
    for (auto it = clients.begin(); it != clients.end();) {
      const auto deadline =
          it->state == Client::State::reading ? it->request_deadline : it->exchange_deadline;
      it = now >= deadline ? close_client(it) : std::next(it);
    }

    fds.clear();
    fds.push_back({stop_fd_, POLLIN, 0});
    const bool room = clients.size() < limits_.max_clients && now >= accept_resume;
    // With every slot taken, new connections wait in the kernel's backlog.
    fds.push_back({room ? listen_fd_ : -1, POLLIN, 0});
    int timeout_ms = now < accept_resume ? static_cast<int>(kAcceptPause.count()) : -1;
    for (const Client& c : clients) {
      fds.push_back(
          {c.fd, static_cast<short>(c.state == Client::State::writing ? POLLOUT : POLLIN), 0});
      const auto deadline =
          c.state == Client::State::reading ? c.request_deadline : c.exchange_deadline;
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
      timeout_ms =
          timeout_ms < 0 ? static_cast<int>(left) : std::min(timeout_ms, static_cast<int>(left));
    }

    if (::poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) {
        continue;
      }
      spdlog::error("metrics: poll: {}; the metrics endpoint stops", errno_text(errno));
      break;
    }
    if (fds[0].revents != 0) {
      break;
    }

    std::size_t index = 2;
    for (auto it = clients.begin(); it != clients.end(); ++index) {
      const short events = fds[index].revents;
      bool keep = true;
      if (events != 0) {
        switch (it->state) {
          case Client::State::reading:
            keep = read_request(*it, render_, limits_.max_request_bytes) &&
                   (it->state != Client::State::writing || write_response(*it));
            break;
          case Client::State::writing:
            keep = write_response(*it);
            break;
          case Client::State::draining:
            keep = drain(*it);
            break;
        }
      }
      it = keep ? std::next(it) : close_client(it);
    }

    if ((fds[1].revents & POLLIN) != 0) {
      while (clients.size() < limits_.max_clients) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
            // The connection stays in the backlog and the listener readable: pause, or this
            // loop would spin.
            spdlog::warn("metrics: accept: {}; pausing for {} ms", errno_text(errno),
                         kAcceptPause.count());
            accept_resume = Clock::now() + kAcceptPause;
          }
          break;
        }
        const auto accepted = Clock::now();
        Client c;
        c.fd = fd;
        c.request_deadline = accepted + limits_.request_timeout;
        c.exchange_deadline = accepted + limits_.exchange_timeout;
        clients.push_back(std::move(c));
      }
    }
  }

  for (const Client& c : clients) {
    ::close(c.fd);
  }
}

}  // namespace v2::broker
