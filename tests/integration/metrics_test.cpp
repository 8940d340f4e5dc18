// The Prometheus endpoint (--metrics-listen): scraped over real TCP sockets, the exposition text
// parsed here and checked against the messages the test routed, and hostile scrapers.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using wire::Framing;

// ---- HTTP over TCP ----

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

/// A TCP connection to "127.0.0.1:PORT" or "[::1]:PORT"; throws when it cannot connect.
int tcp_connect(const std::string& address) {
  const std::size_t colon = address.rfind(':');
  const int port = std::stoi(address.substr(colon + 1));
  std::string host = address.substr(0, colon);
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (host.front() == '[') {
    host = host.substr(1, host.size() - 2);
    auto& v6 = reinterpret_cast<sockaddr_in6&>(storage);
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr);
    length = sizeof(v6);
  } else {
    auto& v4 = reinterpret_cast<sockaddr_in&>(storage);
    v4.sin_family = AF_INET;
    v4.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &v4.sin_addr);
    length = sizeof(v4);
  }
  const int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail_errno("socket");
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&storage), length) != 0) {
    ::close(fd);
    fail_errno("connect " + address);
  }
  return fd;
}

/// Everything the peer sends until it closes the connection, or until `patience` passes.
std::string read_to_end(int fd, std::chrono::milliseconds patience = kPatience) {
  std::string all;
  const auto deadline = Clock::now() + patience;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      throw std::runtime_error("no end of response within the patience; got:\n" + all);
    }
    char chunk[16384];
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n <= 0) {
      return all;
    }
    all.append(chunk, static_cast<std::size_t>(n));
  }
}

/// True when the peer closes the connection (EOF or reset) within `patience`.
bool closed_by_peer(int fd, std::chrono::milliseconds patience = kPatience) {
  try {
    (void)read_to_end(fd, patience);
    return true;
  } catch (const std::runtime_error&) {
    return false;
  }
}

HttpResponse parse_response(const std::string& raw) {
  HttpResponse response;
  const std::size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || raw.rfind("HTTP/1.1 ", 0) != 0) {
    throw std::runtime_error("not an HTTP/1.1 response:\n" + raw);
  }
  response.status = std::stoi(raw.substr(9, 3));
  std::istringstream head(raw.substr(0, head_end));
  std::string line;
  std::getline(head, line);
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    const std::size_t colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (char& c : name) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    response.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  response.body = raw.substr(head_end + 4);
  return response;
}

/// Sends `request` as it is and returns the parsed response.
HttpResponse http_exchange(const std::string& address, const std::string& request) {
  const int fd = tcp_connect(address);
  std::string raw;
  try {
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      fail_errno("send");
    }
    raw = read_to_end(fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return parse_response(raw);
}

HttpResponse http_get(const std::string& address, const std::string& path = "/metrics") {
  return http_exchange(
      address, "GET " + path + " HTTP/1.1\r\nHost: " + address + "\r\nAccept: text/plain\r\n\r\n");
}

/// The address the broker logged for its metrics endpoint ("127.0.0.1:PORT").
std::string metrics_address(const BrokerProcess& broker) {
  static const std::regex kServing(R"(metrics: serving http://(\S+)/metrics)");
  std::smatch match;
  std::string log;
  const bool found = wait_until([&] {
    log = broker.log();
    return std::regex_search(log, match, kServing);
  });
  if (!found) {
    throw std::runtime_error("the broker did not log its metrics address; log:\n" + log);
  }
  return match[1];
}

// ---- The exposition format ----

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0.0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> counter, gauge, histogram
  std::set<std::string> helped;              // families with a HELP line
  std::vector<Sample> samples;
  std::vector<std::string> problems;  // what did not parse or lacks HELP/TYPE

  /// The samples named `name` whose labels include `labels`.
  [[nodiscard]] std::vector<Sample> find(
      const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    std::vector<Sample> found;
    for (const Sample& s : samples) {
      bool match = s.name == name;
      for (const auto& [key, value] : labels) {
        const auto it = s.labels.find(key);
        match = match && it != s.labels.end() && it->second == value;
      }
      if (match) {
        found.push_back(s);
      }
    }
    return found;
  }

  /// The value of the one sample named `name` with `labels`; throws unless exactly one.
  [[nodiscard]] double value(const std::string& name,
                             const std::map<std::string, std::string>& labels = {}) const {
    const auto found = find(name, labels);
    if (found.size() != 1) {
      throw std::runtime_error(name + ": " + std::to_string(found.size()) + " samples, not 1");
    }
    return found.front().value;
  }
};

