// The shipped clients end to end against the real daemon: v2ctl and the Python example.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using nlohmann::json;
using wire::Framing;

// Runs a command to completion; returns its exit code, with stdout in `out`.
int run(const TempDir& dir, const std::vector<std::string>& argv, std::string& out,
        std::string* err = nullptr) {
  static int index = 0;
  const std::string stdout_path = dir.file("run" + std::to_string(index) + ".out");
  const std::string stderr_path = dir.file("run" + std::to_string(index) + ".err");
  ++index;
  Process process(argv, stdout_path, stderr_path);
  const int code = process.exit_code();
  out = read_file(stdout_path);
  if (err != nullptr) {
    *err = read_file(stderr_path);
  }
  return code;
}

bool is_registered(const std::string& socket_path, const std::string& name) {
  Peer peer(socket_path, Framing::ndjson);
  for (const json& process : list_processes(peer)) {
    for (const json& held : process["names"]) {
      if (held == name) {
        return true;
      }
    }
  }
  return false;
}

TEST(BrokerTools, V2ctlListenSendCallStatsAndStatus) {
#ifndef V2CTL_PATH
  GTEST_SKIP() << "v2ctl is not built";
#else
  const std::string v2ctl = V2CTL_PATH;
  TempDir dir;
  BrokerProcess broker(dir);
  const std::string socket = "--socket=" + broker.socket_path();

  const std::string listen_out = dir.file("listen.out");
  Process listener({v2ctl, socket, "listen", "listener"}, listen_out, listen_out + ".err");
  ASSERT_TRUE(wait_until([&] { return is_registered(broker.socket_path(), "listener"); }))
      << read_file(listen_out + ".err");

  std::string out;
  std::string err;
  EXPECT_EQ(run(dir,
                {v2ctl, socket, "send", "--to", "listener", "--id", "greet", "--as", "ctl",
                 "--payload", R"({"a": [1, 2]})"},
                out, &err),
            0)
      << err;
  EXPECT_EQ(run(dir,
                {v2ctl, socket, "--framing", "binary", "send", "--to", "listener", "--id",
                 "greet-binary", "--payload", R"({"b":true})"},
                out, &err),
            0)
      << err;
  ASSERT_TRUE(wait_until([&] {
    const std::string text = read_file(listen_out);
    return std::count(text.begin(), text.end(), '\n') >= 2;
  })) << read_file(listen_out);
  {
    std::istringstream lines(read_file(listen_out));
    std::string line;
    std::getline(lines, line);
    const json first = json::parse(line);
    EXPECT_EQ(first["id"], "greet");
    EXPECT_EQ(first["source"], "ctl");
    EXPECT_EQ(first["target"], "listener");
    EXPECT_EQ(first["payload"], json::parse(R"({"a": [1, 2]})"));
    std::getline(lines, line);
    const json second = json::parse(line);
    EXPECT_EQ(second["id"], "greet-binary");
    EXPECT_EQ(second["payload"], json::parse(R"({"b":true})"));
  }

  ASSERT_EQ(run(dir, {v2ctl, socket, "call", "RPCListProcesses", "--json"}, out, &err), 0) << err;
  bool listed = false;
  const json processes = json::parse(out)["processes"];
  for (const json& process : processes) {
    listed = listed ||
             (process["names"] == json::array({"listener"}) && process["pid"] == listener.pid());
  }
  EXPECT_TRUE(listed) << out;

  ASSERT_EQ(run(dir, {v2ctl, socket, "stats", "--json"}, out, &err), 0) << err;
  const json stats = json::parse(out);
  EXPECT_TRUE(stats["message_stats"]["total"]["total_received"].is_number()) << out;
  EXPECT_TRUE(stats["kernel_metrics"]["active_workers"].is_number()) << out;
  EXPECT_EQ(run(dir, {v2ctl, socket, "stats"}, out, &err), 0) << err;
  EXPECT_FALSE(out.empty());

  ASSERT_EQ(run(dir, {v2ctl, socket, "status", "--json"}, out, &err), 0) << err;
  EXPECT_TRUE(json::parse(out)["threads"].is_array()) << out;
  EXPECT_EQ(run(dir, {v2ctl, socket, "status"}, out, &err), 0) << err;

  // Error replies exit 1; no broker exits 3.
  EXPECT_EQ(run(dir, {v2ctl, socket, "send", "--to", "nobody", "--wait"}, out, &err), 1) << err;
  EXPECT_EQ(json::parse(out)["type"], "error") << out;
  EXPECT_EQ(run(dir, {v2ctl, socket, "call", "RPCNoSuchMethod"}, out, &err), 1) << err;
  EXPECT_EQ(run(dir, {v2ctl, "--socket=" + dir.file("none.sock"), "stats"}, out, &err), 3) << err;

  listener.signal(SIGTERM);
  EXPECT_EQ(listener.exit_code(), 0) << read_file(listen_out + ".err");
#endif
}

TEST(BrokerTools, PythonExampleServesAndCallsThroughTheBroker) {
  const std::string python = V2_PYTHON_PATH;
  const std::string example = V2_PYTHON_EXAMPLE_PATH;
  if (python.empty()) {
    GTEST_SKIP() << "no Python 3 interpreter was found when configuring";
  }
  if (!std::filesystem::exists(example)) {
    GTEST_SKIP() << "the Python example " << example << " does not exist";
  }
  TempDir dir;
  BrokerProcess broker(dir);
  const std::string serve_out = dir.file("serve.out");
  Process server({python, example, "--socket", broker.socket_path(), "--serve", "echo"}, serve_out,
                 serve_out + ".err");
  ASSERT_TRUE(wait_until([&] { return is_registered(broker.socket_path(), "echo"); }))
      << read_file(serve_out + ".err");

  std::string out;
  std::string err;
  ASSERT_EQ(run(dir,
                {python, example, "--socket", broker.socket_path(), "--service", "echo", "--name",
                 "caller", "--payload", R"({"hello": "world", "n": [1, 2]})"},
                out, &err),
            0)
      << err;
  EXPECT_EQ(json::parse(out), json::parse(R"({"hello": "world", "n": [1, 2]})")) << out;
  ASSERT_TRUE(wait_until([&] { return !read_file(serve_out).empty(); }));
  const json served = json::parse(read_file(serve_out).substr(0, read_file(serve_out).find('\n')));
  EXPECT_EQ(served["source"], "caller");
  EXPECT_EQ(served["type"], "request");

  // A C++ peer can call the Python service too, in the binary framing.
  Peer peer(broker.socket_path(), Framing::binary);
  ASSERT_EQ(peer.register_name("cpp").type, MessageType::response);
  peer.send(make_message(MessageType::request, "echo", "echo", R"({"from":"cpp"})", "py-1"));
  const Message answer = peer.wait_for("py-1");
  EXPECT_EQ(answer.type, MessageType::response);
  EXPECT_EQ(answer.source, "echo");
  EXPECT_EQ(payload_json(answer), json::parse(R"({"from":"cpp"})"));

  EXPECT_EQ(run(dir, {python, example, "--socket", broker.socket_path(), "--service", "nobody"},
                out, &err),
            1)
      << err;
  EXPECT_EQ(run(dir, {python, example, "--socket", dir.file("none.sock"), "--service", "echo"}, out,
                &err),
            2)
      << err;

  server.signal(SIGTERM);
  EXPECT_EQ(server.exit_code(), 0) << read_file(serve_out + ".err");
}

}  // namespace
}  // namespace v2::integration
