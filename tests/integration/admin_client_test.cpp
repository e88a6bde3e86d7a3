// The built rtp_cluster_client against a tiny scripted admin server in this
// test, on real unix sockets (temp dir) and TCP on loopback: what it sends,
// what it prints, its exit status, and how it ends when the server refuses,
// stalls or closes early. Also the client library's pure helpers.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/admin_client.h"
#include "shared/admin_command.h"

extern char** environ;

namespace rtpc {
namespace {

using Clock = std::chrono::steady_clock;

const char kLsAnswer[] =
    "Cluster: #0\n"
    "    name = basic_network\n"
    "    address = 127.0.0.1:32324\n"
    "    online members = 3 (2 active, 1 suspended, 0 draining)\n"
    "    offline members = 1\n"
    "\n"
    "Cluster: #1\n"
    "    name = other\n"
    "    address = /var/run/other.sock\n"
    "    online members = 0 (0 active, 0 suspended, 0 draining)\n"
    "    offline members = 0\n"
    "OK\n";

enum class ServerMode {
  kAnswer,      // answers each line from the script, closes on quit
  kStall,       // reads, never answers, never closes (until the test ends)
  kCloseEarly,  // sends `partial` for the first line, then closes
};

// One listening socket served by one thread, one connection at a time (the
// client opens one per command).
class ScriptedAdminServer {
 public:
  ScriptedAdminServer(int listen_fd, ServerMode mode) : listen_fd_(listen_fd), mode_(mode) {
    thread_ = std::thread([this] { run(); });
  }
  ~ScriptedAdminServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }

  void answer(const std::string& line, const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex_);
    answers_[line] = text;
  }
  void partial(const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex_);
    partial_ = text;
  }
  // The bytes each connection carried, in connection order.
  std::vector<std::string> received() {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }

 private:
  void run() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      serve(fd);
      ::close(fd);
    }
  }

  void send(int fd, const std::string& text) {
    size_t sent = 0;
    while (sent < text.size()) {
      const ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  void serve(int fd) {
    size_t index;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      index = received_.size();
      received_.emplace_back();
    }
    std::string pending;
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      char buf[1024];
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        received_[index].append(buf, static_cast<size_t>(n));
      }
      if (mode_ == ServerMode::kStall) continue;
      pending.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        const std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        if (mode_ == ServerMode::kCloseEarly) {
          std::string text;
          {
            std::lock_guard<std::mutex> lock(mutex_);
            text = partial_;
          }
          send(fd, text);
          return;
        }
        if (line == "quit" || line == "q" || line == "exit") return;
        std::string text = "ERROR: unknown command\n";
        {
          std::lock_guard<std::mutex> lock(mutex_);
          if (auto it = answers_.find(line); it != answers_.end()) text = it->second;
        }
        send(fd, text);
      }
    }
  }

  int listen_fd_;
  ServerMode mode_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::map<std::string, std::string> answers_;
  std::string partial_;
  std::vector<std::string> received_;
  std::thread thread_;
};

int listenUnix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(fd, 8) != 0) {
    ADD_FAILURE() << "unix listen on " << path << ": " << std::strerror(errno);
  }
  return fd;
}

// Binds port 0 on loopback and reports the port; -1 when the family is absent.
int listenTcp(int family, uint16_t& port, bool do_listen = true) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sockaddr_in);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
    sa->sin6_family = AF_INET6;
    sa->sin6_addr = in6addr_loopback;
    len = sizeof(sockaddr_in6);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || (do_listen && ::listen(fd, 8) != 0)) {
    ::close(fd);
    return -1;
  }
  socklen_t got = sizeof(ss);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &got);
  port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                 : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return fd;
}

struct ClientRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  double seconds = 0;
};

class AdminClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("RTP_CLUSTER_CLIENT");
    ASSERT_NE(bin, nullptr) << "RTP_CLUSTER_CLIENT not set (run through meson test)";
    bin_ = bin;
    char tmpl[] = "/tmp/rtpc_admin_client.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sock_ = dir_ + "/admin.sock";
  }
  void TearDown() override {
    for (const char* f : {"/admin.sock", "/stdin", "/stdout", "/stderr"}) ::unlink((dir_ + f).c_str());
    ::rmdir(dir_.c_str());
  }

  static std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // Runs the client with files for its standard streams (no pipes to drain);
  // kills it after 20 s so that a hang fails the test instead of blocking it.
  ClientRun run(const std::vector<std::string>& args, const std::string& input = "") {
    const std::string in_path = dir_ + "/stdin";
    std::ofstream(in_path, std::ios::binary) << input;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, (dir_ + "/stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, (dir_ + "/stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(bin_.c_str()));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ClientRun r;
    const Clock::time_point start = Clock::now();
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, bin_.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      ADD_FAILURE() << "posix_spawn: " << std::strerror(rc);
      return r;
    }
    int status = 0;
    while (true) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) break;
      if (Clock::now() - start > std::chrono::seconds(20)) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ADD_FAILURE() << "client hung; killed";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(dir_ + "/stdout");
    r.err = slurp(dir_ + "/stderr");
    return r;
  }

  std::string bin_;
  std::string dir_;
  std::string sock_;
};