double parse_value(const std::string& text) {
  if (text == "+Inf") {
    return HUGE_VAL;
  }
  if (text == "-Inf") {
    return -HUGE_VAL;
  }
  if (text == "NaN") {
    return std::nan("");
  }
  std::size_t used = 0;
  const double value = std::stod(text, &used);
  if (used != text.size()) {
    throw std::invalid_argument("value " + text);
  }
  return value;
}

// name{key="value",...} value
Sample parse_sample(const std::string& line) {
  static const std::regex kName("^[a-zA-Z_:][a-zA-Z0-9_:]*");
  std::smatch match;
  if (!std::regex_search(line, match, kName)) {
    throw std::invalid_argument("no metric name");
  }
  Sample sample;
  sample.name = match.str();
  std::size_t at = sample.name.size();
  if (at < line.size() && line[at] == '{') {
    ++at;
    while (line.at(at) != '}') {
      const std::size_t equals = line.find('=', at);
      const std::string key = line.substr(at, equals - at);
      if (line.at(equals + 1) != '"') {
        throw std::invalid_argument("label value not quoted");
      }
      std::string value;
      at = equals + 2;
      for (; line.at(at) != '"'; ++at) {
        if (line[at] == '\\') {
          const char next = line.at(++at);
          value += next == 'n' ? '\n' : next;
        } else {
          value += line[at];
        }
      }
      sample.labels[key] = value;
      ++at;
      if (line.at(at) == ',') {
        ++at;
      }
    }
    ++at;
  }
  if (line.at(at) != ' ') {
    throw std::invalid_argument("no space before the value");
  }
  std::string value = line.substr(at + 1);
  value.resize(std::min(value.size(), value.find(' ')));  // an optional timestamp follows
  sample.value = parse_value(value);
  return sample;
}

// The family a sample belongs to: histograms add _bucket, _sum and _count to theirs.
std::string family_of(const std::string& sample_name, const Exposition& e) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s(suffix);
    if (sample_name.size() > s.size() &&
        sample_name.compare(sample_name.size() - s.size(), s.size(), s) == 0) {
      std::string base = sample_name.substr(0, sample_name.size() - s.size());
      const auto it = e.types.find(base);
      if (it != e.types.end() && it->second == "histogram") {
        return base;
      }
    }
  }
  return sample_name;
}

Exposition parse_exposition(const std::string& text) {
  Exposition e;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) {
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) {
      e.helped.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::size_t space = line.find(' ', 7);
      e.types[line.substr(7, space - 7)] = line.substr(space + 1);
      continue;
    }
    if (line.front() == '#') {
      continue;
    }
    try {
      Sample sample = parse_sample(line);
      const std::string family = family_of(sample.name, e);
      if (!e.types.contains(family) || !e.helped.contains(family)) {
        e.problems.push_back("no HELP and TYPE before: " + line);
      }
      e.samples.push_back(std::move(sample));
    } catch (const std::exception& error) {
      e.problems.push_back(std::string(error.what()) + ": " + line);
    }
  }
  return e;
}

/// Buckets of `histogram` by ascending le, the +Inf bucket last.
std::vector<Sample> buckets(const Exposition& e, const std::string& histogram) {
  auto found = e.find(histogram + "_bucket");
  std::sort(found.begin(), found.end(), [](const Sample& a, const Sample& b) {
    return parse_value(a.labels.at("le")) < parse_value(b.labels.at("le"));
  });
  return found;
}

void expect_well_formed_histogram(const Exposition& e, const std::string& histogram,
                                  double expected_count) {
  const auto b = buckets(e, histogram);
  ASSERT_GE(b.size(), 15U) << histogram;
  EXPECT_EQ(b.back().labels.at("le"), "+Inf") << histogram;
  EXPECT_DOUBLE_EQ(parse_value(b.front().labels.at("le")), 1e-6) << histogram;
  for (std::size_t i = 1; i < b.size(); ++i) {
    EXPECT_LE(b[i - 1].value, b[i].value) << histogram << " le=" << b[i].labels.at("le");
  }
  EXPECT_EQ(b.back().value, e.value(histogram + "_count")) << histogram;
  EXPECT_EQ(e.value(histogram + "_count"), expected_count) << histogram;
  EXPECT_GT(e.value(histogram + "_sum"), 0.0) << histogram;
  EXPECT_LT(e.value(histogram + "_sum"), 60.0 * expected_count) << histogram << " in seconds";
}

