// The broker's own methods: each answers with the documented shape, and what it reports
// agrees with what is observed from outside (peer processes, the kernel's view of the threads).

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/syscall.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using nlohmann::json;
using wire::Framing;

bool is_rfc3339(const json& value) {
  static const std::regex kPattern(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d))");
  return value.is_string() && std::regex_match(value.get<std::string>(), kPattern);
}

json call_ok(Peer& peer, const std::string& method, const std::string& payload = {}) {
  const Message reply = peer.call(method, payload);
  EXPECT_EQ(reply.type, MessageType::response) << method << ": " << reply.error;
  EXPECT_EQ(reply.id, method);
  EXPECT_EQ(reply.source, "broker");
  return payload_json(reply);
}

// The nice value of a thread as the kernel reports it (field 19 of /proc/PID/task/TID/stat).
int kernel_nice(pid_t pid, long tid) {
  const std::string stat =
      read_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 19; ++i) {
    fields >> field;
  }
  return std::stoi(field);
}

// "policy/priority" of a thread from fields 41 (policy) and 40 (rt_priority) of its stat file,
// in the report's vocabulary.
std::string kernel_scheduling(pid_t pid, long tid) {
  const std::string stat =
      read_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  std::string priority;
  for (int i = 3; i <= 41; ++i) {
    fields >> field;
    if (i == 40) {
      priority = field;
    }
  }
  static const std::map<std::string, std::string> kPolicies = {
      {"0", "other"}, {"1", "fifo"}, {"2", "rr"}, {"3", "batch"}, {"5", "idle"}};
  const auto found = kPolicies.find(field);
  return (found == kPolicies.end() ? field : found->second) + "/" + priority;
}

std::vector<int> kernel_affinity(long tid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(static_cast<pid_t>(tid), sizeof(set), &set) != 0) {
    return {-1};
  }
  std::vector<int> cpus;
  for (std::size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) {
      cpus.push_back(static_cast<int>(cpu));
    }
  }
  return cpus;
}

// "class/level" from ioprio_get, in the report's vocabulary.
std::string kernel_io_priority(long tid) {
  constexpr int kWhoProcess = 1;
  const long value = ::syscall(SYS_ioprio_get, kWhoProcess, static_cast<int>(tid));
  if (value < 0) {
    return "error";
  }
  static const char* const kClasses[] = {"none", "realtime", "best-effort", "idle"};
  const long io_class = (value >> 13) & 0x7;
  const long level = value & 0x1fff;
  return std::string(io_class < 4 ? kClasses[static_cast<std::size_t>(io_class)] : "?") + "/" +
         std::to_string(level);
}

TEST(BrokerCalls, MessageStatsCountWhatWasSentPerTypeAndPerProcess) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer alice(broker.socket_path(), Framing::ndjson);
  Peer bob(broker.socket_path(), Framing::binary);
  Peer observer(broker.socket_path(), Framing::ndjson);
  alice.register_name("alice");
  bob.register_name("bob");

  for (int i = 0; i < 3; ++i) {
    alice.send(make_message(MessageType::event, "bob", "e", R"({"i":1})"));
  }
  alice.send(make_message(MessageType::request, "bob", "q", "", "q-1"));
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(bob.receive().has_value());
  }
  bob.send(make_message(MessageType::response, "alice", "q", R"({"ok":true})", "q-1"));
  ASSERT_TRUE(alice.receive().has_value());

  const json stats = call_ok(observer, "RPCGetMessageStats");
  ASSERT_TRUE(stats.contains("total")) << stats.dump();
  const json& total = stats["total"];
  for (const char* key : {"total_sent", "total_received", "request_count", "response_count",
                          "event_count", "error_count"}) {
    EXPECT_TRUE(total[key].is_number_unsigned()) << key << " in " << total.dump();
  }
  // Read from clients: two registrations, three events, a request, a response and this call.
  EXPECT_EQ(total["total_received"], 8);
  EXPECT_EQ(total["request_count"], 4);
  EXPECT_EQ(total["response_count"], 1);
  EXPECT_EQ(total["event_count"], 3);
  EXPECT_EQ(total["error_count"], 0);
  EXPECT_GE(total["total_sent"].get<std::uint64_t>(), 5U);
  EXPECT_TRUE(is_rfc3339(total["first_message_time"])) << total.dump();
  EXPECT_TRUE(is_rfc3339(total["last_message_time"])) << total.dump();
  EXPECT_LE(total["first_message_time"].get<std::string>(),
            total["last_message_time"].get<std::string>());

  const json& per_process = stats["per_process"];
  ASSERT_TRUE(per_process.contains("alice")) << stats.dump();
  ASSERT_TRUE(per_process.contains("bob")) << stats.dump();
  EXPECT_EQ(per_process["alice"]["total_sent"], 5);
  EXPECT_EQ(per_process["alice"]["event_count"], 3);
  EXPECT_EQ(per_process["alice"]["request_count"], 2);
  EXPECT_EQ(per_process["bob"]["total_sent"], 2);
  EXPECT_EQ(per_process["bob"]["response_count"], 1);
  EXPECT_GE(per_process["bob"]["total_received"].get<std::uint64_t>(), 4U);
  EXPECT_GE(per_process["alice"]["total_received"].get<std::uint64_t>(), 1U);
  EXPECT_TRUE(is_rfc3339(per_process["alice"]["first_message_time"]));
}