TEST_F(AdminClientTest, OneShotSendsCommandThenQuitAndPrintsTheWholeMultiLineAnswer) {
  ScriptedAdminServer server(listenUnix(sock_), ServerMode::kAnswer);
  server.answer("ls", kLsAnswer);
  const ClientRun r = run({"-s", "unix:" + sock_, "ls"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, kLsAnswer);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(server.received(), std::vector<std::string>{"ls\nquit\n"});
}

TEST_F(AdminClientTest, BarePathSocketAndWordsJoinedWithSpaces) {
  ScriptedAdminServer server(listenUnix(sock_), ServerMode::kAnswer);
  server.answer("modify c1 pause RTPPROXY1", "OK\n");
  const ClientRun r = run({"-s", sock_, "modify", "c1", "pause", "RTPPROXY1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n");
  EXPECT_EQ(server.received(), std::vector<std::string>{"modify c1 pause RTPPROXY1\nquit\n"});
}

// Issue 10: names are free text; a word holding spaces or quotes is sent
// quoted so that the daemon sees one word. A single word is the whole line.
TEST_F(AdminClientTest, WordsWithSpacesOrQuotesAreSentQuoted) {
  ScriptedAdminServer server(listenUnix(sock_), ServerMode::kAnswer);
  server.answer("modify \"Core 1\" pause \"relay \\\"2\\\"\"", "OK\n");
  server.answer("ls caf\xc3\xa9", "OK\n");
  server.answer("ls \"Core 1\"", "OK\n");
  const ClientRun r = run({"-s", sock_, "modify", "Core 1", "pause", "relay \"2\""});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const ClientRun utf8 = run({"-s", sock_, "ls", "caf\xc3\xa9"});
  EXPECT_EQ(utf8.exit_code, 0) << utf8.err;
  const ClientRun whole = run({"-s", sock_, "ls \"Core 1\""});
  EXPECT_EQ(whole.exit_code, 0) << whole.err;
  EXPECT_EQ(server.received(), (std::vector<std::string>{"modify \"Core 1\" pause \"relay \\\"2\\\"\"\nquit\n",
                                                         "ls caf\xc3\xa9\nquit\n", "ls \"Core 1\"\nquit\n"}));
}

TEST_F(AdminClientTest, TcpSocketOnLoopback) {
  uint16_t port = 0;
  const int fd = listenTcp(AF_INET, port);
  ASSERT_GE(fd, 0);
  ScriptedAdminServer server(fd, ServerMode::kAnswer);
  server.answer("reload", "Loaded 1 clusters and 4 RTP proxies\nOK\n");
  const ClientRun r = run({"-s", "tcp:127.0.0.1:" + std::to_string(port), "reload"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "Loaded 1 clusters and 4 RTP proxies\nOK\n");
  EXPECT_EQ(server.received(), std::vector<std::string>{"reload\nquit\n"});
}

TEST_F(AdminClientTest, TcpSocketOnIpv6Loopback) {
  uint16_t port = 0;
  const int fd = listenTcp(AF_INET6, port);
  if (fd < 0) GTEST_SKIP() << "no IPv6 loopback";
  ScriptedAdminServer server(fd, ServerMode::kAnswer);
  server.answer("ls", "OK\n");
  const ClientRun r = run({"-s", "tcp:[::1]:" + std::to_string(port), "ls"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n");
}

TEST_F(AdminClientTest, ErrorAnswerIsPrintedAndExitsOne) {
  ScriptedAdminServer server(listenUnix(sock_), ServerMode::kAnswer);
  server.answer("ls nope", "ERROR: nope: cluster not found\n");
  const ClientRun r = run({"-s", sock_, "ls", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "ERROR: nope: cluster not found\n");
  EXPECT_EQ(r.err, "");
  const ClientRun unknown = run({"-s", sock_, "frobnicate"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.out, "ERROR: unknown command\n");
}

TEST_F(AdminClientTest, HelpWithoutOkAndQuitWithoutAnswerExitZero) {
  ScriptedAdminServer server(listenUnix(sock_), ServerMode::kAnswer);
  const std::string help = "Supported commands:\n\tls [CLUSTER_NAME] [json]\n\tquit (also q, exit)\n";
  server.answer("help", help);
  server.answer("h", help);
  for (const char* cmd : {"help", "h"}) {
    const ClientRun r = run({"-s", sock_, cmd});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.err;
    EXPECT_EQ(r.out, help);
  }
  const ClientRun q = run({"-s", sock_, "quit"});
  EXPECT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(q.out, "");
  EXPECT_EQ(q.err, "");
}

TEST_F(AdminClientTest, MissingUnixSocketNamesItAndExitsOne) {
  const ClientRun r = run({"-s", dir_ + "/none.sock", "ls"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "rtp_cluster_client: cannot connect to unix:" + dir_ + "/none.sock: No such file or directory\n");
}

TEST_F(AdminClientTest, RefusedTcpConnectionNamesItAndExitsOne) {
  uint16_t port = 0;
  const int fd = listenTcp(AF_INET, port, /*do_listen=*/false);  // bound, not listening: refused
  ASSERT_GE(fd, 0);
  const ClientRun r = run({"-s", "tcp:127.0.0.1:" + std::to_string(port), "ls"});
  ::close(fd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "rtp_cluster_client: cannot connect to tcp:127.0.0.1:" + std::to_string(port) +
                       ": Connection refused\n");
}

TEST_F(AdminClientTest, StallingServerTimesOutInsteadOfHanging) {
  ScriptedAdminServer server(listenUnix(sock_), ServerMode::kStall);
  const ClientRun r = run({"-t", "0.5", "-s", sock_, "ls"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "rtp_cluster_client: no complete answer from unix:" + sock_ + " within 0.5 s\n");
  EXPECT_GE(r.seconds, 0.45);
  EXPECT_LT(r.seconds, 5.0);
  EXPECT_EQ(server.received(), std::vector<std::string>{"ls\nquit\n"});
}

TEST_F(AdminClientTest, ServerClosingEarlyIsAFailureWithThePartialAnswerShown) {
  ScriptedAdminServer server(listenUnix(sock_), ServerMode::kCloseEarly);
  server.partial("Cluster: #0\n    name = basic_network\n");
  const ClientRun r = run({"-s", sock_, "ls"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "Cluster: #0\n    name = basic_network\n");
  EXPECT_EQ(r.err, "rtp_cluster_client: unix:" + sock_ + " closed the connection before the answer was complete\n");

  server.partial("");
  const ClientRun empty = run({"-s", sock_, "ls"});
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_EQ(empty.out, "");
  EXPECT_EQ(empty.err, "rtp_cluster_client: unix:" + sock_ + " closed the connection without an answer\n");
}

TEST_F(AdminClientTest, InteractiveModeRunsEachLineUntilQuit) {
  ScriptedAdminServer server(listenUnix(sock_), ServerMode::kAnswer);
  server.answer("ls", kLsAnswer);
  server.answer("modify c1 resume r1", "OK\n");
  const ClientRun r = run({"-s", sock_}, "ls\n\n   \nmodify c1 resume r1\r\nquit\nls\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kLsAnswer) + "OK\n");
  EXPECT_EQ(server.received(), (std::vector<std::string>{"ls\nquit\n", "modify c1 resume r1\nquit\n"}));
}

TEST_F(AdminClientTest, InteractiveModeEndsAtEofAndExitsOneWhenAnyAnswerFailed) {
  ScriptedAdminServer server(listenUnix(sock_), ServerMode::kAnswer);
  server.answer("ls", "OK\n");
  const ClientRun r = run({"-s", sock_}, "bogus\nls");  // last line without newline
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "ERROR: unknown command\nOK\n");
  EXPECT_EQ(server.received(), (std::vector<std::string>{"bogus\nquit\n", "ls\nquit\n"}));
}

TEST_F(AdminClientTest, HelpVersionAndUsageErrors) {
  const ClientRun help = run({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("usage: rtp_cluster_client [-s socket]"), std::string::npos) << help.out;
  // Every admin command with its usage, from the daemon's command table.
  for (const AdminCommandSpec& spec : adminCommands()) {
    EXPECT_NE(help.out.find("\n  " + std::string(spec.usage)), std::string::npos) << spec.usage << "\n" << help.out;
  }
  EXPECT_NE(help.out.find("quit (also q, exit)"), std::string::npos) << help.out;
  const ClientRun version = run({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("rtp_cluster_client ", 0), 0u) << version.out;

  struct Case {
    std::vector<std::string> args;
    const char* first_line;
  };
  const Case cases[] = {
      {{"-x", "ls"}, "rtp_cluster_client: unknown option -x\n"},
      {{"-s"}, "rtp_cluster_client: option -s needs a value\n"},
      {{"-t", "0", "ls"}, "rtp_cluster_client: -t must be a number of seconds in (0, 3600], got \"0\"\n"},
      {{"-t", "soon", "ls"}, "rtp_cluster_client: -t must be a number of seconds in (0, 3600], got \"soon\"\n"},
      {{"-s", "udp:127.0.0.1:5", "ls"},
       "rtp_cluster_client: -s \"udp:127.0.0.1:5\": must be /path, unix:/path or tcp:host[:port]\n"},
      {{"-s", sock_, "ls\nreload"}, "rtp_cluster_client: command words must not contain line breaks\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args[0]);
    const ClientRun r = run(c.args);
    EXPECT_EQ(r.exit_code, 1) << "usage errors exit 1, as the daemon's and the reference client's";
    EXPECT_EQ(r.err, std::string(c.first_line) + "Try 'rtp_cluster_client --help' for more information.\n");
  }
}

// --- the library's pure helpers ---------------------------------------------

TEST(AdminSocketTest, ParsesTheReferenceFormsWithTheirDefaults) {
  struct Case {
    const char* text;
    const char* name;
  };
  const Case cases[] = {
      {"/var/run/rtp_cluster.sock", "unix:/var/run/rtp_cluster.sock"},
      {"unix:/var/run/rtp_cluster.sock", "unix:/var/run/rtp_cluster.sock"},
      {"tcp:127.0.0.1", "tcp:127.0.0.1:12345"},
      {"tcp:127.0.0.1:2000", "tcp:127.0.0.1:2000"},
      {"tcp:localhost:2000", "tcp:localhost:2000"},
      {"tcp:[::1]:2000", "tcp:[::1]:2000"},
      {"tcp:[::1]", "tcp:[::1]:12345"},
      {"tcp6:[::1]:7", "tcp:[::1]:7"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const AddressResult r = parseAdminSocket(c.text);
    ASSERT_TRUE(r.address.has_value()) << r.error;
    EXPECT_EQ(adminSocketName(*r.address), c.name);
  }
  for (const char* bad : {"", "udp:127.0.0.1:5", "tcp:", "tcp:127.0.0.1:0", "tcp:127.0.0.1:99999", "unix:"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(parseAdminSocket(bad).address.has_value());
  }
}

TEST(AdminAnswerTest, SuccessIsAnOkLastLineOrHelpOrAQuietQuit) {
  struct Case {
    const char* command;
    const char* answer;
    bool ok;
  };
  const Case cases[] = {
      {"ls", "OK\n", true},
      {"ls", "Cluster: #0\n    name = x\nOK\n", true},
      {"ls", "OK", true},
      {"ls", "OK\r\n", true},
      {"ls", "", false},
      {"ls", "Cluster: #0\n", false},
      {"ls x", "ERROR: x: cluster not found\n", false},
      {"ls", "partial\nERROR: out of memory\n", false},
      {"ls", "NOT OK\n", false},
      {"help", "Supported commands:\n\tls\n", true},
      {"h", "Supported commands:\n", true},
      {"help", "", false},
      {"help", "ERROR: unknown command\n", false},
      {"quit", "", true},
      {"exit", "", true},
      {"ls", "OK\nERROR: late\n", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.command) + " / " + c.answer);
    EXPECT_EQ(answerSucceeded(c.command, c.answer), c.ok);
  }
}

}  // namespace
}  // namespace rtpc