Exposition scrape(const std::string& address) {
  const HttpResponse r = http_get(address);
  if (r.status != 200) {
    throw std::runtime_error("scrape: status " + std::to_string(r.status));
  }
  return parse_exposition(r.body);
}

std::vector<std::string> metrics_args(std::vector<std::string> more = {}) {
  std::vector<std::string> args = {"--metrics-listen=127.0.0.1:0", "--workers=2"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// ---- Tests ----

TEST(BrokerMetrics, CountersMatchTheMessagesRoutedByTypeAndHistogramsAreCumulative) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args(metrics_args()));
  const std::string address = metrics_address(broker);

  Peer alice(broker.socket_path(), Framing::ndjson);
  Peer bob(broker.socket_path(), Framing::binary);
  ASSERT_EQ(alice.register_name("alice").type, MessageType::response);
  ASSERT_EQ(bob.register_name("bob").type, MessageType::response);
  const std::map<MessageType, int> sent = {
      {MessageType::request, 7}, {MessageType::response, 3}, {MessageType::event, 5}};
  int total = 0;
  for (const auto& [type, count] : sent) {
    for (int i = 0; i < count; ++i) {
      alice.send(make_message(type, "bob", "m", R"({"n":1})", "c" + std::to_string(total++)));
    }
  }
  for (int i = 0; i < 2; ++i) {
    alice.send(make_message(MessageType::event, "nobody", "m", {}, "lost" + std::to_string(i)));
  }
  for (int i = 0; i < total; ++i) {
    ASSERT_TRUE(bob.receive().has_value()) << "message " << i;
  }
  EXPECT_EQ(alice.wait_for("lost0").type, MessageType::error);
  EXPECT_EQ(alice.wait_for("lost1").type, MessageType::error);

  // A worker counts a message as routed once its batch is done: wait for the last one.
  const double routed = total + 2;
  Exposition e;
  ASSERT_TRUE(wait_until([&] {
    e = scrape(address);
    return e.find("v2broker_messages_routed_total").size() == 4 &&
           e.value("v2broker_messages_routed_total", {{"type", "request"}}) +
                   e.value("v2broker_messages_routed_total", {{"type", "response"}}) +
                   e.value("v2broker_messages_routed_total", {{"type", "event"}}) ==
               routed;
  }));
  EXPECT_TRUE(e.problems.empty()) << ::testing::PrintToString(e.problems);

  // Received from clients: the two registrations are requests too.
  EXPECT_EQ(e.value("v2broker_messages_received_total", {{"type", "request"}}), 7 + 2);
  EXPECT_EQ(e.value("v2broker_messages_received_total", {{"type", "response"}}), 3);
  EXPECT_EQ(e.value("v2broker_messages_received_total", {{"type", "event"}}), 5 + 2);
  EXPECT_EQ(e.value("v2broker_messages_received_total", {{"type", "error"}}), 0);
  EXPECT_EQ(e.value("v2broker_messages_routed_total", {{"type", "request"}}), 7);
  EXPECT_EQ(e.value("v2broker_messages_routed_total", {{"type", "response"}}), 3);
  EXPECT_EQ(e.value("v2broker_messages_routed_total", {{"type", "event"}}), 5 + 2);
  EXPECT_EQ(e.value("v2broker_messages_offered_total"), routed);
  EXPECT_GE(e.value("v2broker_messages_delivered_total"), total);
  EXPECT_EQ(e.value("v2broker_messages_dropped_total", {{"reason", "unknown_target"}}), 2);
  EXPECT_EQ(e.value("v2broker_messages_dropped_total", {{"reason", "queue_full"}}), 0);
  EXPECT_GE(e.value("v2broker_error_replies_total"), 2);
  double per_worker = 0;
  for (const Sample& s : e.find("v2broker_worker_messages_routed_total")) {
    per_worker += s.value;
  }
  EXPECT_EQ(per_worker, routed);
  EXPECT_EQ(e.find("v2broker_worker_messages_routed_total").size(), 2U);

  EXPECT_EQ(e.value("v2broker_connections"), 2);
  EXPECT_EQ(e.value("v2broker_registered_names"), 2);
  EXPECT_EQ(e.value("v2broker_queue_capacity_messages"), 1000);
  EXPECT_EQ(e.value("v2broker_queue_messages"), 0);
  EXPECT_EQ(e.value("v2broker_queue_saturation_ratio"), 0);
  expect_well_formed_histogram(e, "v2broker_queue_latency_seconds", routed);
  expect_well_formed_histogram(e, "v2broker_route_latency_seconds", routed);

  // Every counter family is named _total; every family has samples.
  for (const auto& [family, type] : e.types) {
    if (type == "counter") {
      EXPECT_TRUE(family.size() > 6 && family.substr(family.size() - 6) == "_total") << family;
    }
    EXPECT_EQ(family.rfind("v2broker_", 0), 0U) << family;
  }
  EXPECT_EQ(e.types.at("v2broker_queue_latency_seconds"), "histogram");

  EXPECT_EQ(e.value("v2broker_build_info"), 1);
  EXPECT_FALSE(e.find("v2broker_build_info").front().labels.at("version").empty());
  EXPECT_GT(e.value("v2broker_start_time_seconds"), 1.5e9);
  for (const char* tuning : {"affinity", "nice", "io_priority"}) {
    const double in_force = e.value("v2broker_tuning_in_force", {{"tuning", tuning}});
    EXPECT_TRUE(in_force == 0 || in_force == 1) << tuning;
  }
  EXPECT_EQ(e.find("v2broker_thread_nice", {{"thread", "v2-worker-0"}}).size(), 1U);
  // The main thread, by its tid: sanitizer runtimes add threads of the same name.
  EXPECT_EQ(e.find("v2broker_thread_pinned_cpu",
                   {{"thread", "v2broker"}, {"tid", std::to_string(broker.pid())}})
                .size(),
            1U);
  EXPECT_EQ(e.find("v2broker_thread_io_class", {{"thread", "v2-worker-1"}}).size(), 1U);
}

