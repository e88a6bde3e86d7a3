// Spawns the real rtpp_test_relay on loopback and talks to it over every
// control transport, the admin socket and notify listeners.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kWaitMs = 5000;  // generous: the machine is shared and loaded

std::string relayBinary() {
  const char* p = std::getenv("RTPP_TEST_RELAY");
  return p != nullptr ? p : "tests/tools/rtpp_test_relay";
}

bool waitReadable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) > 0;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rtpp_relay_test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

bool fileExists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

// The relay process: started with arguments, ready when it printed READY.
class Relay {
 public:
  explicit Relay(std::vector<std::string> args) {
    int out[2];
    if (pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      std::vector<char*> argv;
      std::string bin = relayBinary();
      argv.push_back(bin.data());
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    stdout_ = out[0];
    std::string buf;
    const auto deadline = Clock::now() + std::chrono::milliseconds(kWaitMs * 2);
    while (Clock::now() < deadline) {
      if (!waitReadable(stdout_, 100)) continue;
      char chunk[512];
      const ssize_t n = read(stdout_, chunk, sizeof chunk);
      if (n <= 0) break;
      buf.append(chunk, static_cast<size_t>(n));
      if (buf.find("READY\n") != std::string::npos) {
        ready_ = true;
        break;
      }
    }
    size_t pos = 0;
    for (size_t nl; (nl = buf.find('\n', pos)) != std::string::npos; pos = nl + 1) {
      const std::string line = buf.substr(pos, nl - pos);
      const size_t sp = line.find(' ');
      if (sp == std::string::npos) continue;
      const std::string uri = line.substr(sp + 1);
      const std::string kind = line.substr(0, sp) == "ADMIN" ? "admin" : uri.substr(0, uri.find(':'));
      addresses_[kind] = uri;
    }
  }
  ~Relay() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) close(stdout_);
  }
  bool ready() const { return ready_; }
  // "udp" -> port of `LISTENING udp:127.0.0.1:PORT`, etc.
  uint16_t port(const std::string& kind) const {
    const auto it = addresses_.find(kind);
    if (it == addresses_.end()) return 0;
    return static_cast<uint16_t>(std::stoi(it->second.substr(it->second.rfind(':') + 1)));
  }
  std::string uri(const std::string& kind) const {
    const auto it = addresses_.find(kind);
    return it == addresses_.end() ? "" : it->second;
  }
  // Waits for the process to end; returns its exit code, or -1 on timeout.
  int waitExit(int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  void signal(int sig) { kill(pid_, sig); }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
  bool ready_ = false;
  bool exited_ = false;
  std::map<std::string, std::string> addresses_;
};

class Udp {
 public:
  Udp(int family, uint16_t port) {
    fd_ = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&to_);
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      inet_pton(AF_INET, "127.0.0.1", &a->sin_addr);
      len_ = sizeof(sockaddr_in);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&to_);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      inet_pton(AF_INET6, "::1", &a->sin6_addr);
      len_ = sizeof(sockaddr_in6);
    }
  }
  ~Udp() { close(fd_); }
  void send(const std::string& d) {
    sendto(fd_, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to_), len_);
  }
  // "" when nothing arrived in time.
  std::string recv(int timeout_ms = kWaitMs) {
    if (!waitReadable(fd_, timeout_ms)) return "";
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  std::string ask(const std::string& d, int timeout_ms = kWaitMs) {
    send(d);
    return recv(timeout_ms);
  }

 private:
  int fd_;
  sockaddr_storage to_{};
  socklen_t len_ = 0;
};