TEST(BrokerCalls, MessageCountIsTheNumberOfMessagesRead) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer peer(broker.socket_path(), Framing::binary);
  const json first = call_ok(peer, "RPCGetMessageCount");
  ASSERT_TRUE(first["count"].is_number_unsigned()) << first.dump();
  const json second = call_ok(peer, "RPCGetMessageCount");
  EXPECT_EQ(second["count"].get<std::uint64_t>(), first["count"].get<std::uint64_t>() + 1);
  EXPECT_EQ(second.size(), 1U) << second.dump();
}

TEST(BrokerCalls, KernelMetricsHaveTheOriginalFields) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--workers=3"}));
  Peer peer(broker.socket_path(), Framing::ndjson);
  const json metrics = call_ok(peer, "RPCGetKernelMetrics");
  for (const char* key : {"p99_latency_ms", "buffer_saturation", "active_workers", "total_permits",
                          "allocated_permits", "available_permits", "message_rate", "error_rate"}) {
    ASSERT_TRUE(metrics.contains(key)) << key << " missing in " << metrics.dump();
    EXPECT_TRUE(metrics[key].is_number()) << key;
    EXPECT_GE(metrics[key].get<double>(), 0.0) << key;
  }
  EXPECT_EQ(metrics["active_workers"], 3);
  EXPECT_LE(metrics["buffer_saturation"].get<double>(), 100.0);
}

TEST(BrokerCalls, RegisterAnswersWithTheNameAndRefusesBadPayloads) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer peer(broker.socket_path(), Framing::ndjson);
  const Message reply = peer.register_name("worker-1");
  EXPECT_EQ(reply.type, MessageType::response);
  EXPECT_EQ(reply.target, "worker-1");
  EXPECT_EQ(payload_json(reply), json({{"name", "worker-1"}, {"registered", true}}));

  for (const char* payload : {R"({"nom":"x"})", R"({"name":7})", R"({"name":""})",
                              R"({"name":"broker"})", R"("just text")"}) {
    const Message refused = peer.call("RPCRegister", payload);
    EXPECT_EQ(refused.type, MessageType::error) << payload;
    EXPECT_EQ(refused.id, "RPCRegister");
    EXPECT_FALSE(refused.error.empty());
  }
}

TEST(BrokerCalls, ListProcessesShowsNamesAndPeerPids) {
  TempDir dir;
  BrokerProcess broker(dir);
  Process child = start_receiver_process(dir, broker.socket_path(), "child-proc");
  Peer self(broker.socket_path(), Framing::binary);
  self.register_name("self-a");
  self.register_name("self-b");

  const json list = call_ok(self, "RPCListProcesses");
  ASSERT_TRUE(list["processes"].is_array()) << list.dump();
  bool saw_child = false;
  bool saw_self = false;
  for (const json& process : list["processes"]) {
    ASSERT_TRUE(process["names"].is_array());
    ASSERT_TRUE(process["pid"].is_number());
    if (process["names"] == json::array({"child-proc"})) {
      saw_child = true;
      EXPECT_EQ(process["pid"], child.pid());
      EXPECT_EQ(process["uid"], ::getuid());
      EXPECT_EQ(process["framing"], "ndjson");
    }
    if (process["names"] == json::array({"self-a", "self-b"})) {
      saw_self = true;
      EXPECT_EQ(process["pid"], ::getpid());
      EXPECT_EQ(process["framing"], "binary");
    }
  }
  EXPECT_TRUE(saw_child) << list.dump();
  EXPECT_TRUE(saw_self) << list.dump();
}