TEST(BrokerMetrics, OtherPathsAreNotFoundOtherMethodsNotAllowedAndOversizedRequestsRefused) {
  TempDir dir;
  // The address comes from the configuration file, as any flag may.
  const std::string config = dir.file("broker.conf");
  std::ofstream(config) << "metrics-listen = 127.0.0.1:0\nworkers = 2\n";
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--config=" + config}));
  const std::string address = metrics_address(broker);

  const HttpResponse ok = http_get(address);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.headers.at("content-type").rfind("text/plain; version=0.0.4", 0), 0U);
  EXPECT_EQ(ok.headers.at("content-length"), std::to_string(ok.body.size()));
  EXPECT_EQ(http_get(address, "/metrics?debug=1").status, 200);

  EXPECT_EQ(http_get(address, "/").status, 404);
  EXPECT_EQ(http_get(address, "/metricsx").status, 404);
  const HttpResponse post =
      http_exchange(address, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.headers.at("allow"), "GET, HEAD");
  EXPECT_EQ(http_exchange(address, "DELETE /metrics HTTP/1.1\r\n\r\n").status, 405);

  const HttpResponse head = http_exchange(address, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());

  EXPECT_EQ(http_exchange(address, "hello\r\n\r\n").status, 400);
  const std::string huge =
      "GET /metrics HTTP/1.1\r\nX-Padding: " + std::string(20000, 'a') + "\r\n\r\n";
  EXPECT_EQ(http_exchange(address, huge).status, 431);

  EXPECT_EQ(http_get(address).status, 200);  // still serving
}

TEST(BrokerMetrics, SilentScrapersAreTimedOutAndDoNotStopOtherScrapes) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args(metrics_args()));
  const std::string address = metrics_address(broker);

  // More silent connections than the endpoint serves at once: every slot is taken, and one
  // waits in the backlog ahead of the real scrape.
  std::vector<int> silent;
  silent.reserve(5);
  for (int i = 0; i < 5; ++i) {
    silent.push_back(tcp_connect(address));
  }
  const HttpResponse r = http_get(address);
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(parse_exposition(r.body).samples.empty());
  for (const int fd : silent) {
    EXPECT_TRUE(closed_by_peer(fd)) << "a silent scraper was never disconnected";
    ::close(fd);
  }

  // One that sends half a request and stops is disconnected too.
  const int partial = tcp_connect(address);
  ASSERT_EQ(::send(partial, "GET /metr", 9, MSG_NOSIGNAL), 9);
  EXPECT_TRUE(closed_by_peer(partial));
  ::close(partial);

  // Routing went on meanwhile.
  Peer a(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(a.register_name("a").type, MessageType::response);
  a.send(make_message(MessageType::event, "a", "self", R"({"x":1})"));
  EXPECT_TRUE(a.receive().has_value());
}