int connectUnix(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int connectTcp(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void writeAll(int fd, const std::string& d) {
  size_t off = 0;
  while (off < d.size()) {
    const ssize_t n = write(fd, d.data() + off, d.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Reads until `want` bytes of newline-ended lines arrived, EOF, or timeout.
std::string readLines(int fd, size_t lines, bool* eof = nullptr) {
  std::string got;
  const auto deadline = Clock::now() + std::chrono::milliseconds(kWaitMs);
  size_t seen = 0;
  while (seen < lines && Clock::now() < deadline) {
    if (!waitReadable(fd, 50)) continue;
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
      if (eof != nullptr) *eof = true;
      break;
    }
    for (ssize_t i = 0; i < n; ++i) seen += buf[i] == '\n' ? 1 : 0;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// Reads to EOF; sets `closed` when the peer closed within the wait.
std::string readToEof(int fd, bool& closed) {
  std::string got;
  closed = false;
  const auto deadline = Clock::now() + std::chrono::milliseconds(kWaitMs);
  while (Clock::now() < deadline) {
    if (!waitReadable(fd, 50)) continue;
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
      closed = true;
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

class Admin {
 public:
  explicit Admin(const std::string& path) : fd_(connectUnix(path)) {}
  ~Admin() {
    if (fd_ >= 0) close(fd_);
  }
  std::string ask(const std::string& line) {
    writeAll(fd_, line + "\n");
    std::string r = readLines(fd_, 1);
    if (!r.empty() && r.back() == '\n') r.pop_back();
    return r;
  }
  // The value of key in `stats`.
  long stat(const std::string& key) {
    const std::string s = " " + ask("stats") + " ";
    const size_t at = s.find(" " + key + "=");
    if (at == std::string::npos) return -1;
    return std::stol(s.substr(at + key.size() + 2));
  }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

class TestRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    relay_ = std::make_unique<Relay>(std::vector<std::string>{
        "-s", "udp:127.0.0.1:0", "-s", "udp6:[::1]:0", "-s", "unix:" + dir_.file("u.sock"), "-s",
        "cunix:" + dir_.file("c.sock"), "-s", "tcp:127.0.0.1:0", "--admin",
        "unix:" + dir_.file("admin.sock"), "-m", "40000", "-M", "40999", "-n",
        "tcp:%%CC_SELF%%:" + std::to_string(notify_port_ = notifyPort()), "-n",
        "unix:" + dir_.file("notify.sock")});
    ASSERT_TRUE(relay_->ready()) << "relay did not start: " << relayBinary();
    udp_ = std::make_unique<Udp>(AF_INET, relay_->port("udp"));
    admin_ = std::make_unique<Admin>(dir_.file("admin.sock"));
    ASSERT_TRUE(admin_->ok());
  }

  // A TCP listener for notifications, bound before the relay starts.
  uint16_t notifyPort() {
    notify_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    bind(notify_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(notify_fd_, 4);
    socklen_t len = sizeof a;
    getsockname(notify_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }
  void TearDown() override {
    if (notify_fd_ >= 0) close(notify_fd_);
  }

  TempDir dir_;
  int notify_fd_ = -1;
  uint16_t notify_port_ = 0;
  std::unique_ptr<Relay> relay_;
  std::unique_ptr<Udp> udp_;
  std::unique_ptr<Admin> admin_;
};

TEST_F(TestRelayTest, UdpAnswersEveryCommandWithTheCookieEchoed) {
  const std::pair<const char*, const char*> dialogue[] = {
      {"a1 V", "a1 20040107\n"},
      {"a2 VF 20050322", "a2 1\n"},
      {"a3 VF 20081224", "a3 1\n"},
      {"a4 U call1 192.0.2.1 10000 ftag1", "a4 40000 127.0.0.1\n"},
      {"a5 L call1 192.0.2.2 20000 ftag1 ttag1", "a5 40002 127.0.0.1\n"},
      {"a6 L nocall 192.0.2.2 20000 ftag1 ttag1", "a6 0\n"},
      {"a7 Q call1 ftag1 ttag1", "a7 60 0 0 0 0\n"},
      {"a8 P call1 /prompt 0,8 ftag1 ttag1", "a8 0\n"},
      {"a9 S call1 ftag1 ttag1", "a9 0\n"},
      {"a10 R call1 ftag1 ttag1", "a10 0\n"},
      {"a11 N call1 ftag1 ttag1", "a11 0\n"},
      {"a12 Cp call1 udp:127.0.0.1:9 ftag1", "a12 40004 127.0.0.1\n"},
      {"a13 Ib", "a13 sessions created: 1\nactive sessions: 1\nactive streams: 2\npackets received: 0\n"
                 "packets transmitted: 0\n"},
      {"a14 Gv nsess_created ncmds_rcvd", "a14 nsess_created=1 ncmds_rcvd=14\n"},
      {"a15 D call1 ftag1 ttag1", "a15 0\n"},
      {"a16 D call1 ftag1 ttag1", "a16 E50\n"},
      {"a17 Q call1 ftag1", "a17 E50\n"},
      {"a18 U call2 192.0.2.1 1 f2 t2 && L 192.0.2.2 2", "a18 40006 127.0.0.1 && 40008 127.0.0.1\n"},
      {"a19 X", "a19 0\n"},
      {"a20 Q call2 f2", "a20 E50\n"},
  };
  for (const auto& [cmd, reply] : dialogue) EXPECT_EQ(udp_->ask(cmd), reply) << cmd;
}

TEST_F(TestRelayTest, UdpRepeatedCookieIsServedFromTheCacheWithoutExecuting) {
  EXPECT_EQ(udp_->ask("dup1 U callx 192.0.2.1 1 f"), "dup1 40000 127.0.0.1\n");
  // A different command under the same cookie still gets the first reply (cookie-only key).
  EXPECT_EQ(udp_->ask("dup1 V"), "dup1 40000 127.0.0.1\n");
  EXPECT_EQ(udp_->ask("dup1 U callx 192.0.2.1 1 f"), "dup1 40000 127.0.0.1\n");
  EXPECT_EQ(admin_->stat("executed"), 1);
  EXPECT_EQ(admin_->stat("dups"), 2);
  EXPECT_EQ(admin_->stat("received"), 3);
  EXPECT_EQ(admin_->stat("cmd_U"), 2);
  EXPECT_EQ(admin_->stat("sessions_created"), 1);
  EXPECT_EQ(udp_->ask("dup2 G ncmds_rcvd_ndups ncmds_rcvd"), "dup2 2 4\n");
}

TEST_F(TestRelayTest, Udp6AnswersOnIpv6Loopback) {
  Udp v6(AF_INET6, relay_->port("udp6"));
  EXPECT_EQ(v6.ask("six V"), "six 20040107\n");
  EXPECT_EQ(v6.ask("six2 U c6 192.0.2.1 1 f"), "six2 40000 127.0.0.1\n");
}

TEST_F(TestRelayTest, UnixTakesOneCommandPerConnectionAndCloses) {
  struct Case {
    const char* sent;
    const char* reply;
  } cases[] = {
      {"V", "20040107\n"},                   // no newline needed
      {"VF 20040107\n", "1\n"},
      {"V\nVF 20040107\n", "E1\n"},          // one read() is one command
      {"U cu 192.0.2.1 1 f", "40000 127.0.0.1\n"},
  };
  for (const Case& c : cases) {
    const int fd = connectUnix(dir_.file("u.sock"));
    ASSERT_GE(fd, 0);
    writeAll(fd, c.sent);
    bool closed = false;
    EXPECT_EQ(readToEof(fd, closed), c.reply) << c.sent;
    EXPECT_TRUE(closed) << "connection left open after " << c.sent;
    close(fd);
  }
}

TEST_F(TestRelayTest, CunixAndTcpAnswerPipelinedCommandsInOrder) {
  for (int fd : {connectUnix(dir_.file("c.sock")), connectTcp(relay_->port("tcp"))}) {
    ASSERT_GE(fd, 0);
    writeAll(fd, "V\nVF 20040107\r\nG nsess_created\nX\nQ nosuch f\n");
    EXPECT_EQ(readLines(fd, 5), "20040107\n1\n0\n0\nE50\n");
    // The connection stays open for more.
    writeAll(fd, "V\n");
    EXPECT_EQ(readLines(fd, 1), "20040107\n");
    close(fd);
  }
}

TEST_F(TestRelayTest, MalformedInputIsAnsweredWithRtpproxyErrorCodes) {
  std::string many_tokens = "m6 G";
  for (int i = 0; i < 23; ++i) many_tokens += " nsess_created";
  const std::pair<std::string, std::string> cases[] = {
      {"m1 K", "m1 E0\n"},
      {"m2 U c 1.2.3.4", "m2 E1\n"},
      {"m3 Xx", "m3 E2\n"},
      {"V", "V E5\n"},
      {std::string("m4 V\0x", 6), "m4 E5\n"},
      {"m5 Dq c f", "m5 E8\n"},
      {many_tokens, "m6 E5\n"},
      {"m7 " + std::string(9000, 'V'), "m7 E5\n"},
  };
  for (const auto& [cmd, reply] : cases) EXPECT_EQ(udp_->ask(cmd), reply) << cmd.substr(0, 40);
  EXPECT_EQ(udp_->ask("m9 U c 1.2.3.4 5 f && Z"), "m9 E3\n");
  EXPECT_EQ(udp_->ask("m10 G nosuch"), "m10 E68\n");
  // An empty datagram has no cookie to echo.
  EXPECT_EQ(udp_->ask(" "), "E5\n");
  // Still alive and counting.
  EXPECT_EQ(udp_->ask("m11 V"), "m11 20040107\n");
}

TEST_F(TestRelayTest, DelayFaultHoldsTheAnswer) {
  EXPECT_EQ(admin_->ask("delay 300"), "OK delay_ms=300");
  const auto start = Clock::now();
  EXPECT_EQ(udp_->ask("d1 V"), "d1 20040107\n");
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_GE(ms, 280);
  // Streams are delayed too and keep their order.
  const int fd = connectUnix(dir_.file("c.sock"));
  writeAll(fd, "V\nVF 20040107\n");
  EXPECT_EQ(readLines(fd, 2), "20040107\n1\n");
  close(fd);
  EXPECT_EQ(admin_->ask("delay 0"), "OK delay_ms=0");
  const auto quick = Clock::now();
  EXPECT_EQ(udp_->ask("d2 V"), "d2 20040107\n");
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - quick).count(), 280);
}

TEST_F(TestRelayTest, DropFaultLosesThatShareOfCommands) {
  EXPECT_EQ(admin_->ask("drop 100"), "OK drop_percent=100");
  EXPECT_EQ(udp_->ask("x1 V", 300), "");
  EXPECT_EQ(admin_->ask("drop 50"), "OK drop_percent=50");
  constexpr int kSent = 200;
  for (int i = 0; i < kSent; ++i) udp_->send("y" + std::to_string(i) + " V");
  int answered = 0;
  while (!udp_->recv(500).empty()) ++answered;
  EXPECT_GT(answered, 40);
  EXPECT_LT(answered, 160);
  EXPECT_EQ(admin_->stat("dropped"), 1 + kSent - answered);
  EXPECT_EQ(admin_->ask("drop 0"), "OK drop_percent=0");
  EXPECT_EQ(udp_->ask("x2 V"), "x2 20040107\n");
}

TEST_F(TestRelayTest, MuteStopsAnswersOnEveryTransportUntilTurnedOff) {
  EXPECT_EQ(admin_->ask("mute on"), "OK mute=on");
  EXPECT_EQ(udp_->ask("q1 V", 300), "");
  const int fd = connectTcp(relay_->port("tcp"));
  writeAll(fd, "V\n");
  EXPECT_FALSE(waitReadable(fd, 300));
  EXPECT_EQ(admin_->ask("mute off"), "OK mute=off");
  EXPECT_EQ(udp_->ask("q2 V"), "q2 20040107\n");
  writeAll(fd, "V\n");
  EXPECT_EQ(readLines(fd, 1), "20040107\n");
  close(fd);
  EXPECT_EQ(admin_->stat("muted"), 2);
}

TEST_F(TestRelayTest, GarbageFaultAnswersJunk) {
  EXPECT_EQ(admin_->ask("garbage on"), "OK garbage=on");
  bool long_line = false;
  for (int i = 0; i < 40; ++i) {
    const std::string cookie = "g" + std::to_string(i);
    const std::string r = udp_->ask(cookie + " V");
    ASSERT_FALSE(r.empty());
    EXPECT_NE(r, cookie + " 20040107\n");
    long_line = long_line || r.size() > 2000;
  }
  EXPECT_TRUE(long_line) << "no over-long answer in 40 tries";
  EXPECT_EQ(admin_->stat("garbage"), 40);
  EXPECT_EQ(admin_->ask("reset"), "OK reset");
  EXPECT_EQ(udp_->ask("g100 V"), "g100 20040107\n");
}

TEST_F(TestRelayTest, RefuseFaultAnswersNewSessionsWithTheChosenError) {
  EXPECT_EQ(udp_->ask("r0 U old 192.0.2.1 1 f"), "r0 40000 127.0.0.1\n");
  for (const char* code : {"E98", "E99", "E72"}) {
    EXPECT_EQ(admin_->ask(std::string("refuse ") + code), std::string("OK refuse=") + code);
    EXPECT_EQ(udp_->ask(std::string("r1") + code + " U new 192.0.2.1 1 f"),
              std::string("r1") + code + " " + code + "\n");
    EXPECT_EQ(udp_->ask(std::string("r2") + code + " U old 192.0.2.1 1 f"),
              std::string("r2") + code + " 40000 127.0.0.1\n");
  }
  EXPECT_EQ(admin_->ask("refuse E50"), "ERROR usage: refuse E98|E99|E72|off");
  EXPECT_EQ(admin_->ask("refuse off"), "OK refuse=off");
  EXPECT_EQ(udp_->ask("r3 U new 192.0.2.1 1 f"), "r3 40002 127.0.0.1\n");
}

TEST_F(TestRelayTest, RtpengineStatsFaultAnswersIAndGWithE8) {
  EXPECT_EQ(admin_->ask("rtpengine-stats on"), "OK rtpengine-stats=on");
  EXPECT_EQ(udp_->ask("e1 Ib"), "e1 E8\n");
  EXPECT_EQ(udp_->ask("e2 G nsess_created"), "e2 E8\n");
  EXPECT_EQ(udp_->ask("e3 V"), "e3 20040107\n");
  EXPECT_EQ(admin_->ask("rtpengine-stats off"), "OK rtpengine-stats=off");
  EXPECT_EQ(udp_->ask("e4 G nsess_created"), "e4 0\n");
}

TEST_F(TestRelayTest, AdminRejectsMalformedCommandsWithUsage) {
  EXPECT_EQ(admin_->ask("delay"), "ERROR usage: delay MS");
  EXPECT_EQ(admin_->ask("mute maybe"), "ERROR usage: mute on|off");
  EXPECT_EQ(admin_->ask("drop 101"), "ERROR usage: drop PERCENT");
  EXPECT_EQ(admin_->ask("frobnicate"), "ERROR unknown command frobnicate; try help");
  EXPECT_EQ(admin_->ask("help").rfind("OK commands:", 0), 0u);
}

TEST_F(TestRelayTest, ExitFaultEndsTheProcessAtOnceWithCodeZero) {
  // Both in one write: the answer queued before the exit must not be lost.
  const int fd = connectUnix(dir_.file("admin.sock"));
  writeAll(fd, "stats\nexit\n");
  const std::string got = readLines(fd, 2);
  close(fd);
  EXPECT_EQ(got.rfind("OK received=0 ", 0), 0u) << got;
  EXPECT_NE(got.find("\nOK exiting\n"), std::string::npos) << got;
  EXPECT_EQ(relay_->waitExit(kWaitMs), 0);
  EXPECT_EQ(udp_->ask("z V", 200), "");
}

TEST_F(TestRelayTest, SigtermExitsCleanlyAndRemovesUnixSockets) {
  ASSERT_TRUE(fileExists(dir_.file("u.sock")));
  relay_->signal(SIGTERM);
  EXPECT_EQ(relay_->waitExit(kWaitMs), 0);
  EXPECT_FALSE(fileExists(dir_.file("u.sock")));
  EXPECT_FALSE(fileExists(dir_.file("c.sock")));
  EXPECT_FALSE(fileExists(dir_.file("admin.sock")));
}

TEST_F(TestRelayTest, NotifyIsDeliveredToATcpListenerAtTheCommandSource) {
  EXPECT_EQ(udp_->ask("n1 U ncall 192.0.2.1 1 f tcp:%%CC_SELF%%:" + std::to_string(notify_port_ + 1) +
                      " x"),
            "n1 40000 127.0.0.1\n");
  // The first U's target is not permitted (-n names another port); a second U
  // with the permitted target replaces the handler.
  const std::string target = "tcp:%%CC_SELF%%:" + std::to_string(notify_port_);
  EXPECT_EQ(udp_->ask("n2 U ncall 192.0.2.1 1 f " + target + " hello%20world%3Bx"), "n2 40000 127.0.0.1\n");
  EXPECT_EQ(udp_->ask("n3 notify ncall"), "n3 1\n");
  ASSERT_TRUE(waitReadable(notify_fd_, kWaitMs));
  const int conn = accept(notify_fd_, nullptr, nullptr);
  ASSERT_GE(conn, 0);
  EXPECT_EQ(readLines(conn, 1), "hello world;x\n");
  close(conn);
  EXPECT_EQ(udp_->ask("n4 Q ncall f"), "n4 E50\n");  // timed out = gone
  EXPECT_EQ(udp_->ask("n5 G nsess_timeout"), "n5 1\n");
}

TEST_F(TestRelayTest, NotifyIsDeliveredToAUnixListenerFromTheAdminSocket) {
  const std::string path = dir_.file("notify.sock");
  const int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  listen(l, 4);
  EXPECT_EQ(udp_->ask("u1 U ucall 192.0.2.1 1 f unix:" + path + " T42"), "u1 40000 127.0.0.1\n");
  EXPECT_EQ(admin_->ask("notify ucall"), "OK sessions=1 notifications=1");
  ASSERT_TRUE(waitReadable(l, kWaitMs));
  const int conn = accept(l, nullptr, nullptr);
  EXPECT_EQ(readLines(conn, 1), "T42\n");
  close(conn);
  close(l);
  EXPECT_EQ(admin_->ask("notify ucall"), "ERROR no session for call-id ucall");
  EXPECT_EQ(admin_->stat("notifies"), 1);
}

TEST(TestRelayStartup, CommandLineFaultsApplyFromTheStart) {
  Relay relay({"-s", "udp:127.0.0.1:0", "--refuse", "E99", "--rtpengine-stats"});
  ASSERT_TRUE(relay.ready());
  Udp udp(AF_INET, relay.port("udp"));
  EXPECT_EQ(udp.ask("s1 U c 192.0.2.1 1 f"), "s1 E99\n");
  EXPECT_EQ(udp.ask("s2 I"), "s2 E8\n");
  // Without -n, notify arguments are refused and VF 20081224 is 0.
  EXPECT_EQ(udp.ask("s3 VF 20081224"), "s3 0\n");
  relay.signal(SIGINT);
  EXPECT_EQ(relay.waitExit(kWaitMs), 0);
}

TEST(TestRelayStartup, Ipv6AdvertisedAddressAndE75WithoutNotifySupport) {
  Relay relay({"-s", "udp:127.0.0.1:0", "-l", "::1"});
  ASSERT_TRUE(relay.ready());
  Udp udp(AF_INET, relay.port("udp"));
  EXPECT_EQ(udp.ask("s1 U c 192.0.2.1 1 f"), "s1 35000 ::1 6\n");
  EXPECT_EQ(udp.ask("s2 U c 192.0.2.1 1 f tcp:%%CC_SELF%%:9 t"), "s2 E75\n");
}

TEST(TestRelayStartup, BadCommandLineExitsWithUsage) {
  Relay relay({"-s", "udp:127.0.0.1:0", "--refuse", "E1"});
  EXPECT_FALSE(relay.ready());
  EXPECT_EQ(relay.waitExit(kWaitMs), 2);
}

}  // namespace

namespace {

// rtpp_loadgen against the relay: a short closed-loop run must complete every
// U/D pair with no errors, and a second run must not be answered from the
// relay's reply cache with the first run's replies.
TEST(Loadgen, CompletesCallsWithoutErrorsInBackToBackRuns) {
  const char* loadgen = std::getenv("RTPP_LOADGEN");
  if (loadgen == nullptr) GTEST_SKIP() << "RTPP_LOADGEN not set";
  Relay relay({"-s", "udp:127.0.0.1:0"});
  ASSERT_TRUE(relay.ready());
  for (int run = 0; run < 2; ++run) {
    const std::string cmd = std::string(loadgen) + " -t " + relay.uri("udp") + " -w 16 -n 2000";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    EXPECT_EQ(pclose(p), 0) << out;
    EXPECT_NE(out.find("RESULT cmds=2000 "), std::string::npos) << out;
    EXPECT_NE(out.find(" errors=0 timeouts=0 "), std::string::npos) << out;
  }
}

// --resend-ms: like Kamailio, the same datagram again until it is answered.
// A relay that drops 30% of the commands it receives (before running them)
// then loses none, and its reply cache makes sure none runs twice.
TEST(Loadgen, ResendsTheSameDatagramUntilAnswered) {
  const char* loadgen = std::getenv("RTPP_LOADGEN");
  if (loadgen == nullptr) GTEST_SKIP() << "RTPP_LOADGEN not set";
  Relay relay({"-s", "udp:127.0.0.1:0", "--drop-percent", "30"});
  ASSERT_TRUE(relay.ready());
  const std::string cmd =
      std::string(loadgen) + " -t " + relay.uri("udp") + " -w 8 -n 400 --resend-ms 50 --tries 30";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_NE(out.find("RESULT cmds=400 "), std::string::npos) << out;
  EXPECT_NE(out.find(" errors=0 timeouts=0 "), std::string::npos) << out;
  const size_t at = out.find(" resends=");
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_GT(std::atoll(out.c_str() + at + 9), 50) << out;
}

}  // namespace
