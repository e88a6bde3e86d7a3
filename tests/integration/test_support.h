#pragma once
// Shared pieces of the integration tests: temp dirs, the relay double as a
// child process, and an RTPproxy control client on every transport.
// Header-only so that each test binary stays one file plus this.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shared/address.h"

namespace rtpc::testing {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The machine is shared and loaded: waits are generous, and upper bounds on
// timing only catch gross errors.
inline constexpr milliseconds kWait{8000};

inline std::string envOr(const char* name, const char* fallback) {
  const char* p = std::getenv(name);
  return p != nullptr ? p : fallback;
}

// The whole HTTP/1.0 response (status line, headers, body); empty on failure.
inline std::string httpGet(uint16_t port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in.sin_port = htons(port);
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&in), sizeof in) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) response.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return response;
}

// Files and child programs, for the tests that run the real binaries.
inline void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << text;
}

inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct RunResult {
  int status = -1;  // exit code, or -1
  std::string out;
  std::string err;
};

// Runs a program to completion (killed after `limit`), capturing stdout and
// stderr.
inline RunResult run(const std::vector<std::string>& args, milliseconds limit = kWait) {
  RunResult r;
  int out[2];
  int err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return r;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  const auto deadline = Clock::now() + limit;
  bool out_open = true;
  bool err_open = true;
  while ((out_open || err_open) && Clock::now() < deadline) {
    pollfd p[2] = {{out_open ? out[0] : -1, POLLIN, 0}, {err_open ? err[0] : -1, POLLIN, 0}};
    if (poll(p, 2, 50) <= 0) continue;
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents == 0) continue;
      const ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n <= 0) {
        (i == 0 ? out_open : err_open) = false;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  close(out[0]);
  close(err[0]);
  int status = 0;
  if (out_open || err_open) kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class TempDir {
 public:
  explicit TempDir(const char* prefix = "rtpc_test") {
    std::string tmpl = std::string("/tmp/") + prefix + ".XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty()) std::system(("rm -rf " + path_).c_str());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline bool waitReadable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) > 0;
}

// A free port on 127.0.0.1 for SOCK_DGRAM or SOCK_STREAM (bound and
// released: good enough on loopback, for peers that need a fixed port).
inline uint16_t freeLoopbackPort(int sock_type = SOCK_DGRAM) {
  const int fd = socket(AF_INET, sock_type | SOCK_CLOEXEC, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof in;
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof in) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&in), &len) == 0)
    port = ntohs(in.sin_port);
  close(fd);
  return port;
}

// Polls `done` until it holds or `limit` passes.
template <typename F>
bool eventually(F done, milliseconds limit = kWait, milliseconds step = milliseconds(20)) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(step);
  }
  return true;
}

// A child process whose stdout is read until a marker line; killed by pid.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { stop(); }

  // Starts argv; true once stdout printed `ready_marker` (a full line).
  // With merge_stderr, stderr goes to the same pipe.
  bool start(const std::vector<std::string>& args, const std::string& ready_marker,
             bool merge_stderr = false, milliseconds limit = kWait) {
    stop();
    output_.clear();
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      if (merge_stderr) dup2(out[1], STDERR_FILENO);
      std::vector<char*> argv;
      std::vector<std::string> copy = args;
      for (std::string& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    stdout_ = out[0];
    return readUntil(ready_marker, limit);
  }

  bool readUntil(const std::string& marker, milliseconds limit = kWait) {
    const auto deadline = Clock::now() + limit;
    while (output_.find(marker) == std::string::npos) {
      if (Clock::now() > deadline || stdout_ < 0) return false;
      if (!waitReadable(stdout_, 50)) continue;
      char chunk[4096];
      const ssize_t n = read(stdout_, chunk, sizeof chunk);
      if (n <= 0) return false;
      output_.append(chunk, static_cast<size_t>(n));
    }
    return true;
  }

  // The text after `key ` up to the end of its line, or "".
  std::string lineValue(const std::string& key) const {
    const size_t at = output_.find(key + " ");
    if (at == std::string::npos) return "";
    const size_t from = at + key.size() + 1;
    return output_.substr(from, output_.find('\n', from) - from);
  }

  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Sends sig and waits (SIGKILL after `grace`); returns the wait status.
  int stop(int sig = SIGKILL, milliseconds grace = milliseconds(3000)) {
    int status = -1;
    if (pid_ > 0) {
      ::kill(pid_, sig);
      const auto deadline = Clock::now() + grace;
      while (waitpid(pid_, &status, WNOHANG) == 0) {
        if (Clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(milliseconds(10));
      }
      pid_ = -1;
    }
    if (stdout_ >= 0) close(stdout_);
    stdout_ = -1;
    return status;
  }
  pid_t pid() const { return pid_; }
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
  std::string output_;
};

inline sockaddr_un unixAddress(const std::string& path) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strncpy(un.sun_path, path.c_str(), sizeof un.sun_path - 1);
  return un;
}