TEST(BrokerMetrics, ServesOnIpv6Loopback) {
  const int probe = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 loopback{};
  loopback.sin6_family = AF_INET6;
  loopback.sin6_addr = in6addr_loopback;
  const bool ipv6 = probe >= 0 && ::bind(probe, reinterpret_cast<const sockaddr*>(&loopback),
                                         sizeof(loopback)) == 0;
  if (probe >= 0) {
    ::close(probe);
  }
  if (!ipv6) {
    GTEST_SKIP() << "no IPv6 loopback here: binding [::1] failed";
  }
  TempDir dir;
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_args({"--metrics-listen=[::1]:0", "--workers=2"}));
  const std::string address = metrics_address(broker);
  EXPECT_EQ(address.rfind("[::1]:", 0), 0U) << address;
  const Exposition e = scrape(address);
  EXPECT_TRUE(e.problems.empty()) << ::testing::PrintToString(e.problems);
  EXPECT_EQ(e.value("v2broker_build_info"), 1);
}

TEST(BrokerMetrics, NonLoopbackAddressNeedsAllowRemoteAndBadAddressesAreRefused) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"0.0.0.0:9464", "--metrics-allow-remote"},
      {"[::]:9464", "--metrics-allow-remote"},
      {"127.0.0.1", "ADDRESS:PORT"},
      {"127.0.0.1:65536", "port"},
      {"localhost:9464", "numeric"},
      {"::1:9464", "brackets"},
  };
  for (const auto& [value, why] : refused) {
    BrokerProcess broker(
        dir, BrokerProcess::Options().with_args({"--metrics-listen=" + value}).no_wait());
    EXPECT_EQ(broker.exit_code(), 2) << value;
    const std::string log = broker.log();
    EXPECT_NE(log.find("--metrics-listen=" + value), std::string::npos) << log;
    EXPECT_NE(log.find(why), std::string::npos) << log;
  }
}

TEST(BrokerMetrics, PortInUseStopsTheBrokerWithTheAddressAndErrno) {
  TempDir dir;
  BrokerProcess first(dir, BrokerProcess::Options().with_args(metrics_args()));
  const std::string address = metrics_address(first);
  BrokerProcess second(dir, BrokerProcess::Options()
                                .with_args({"--metrics-listen=" + address})
                                .at_path(dir.file("second.sock"))
                                .no_wait());
  EXPECT_EQ(second.exit_code(), 1);
  const std::string log = second.log();
  EXPECT_NE(log.find("address=" + address), std::string::npos) << log;
  EXPECT_NE(log.find("EADDRINUSE"), std::string::npos) << log;
}

// promtool (Debian package prometheus) is the reference checker of the format.
std::optional<std::string> find_promtool() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path == nullptr ? "" : path);
  for (std::string d; std::getline(dirs, d, ':');) {
    const std::string candidate = d + "/promtool";
    if (!d.empty() && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return std::nullopt;
}

TEST(BrokerMetrics, PromtoolAcceptsTheExposition) {
  const auto promtool = find_promtool();
  if (!promtool) {
    GTEST_SKIP() << "promtool is not on PATH (Debian package prometheus)";
  }
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args(metrics_args()));
  const std::string address = metrics_address(broker);
  Peer a(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(a.register_name("a").type, MessageType::response);
  a.send(make_message(MessageType::event, "a", "self", R"({"x":1})"));
  ASSERT_TRUE(a.receive().has_value());

  const std::string text = dir.file("metrics.txt");
  std::ofstream(text) << http_get(address).body;
  const std::string out = dir.file("promtool.out");
  Process check({"/bin/sh", "-c", R"(exec "$0" check metrics < "$1")", *promtool, text}, out, out);
  EXPECT_EQ(check.exit_code(), 0) << read_file(out);
  EXPECT_EQ(read_file(out), "") << "promtool's lint findings";
}

}  // namespace
}  // namespace v2::integration
