// --log-format json: every line the broker writes to stderr, from startup to exit, is one JSON
// object that nlohmann::json parses, however odd the text it carries.

#include <gtest/gtest.h>

#include <csignal>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using nlohmann::json;
using wire::Framing;

/// Every line of `log` parsed; a line that does not parse is reported with its text.
std::vector<json> parse_lines(const std::string& log) {
  std::vector<json> lines;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    try {
      lines.push_back(json::parse(line));
    } catch (const json::exception& error) {
      ADD_FAILURE() << "not a JSON line (" << error.what() << "): " << line;
    }
  }
  return lines;
}

/// The first record whose message contains `text`, or null.
json find_record(const std::vector<json>& lines, const std::string& text) {
  for (const json& line : lines) {
    if (line.contains("message") && line["message"].is_string() &&
        line["message"].get<std::string>().find(text) != std::string::npos) {
      return line;
    }
  }
  return nullptr;
}

void expect_record_fields(const json& record) {
  static const std::regex kTime(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)");
  static const std::set<std::string> kLevels = {"trace",   "debug", "info",
                                                "warning", "error", "critical"};
  ASSERT_TRUE(record.is_object()) << record;
  EXPECT_TRUE(std::regex_match(record.at("time").get<std::string>(), kTime)) << record;
  EXPECT_EQ(kLevels.count(record.at("level").get<std::string>()), 1U) << record;
  EXPECT_TRUE(record.at("message").is_string()) << record;
  EXPECT_TRUE(record.at("thread_id").is_number_unsigned()) << record;
  EXPECT_TRUE(record.at("thread").is_string()) << record;
  EXPECT_EQ(record.at("logger"), "v2broker") << record;
}

TEST(BrokerLogFormat, JsonWritesEveryLineAsOneObjectAndEscapesWhatItCarries) {
  TempDir dir;
  // The socket path is logged at startup: a quote, a backslash, a tab, a newline, a control
  // character and a byte that is not UTF-8 all reach the formatter through it.
  const std::string odd = "q\"b\\t\tn\nc\x01x\xff.sock";
  BrokerProcess broker(
      dir, BrokerProcess::Options()
               .at_path(dir.file(odd))
               .with_args({"--log-format=json", "--stats-log-interval=20ms", "--workers=2"}));
  {
    Peer peer(broker.socket_path(), Framing::ndjson);
    // A name with a quote and a backslash, logged when it is registered.
    const Message reply = peer.register_name(R"(o\"k\\x)");
    ASSERT_EQ(reply.type, MessageType::response) << reply.error;
  }
  ASSERT_TRUE(wait_until([&] { return broker.log().find("stats: ") != std::string::npos; }));
  broker.signal(SIGTERM);
  ASSERT_EQ(broker.exit_code(), 0);

  const std::string log = broker.log();
  const std::vector<json> lines = parse_lines(log);
  ASSERT_GE(lines.size(), 5U) << log;
  for (const json& record : lines) {
    expect_record_fields(record);
  }

  // The path comes back intact, the invalid byte as U+FFFD.
  const json listening = find_record(lines, "listening on");
  ASSERT_FALSE(listening.is_null()) << log;
  const std::string shown = dir.file("q\"b\\t\tn\nc\x01x\xEF\xBF\xBD.sock");
  EXPECT_NE(listening["message"].get<std::string>().find(shown), std::string::npos) << listening;
  EXPECT_EQ(listening["level"], "info");
  EXPECT_EQ(listening["thread"], "v2broker");
  // The raw line escapes the control characters rather than carrying them.
  EXPECT_EQ(log.find('\x01'), std::string::npos);
  EXPECT_EQ(log.find('\t'), std::string::npos);

  const json registered = find_record(lines, "registered as ");
  ASSERT_FALSE(registered.is_null()) << log;
  EXPECT_NE(registered["message"].get<std::string>().find(R"(registered as o"k\x)"),
            std::string::npos)
      << registered;

  EXPECT_FALSE(find_record(lines, "tuning: ").is_null()) << log;
  EXPECT_FALSE(find_record(lines, "stats: ").is_null()) << log;
  EXPECT_FALSE(find_record(lines, "stopped: ").is_null()) << log;
}

TEST(BrokerLogFormat, JsonFromTheConfigurationFileAndTextByDefault) {
  TempDir dir;
  const std::string config = dir.file("broker.conf");
  std::ofstream(config) << "log-format = json\nworkers = 2\n";
  BrokerProcess json_broker(
      dir, BrokerProcess::Options().with_args({"--config=" + config}).at_path(dir.file("j.sock")));
  ASSERT_TRUE(
      wait_until([&] { return json_broker.log().find("listening on") != std::string::npos; }));
  for (const json& record : parse_lines(json_broker.log())) {
    expect_record_fields(record);
  }

  BrokerProcess text_broker(
      dir, BrokerProcess::Options().with_args({"--workers=2"}).at_path(dir.file("t.sock")));
  ASSERT_TRUE(
      wait_until([&] { return text_broker.log().find("listening on") != std::string::npos; }));
  const std::string text = text_broker.log();
  EXPECT_NE(text.front(), '{') << text;
  EXPECT_NE(text.find(" info v2broker "), std::string::npos) << text;
}

TEST(BrokerLogFormat, UnknownFormatIsRefused) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--log-format=xml"}).no_wait());
  EXPECT_EQ(broker.exit_code(), 2);
  EXPECT_NE(broker.log().find("--log-format"), std::string::npos) << broker.log();
}

}  // namespace
}  // namespace v2::integration