// A non-blocking unix stream listener at `path` (a stale file there is
// removed first), for a test that plays the peer; -1 on failure.
inline int listenUnixStream(const std::string& path, int backlog = 4) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const sockaddr_un un = unixAddress(path);
  unlink(path.c_str());
  if (fd < 0 || bind(fd, reinterpret_cast<const sockaddr*>(&un), sizeof un) != 0 || listen(fd, backlog) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

// One line over a unix stream socket; the reply up to its first newline.
inline std::string unixRequestLine(const std::string& path, const std::string& line,
                                   int timeout_ms = 5000) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un un = unixAddress(path);
  std::string reply;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&un), sizeof un) == 0) {
    const std::string text = line + "\n";
    if (write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size())) {
      while (reply.find('\n') == std::string::npos && waitReadable(fd, timeout_ms)) {
        char chunk[1024];
        const ssize_t n = read(fd, chunk, sizeof chunk);
        if (n <= 0) break;
        reply.append(chunk, static_cast<size_t>(n));
      }
    }
  }
  close(fd);
  return reply;
}

// The relay double (tests/tools/rtpp_test_relay) with a unix admin socket.
class TestRelay {
 public:
  // `listen` as the relay takes it (udp:127.0.0.1:0 picks a port); extra
  // arguments e.g. {"-l", "127.0.0.2"} so that replies tell relays apart.
  bool start(const std::string& listen, const std::string& admin_path,
             const std::vector<std::string>& extra = {}) {
    admin_path_ = admin_path;
    std::vector<std::string> args = {envOr("RTPP_TEST_RELAY", "tests/tools/rtpp_test_relay"),
                                     "-s", listen, "--admin", "unix:" + admin_path,
                                     "--cache-entries", "4096"};
    args.insert(args.end(), extra.begin(), extra.end());
    if (!process_.start(args, "READY\n", /*merge_stderr=*/true)) {
      std::string line;
      for (const std::string& a : args) line += a + " ";
      std::fprintf(stderr, "relay did not start: %s\n%s\n", line.c_str(), process_.output().c_str());
      return false;
    }
    const AddressResult parsed = parseAddressUri(process_.lineValue("LISTENING"), Transport::kUnix);
    if (!parsed.address) return false;
    address_ = *parsed.address;
    args_ = args;
    return true;
  }
  // Starts again on the same address (a fixed port now) after stop().
  bool restart() {
    std::vector<std::string> args = args_;
    args[2] = address_.uri();
    if (!process_.start(args, "READY\n")) return false;
    return true;
  }
  void stop() { process_.stop(); }
  bool running() const { return process_.pid() > 0; }
  const SocketAddress& address() const { return address_; }

  std::string admin(const std::string& line) const { return unixRequestLine(admin_path_, line); }
  uint64_t stat(const std::string& key) const {
    const std::string s = admin("stats");
    const size_t at = s.find(" " + key + "=");
    if (at == std::string::npos) return UINT64_MAX;
    return std::strtoull(s.c_str() + at + key.size() + 2, nullptr, 10);
  }

 private:
  ChildProcess process_;
  std::vector<std::string> args_;
  std::string admin_path_;
  SocketAddress address_;
};