TEST(BrokerCalls, TuningStatusAgreesWithTheKernel) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--workers=2"}));
  Peer peer(broker.socket_path(), Framing::ndjson);
  const json status = call_ok(peer, "RPCGetTuningStatus");
  ASSERT_TRUE(status["threads"].is_array()) << status.dump();
  ASSERT_TRUE(status.contains("capabilities"));
  ASSERT_TRUE(status["fully_applied"].is_boolean());

  int workers = 0;
  for (const json& thread : status["threads"]) {
    const long tid = thread["tid"].get<long>();
    SCOPED_TRACE("tid=" + std::to_string(tid) + " " + thread.dump());
    ASSERT_TRUE(std::filesystem::exists("/proc/" + std::to_string(broker.pid()) + "/task/" +
                                        std::to_string(tid)))
        << "not a thread of the broker";
    for (const char* key : {"affinity", "nice", "io_priority", "scheduling"}) {
      ASSERT_TRUE(thread[key].contains("outcome")) << key;
      ASSERT_TRUE(thread[key].contains("in_force")) << key;
    }
    EXPECT_EQ(thread["scheduling"]["in_force"], kernel_scheduling(broker.pid(), tid));
    EXPECT_EQ(thread["scheduling"]["outcome"], "disabled") << "off unless asked for";
    EXPECT_EQ(thread["nice"]["in_force"], kernel_nice(broker.pid(), tid));
    EXPECT_EQ(thread["affinity"]["in_force"].get<std::vector<int>>(), kernel_affinity(tid));
    const std::string io = thread["io_priority"]["in_force"].get<std::string>();
    if (io.rfind("none", 0) != 0) {
      EXPECT_EQ(io, kernel_io_priority(tid));
    }
    if (thread.contains("worker")) {
      ++workers;
      if (thread["affinity"]["outcome"] == "applied") {
        EXPECT_EQ(kernel_affinity(tid).size(), 1U) << "a pinned worker runs on one CPU";
      }
    }
    if (thread["nice"]["outcome"] == "applied") {
      EXPECT_EQ(thread["nice"]["requested"], thread["nice"]["in_force"]);
    }
  }
  EXPECT_EQ(workers, 2);
}

TEST(BrokerCalls, RealtimePriorityPutsWorkersAndTheReadingThreadUnderFifo) {
  TempDir dir;
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_args({"--workers=2", "--realtime-priority=7"}));
  Peer peer(broker.socket_path(), Framing::ndjson);
  const json status = call_ok(peer, "RPCGetTuningStatus");
  ASSERT_TRUE(status["threads"].is_array()) << status.dump();

  int on_path = 0;
  for (const json& thread : status["threads"]) {
    const long tid = thread["tid"].get<long>();
    SCOPED_TRACE("tid=" + std::to_string(tid) + " " + thread.dump());
    const json& scheduling = thread["scheduling"];
    EXPECT_EQ(scheduling["in_force"], kernel_scheduling(broker.pid(), tid));
    const bool reads = tid == broker.pid();  // the main thread is the reading thread
    if (!thread.contains("worker") && !reads) {
      EXPECT_EQ(scheduling["outcome"], "disabled");
      EXPECT_EQ(kernel_scheduling(broker.pid(), tid), "other/0") << "only the message path";
      continue;
    }
    ++on_path;
    EXPECT_EQ(scheduling["requested"], "fifo/7");
    if (scheduling["outcome"] == "applied") {
      EXPECT_EQ(kernel_scheduling(broker.pid(), tid), "fifo/7");
    } else {  // a test run without CAP_SYS_NICE: refused, explained, and the broker still routes
      EXPECT_EQ(scheduling["outcome"], "not_applied");
      EXPECT_NE(scheduling["detail"].get<std::string>().find("RLIMIT_RTPRIO"), std::string::npos);
    }
  }
  EXPECT_EQ(on_path, 3) << "two workers and the reading thread";
  // The report logged at start already shows the reading thread as it runs.
  const std::string main_line = "tid=" + std::to_string(broker.pid()) + " ";
  const std::string log = broker.log();
  const auto at = log.find(main_line);
  ASSERT_NE(at, std::string::npos) << log;
  const std::string line = log.substr(at, log.find('\n', at) - at);
  EXPECT_NE(line.find("sched=fifo/7->"), std::string::npos) << line;

  Bystanders pair(broker.socket_path());
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(pair.exchange(round)) << "round " << round;
  }
}

TEST(BrokerCalls, UnknownMethodGetsErrorReplyWithItsIdAndCorrelationId) {
  TempDir dir;
  BrokerProcess broker(dir);
  for (const Framing framing : {Framing::ndjson, Framing::binary}) {
    Peer peer(broker.socket_path(), framing);
    peer.send(make_message(MessageType::request, "broker", "RPCNoSuchMethod", "", "m-1"));
    const auto reply = peer.receive();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->type, MessageType::error);
    EXPECT_EQ(reply->id, "RPCNoSuchMethod");
    EXPECT_EQ(reply->correlation_id, "m-1");
    EXPECT_EQ(reply->source, "broker");
    EXPECT_NE(reply->error.find("RPCNoSuchMethod"), std::string::npos) << reply->error;

    // Only requests are calls.
    peer.send(make_message(MessageType::event, "broker", "RPCGetMessageCount", "", "m-2"));
    const auto event_reply = peer.receive();
    ASSERT_TRUE(event_reply.has_value());
    EXPECT_EQ(event_reply->type, MessageType::error);
    EXPECT_EQ(event_reply->correlation_id, "m-2");
  }
}

}  // namespace
}  // namespace v2::integration
