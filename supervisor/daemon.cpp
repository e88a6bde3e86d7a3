#include "supervisor/daemon.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "shared/log_setup.h"

namespace rtpc {
namespace {

int g_ready_fd = -1;  // the child's end of the readiness pipe

bool openOnto(const std::string& path, int flags, int target, std::string& error) {
  const int fd = open(path.c_str(), flags | O_CLOEXEC, 0640);
  if (fd < 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  if (fd != target) {
    dup2(fd, target);
    close(fd);
  }
  return true;
}

}  // namespace

bool Daemon::detach(const std::string& log_file, std::string& error) {
  // Opened before the fork: a bad -L is reported on the terminal.
  const int log_fd = openLogFile(log_file, error);
  if (log_fd < 0) return false;
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    close(log_fd);
    return false;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    close(log_fd);
    close(ready[0]);
    close(ready[1]);
    return false;
  }
  if (pid > 0) {
    close(ready[1]);
    close(log_fd);
    std::string message;
    char buf[512];
    ssize_t n;
    // Workers forked before READY hold copies of the write end for a moment:
    // READY itself ends the wait, not EOF.
    while (message != "READY" && ((n = read(ready[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))) {
      if (n > 0) message.append(buf, static_cast<size_t>(n));
    }
    if (message == "READY") _exit(0);
    if (message.empty()) message = "the daemon exited during startup; see the log file " + log_file;
    std::fprintf(stderr, "rtp_cluster: %s\n", message.c_str());
    _exit(1);
  }
  close(ready[0]);
  g_ready_fd = ready[1];
  setsid();
  if (chdir("/") != 0) {
    // Not fatal: every path the daemon uses was made absolute before.
  }
  std::string ignored;
  openOnto("/dev/null", O_RDONLY, STDIN_FILENO, ignored);
  openOnto("/dev/null", O_WRONLY, STDOUT_FILENO, ignored);
  dup2(log_fd, STDERR_FILENO);
  close(log_fd);
  return true;
}

void Daemon::reportReady() {
  notify("READY=1");
  if (g_ready_fd < 0) return;
  constexpr std::string_view kReady = "READY";
  (void)!write(g_ready_fd, kReady.data(), kReady.size());
  close(g_ready_fd);
  g_ready_fd = -1;
}

void Daemon::reportFailure(const std::string& message) {
  if (g_ready_fd < 0) return;
  (void)!write(g_ready_fd, message.data(), message.size());
  close(g_ready_fd);
  g_ready_fd = -1;
}

bool Daemon::reopenLog(const std::string& log_file, std::string& error) {
  const int fd = openLogFile(log_file, error);
  if (fd < 0) return false;
  if (fd != STDERR_FILENO) {
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  return true;
}

void Daemon::notify(std::string_view state) {
  // The sd_notify protocol without libsystemd: one datagram to $NOTIFY_SOCKET
  // (a path, or an abstract name written with a leading '@').
  const char* target = std::getenv("NOTIFY_SOCKET");
  if (target == nullptr || target[0] == '\0') return;
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  const size_t length = std::strlen(target);
  if (length >= sizeof un.sun_path) return;
  std::memcpy(un.sun_path, target, length);
  if (un.sun_path[0] == '@') un.sun_path[0] = '\0';
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  (void)!sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&un),
                static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length));
  close(fd);
}

std::string Daemon::shmNameFor(const std::string& absolute_pid_file) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (const char c : absolute_pid_file) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return std::string("rtp_cluster.") + hex;
}

std::string Daemon::absolutePath(const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == nullptr) return path;
  std::string out = cwd;
  if (out.back() != '/') out += '/';
  out += path;
  return out;
}

}  // namespace rtpc