// An RTPproxy control client on any transport, blocking with a timeout.
// udp/udp6: "<cookie> <command>" and the reply's cookie is checked and
// stripped; unix: one connection per command, no newline needed; cunix/tcp:
// one persistent connection, newline framed. Returns "" on timeout.
class ControlClient {
 public:
  explicit ControlClient(SocketAddress address) : address_(std::move(address)) {}
  ~ControlClient() { closeFd(); }
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  std::string command(const std::string& text, int timeout_ms = 3000) {
    if (isDatagram(address_.transport)) {
      // Unique per process: a new client may get a recycled source port, and
      // the cluster's reply cache is keyed by address + cookie.
      static std::atomic<uint64_t> sequence{0};
      const std::string cookie = "c" + std::to_string(getpid()) + "_" + std::to_string(++sequence);
      return datagram(cookie, text, timeout_ms);
    }
    if (address_.transport == Transport::kUnix) {
      closeFd();
      if (!connectStream()) return "";
      const bool ok = sendAll(text);  // Kamailio sends no newline
      std::string reply = ok ? readLine(timeout_ms, /*until_close=*/true) : "";
      closeFd();
      return reply;
    }
    if (fd_ < 0 && !connectStream()) return "";
    if (!sendAll(text + "\n")) {
      closeFd();
      return "";
    }
    return readLine(timeout_ms, false);
  }

  // A datagram with a chosen cookie (to test retransmissions); the reply body.
  std::string datagram(const std::string& cookie, const std::string& text, int timeout_ms = 3000) {
    if (fd_ < 0 && !connectDatagram()) return "";
    const std::string wire = cookie + " " + text;
    if (send(fd_, wire.data(), wire.size(), 0) < 0) return "";
    const auto deadline = Clock::now() + milliseconds(timeout_ms);
    char buf[65536];
    while (true) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || !waitReadable(fd_, static_cast<int>(left))) return "";
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return "";
      std::string reply(buf, static_cast<size_t>(n));
      if (reply.compare(0, cookie.size() + 1, cookie + " ") != 0) continue;  // a late answer
      reply.erase(0, cookie.size() + 1);
      if (!reply.empty() && reply.back() == '\n') reply.pop_back();
      return reply;
    }
  }
  // Sends a datagram and does not wait.
  void datagramNoWait(const std::string& cookie, const std::string& text) {
    if (fd_ < 0 && !connectDatagram()) return;
    const std::string wire = cookie + " " + text;
    (void)send(fd_, wire.data(), wire.size(), 0);
  }
  // Everything that arrives within timeout_ms (datagrams), for "answered
  // exactly once" checks.
  std::vector<std::string> drainDatagrams(int timeout_ms) {
    std::vector<std::string> out;
    char buf[65536];
    while (fd_ >= 0 && waitReadable(fd_, timeout_ms)) {
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.emplace_back(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  bool resolve(sockaddr_storage& ss, socklen_t& len) const {
    std::memset(&ss, 0, sizeof ss);
    if (isUnixPath(address_.transport)) {
      const sockaddr_un un = unixAddress(address_.path);
      std::memcpy(&ss, &un, sizeof un);
      len = sizeof(sockaddr_un);
      return true;
    }
    if (isIpv6(address_.transport)) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(address_.port);
      len = sizeof(sockaddr_in6);
      return inet_pton(AF_INET6, address_.host.c_str(), &in6->sin6_addr) == 1;
    }
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(address_.port);
    len = sizeof(sockaddr_in);
    return inet_pton(AF_INET, address_.host.c_str(), &in->sin_addr) == 1;
  }
  bool connectDatagram() {
    sockaddr_storage ss;
    socklen_t len;
    if (!resolve(ss, len)) return false;
    fd_ = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    if (connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      closeFd();
      return false;
    }
    return true;
  }
  bool connectStream() {
    sockaddr_storage ss;
    socklen_t len;
    if (!resolve(ss, len)) return false;
    fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    if (connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      closeFd();
      return false;
    }
    return true;
  }
  bool sendAll(const std::string& text) {
    size_t off = 0;
    while (off < text.size()) {
      const ssize_t n = send(fd_, text.data() + off, text.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  std::string readLine(int timeout_ms, bool until_close) {
    const auto deadline = Clock::now() + milliseconds(timeout_ms);
    while (true) {
      const size_t nl = pending_.find('\n');
      if (nl != std::string::npos && !until_close) {
        std::string line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || !waitReadable(fd_, static_cast<int>(left))) break;
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      pending_.append(buf, static_cast<size_t>(n));
    }
    if (until_close) {
      std::string all;
      all.swap(pending_);
      if (!all.empty() && all.back() == '\n') all.pop_back();
      return all;
    }
    return "";
  }
  void closeFd() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    pending_.clear();
  }

  SocketAddress address_;
  int fd_ = -1;
  std::string pending_;
};

}  // namespace rtpc::testing
