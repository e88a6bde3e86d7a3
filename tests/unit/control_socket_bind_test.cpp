// bindControlSocket: what the supervisor and a standalone worker both rely
// on when they bind a control socket (stale unix files, refusals, flags,
// listening, error texts naming the address).

#include "shared/control_socket_bind.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace rtpc {
namespace {

SocketAddress unixAddress(Transport transport, const std::string& path) {
  SocketAddress a;
  a.transport = transport;
  a.path = path;
  return a;
}

SocketAddress ipAddress(Transport transport, const std::string& host, uint16_t port) {
  SocketAddress a;
  a.transport = transport;
  a.host = host;
  a.port = port;
  return a;
}

int intOption(int fd, int level, int name) {
  int value = -1;
  socklen_t length = sizeof value;
  if (getsockopt(fd, level, name, &value, &length) != 0) return -1;
  return value;
}

uint16_t boundPort(int fd) {
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
  if (local.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
}

bool connectUnix(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0;
  close(fd);
  return ok;
}

class ControlSocketBindTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/rtpc_bind_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    for (int fd : fds_) close(fd);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  int keep(int fd) {
    if (fd >= 0) fds_.push_back(fd);
    return fd;
  }

  std::string dir_;
  std::vector<int> fds_;
};

TEST_F(ControlSocketBindTest, UnixStreamReplacesAStaleSocketFileAndListens) {
  const std::string path = dir_ + "/ctl.sock";
  {  // a socket file left by a dead process
    const int old_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
    ASSERT_EQ(::bind(old_fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
    close(old_fd);
  }
  ASSERT_FALSE(connectUnix(path));  // nobody listens on the stale file

  SocketFileId file;
  std::string error;
  const int fd = keep(bindControlSocket(unixAddress(Transport::kCunix, path), {}, file, error));
  ASSERT_GE(fd, 0) << error;
  EXPECT_EQ(intOption(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
  EXPECT_TRUE(connectUnix(path));
  struct stat st {};
  ASSERT_EQ(lstat(path.c_str(), &st), 0);
  EXPECT_EQ(file.ino, st.st_ino);
  EXPECT_EQ(file.dev, st.st_dev);
}

// A second instance given the same path must not take over the first one's
// socket (and delete it when it stops): a socket something still listens on
// is refused, and left as it was.
TEST_F(ControlSocketBindTest, UnixRefusesALiveSocketSomeoneElseListensOn) {
  const std::string path = dir_ + "/ctl.sock";
  const int live = keep(socket(AF_UNIX, SOCK_STREAM, 0));  // not bound through bindControlSocket
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
  ASSERT_EQ(::bind(live, reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
  ASSERT_EQ(listen(live, 8), 0);
  struct stat before {};
  ASSERT_EQ(lstat(path.c_str(), &before), 0);

  for (Transport t : {Transport::kUnix, Transport::kCunix}) {
    SocketFileId file;
    std::string error;
    EXPECT_EQ(keep(bindControlSocket(unixAddress(t, path), {}, file, error)), -1);
    EXPECT_EQ(error, path + " is in use: another process accepts connections on it (stop it, or choose another path)");
    EXPECT_EQ(file.ino, 0u);
  }
  struct stat after {};
  ASSERT_EQ(lstat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_TRUE(connectUnix(path));  // still reaches the first listener
}

TEST_F(ControlSocketBindTest, UnixRefusesALiveDatagramSocket) {
  const std::string path = dir_ + "/dgram.sock";
  const int live = keep(socket(AF_UNIX, SOCK_DGRAM, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
  ASSERT_EQ(::bind(live, reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
  int probe_errno = 0;
  EXPECT_EQ(probeUnixSocketFile(path, probe_errno), UnixSocketPeer::kLive);
  SocketFileId file;
  std::string error;
  EXPECT_EQ(keep(bindControlSocket(unixAddress(Transport::kCunix, path), {}, file, error)), -1);
  EXPECT_NE(error.find("is in use"), std::string::npos) << error;
}

TEST_F(ControlSocketBindTest, ProbeTellsStaleFromLiveFromAbsent) {
  const std::string path = dir_ + "/p.sock";
  int probe_errno = 0;
  EXPECT_EQ(probeUnixSocketFile(path, probe_errno), UnixSocketPeer::kAbsent);
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
  EXPECT_EQ(probeUnixSocketFile(path, probe_errno), UnixSocketPeer::kStale);  // bound, not listening
  ASSERT_EQ(listen(fd, 0), 0);
  EXPECT_EQ(probeUnixSocketFile(path, probe_errno), UnixSocketPeer::kLive);
  // A listener whose backlog is full still counts as live (the probe does not wait).
  std::vector<int> waiting;
  for (int i = 0; i < 8; ++i) {
    const int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    waiting.push_back(c);
    connect(c, reinterpret_cast<sockaddr*>(&sun), sizeof sun);
  }
  EXPECT_EQ(probeUnixSocketFile(path, probe_errno), UnixSocketPeer::kLive);
  for (int c : waiting) close(c);
  close(fd);
  EXPECT_EQ(probeUnixSocketFile(path, probe_errno), UnixSocketPeer::kStale);
}

TEST_F(ControlSocketBindTest, UnixRefusesToReplaceARegularFileAndLeavesItAlone) {
  const std::string path = dir_ + "/not_a_socket";
  close(open(path.c_str(), O_CREAT | O_WRONLY, 0600));
  SocketFileId file;
  std::string error;
  EXPECT_EQ(keep(bindControlSocket(unixAddress(Transport::kUnix, path), {}, file, error)), -1);
  EXPECT_EQ(error, path + " exists and is not a socket");
  EXPECT_EQ(file.ino, 0u);
  struct stat st {};
  ASSERT_EQ(lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(ControlSocketBindTest, UnixModeAndOwnerAreAppliedToTheCreatedFile) {
  if (geteuid() != 0) GTEST_SKIP() << "chown to another user needs root";
  const std::string path = dir_ + "/admin.sock";
  ControlBindOptions options;
  options.unix_mode = 0640;
  options.unix_uid = 4321;
  options.unix_gid = 8765;
  SocketFileId file;
  std::string error;
  ASSERT_GE(keep(bindControlSocket(unixAddress(Transport::kUnix, path), options, file, error)), 0) << error;
  struct stat st {};
  ASSERT_EQ(lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_uid, 4321u);
  EXPECT_EQ(st.st_gid, 8765u);
}

TEST_F(ControlSocketBindTest, RemoveSocketFileIfOursSparesAFileThatReplacedIt) {
  const std::string path = dir_ + "/ctl.sock";
  const SocketAddress address = unixAddress(Transport::kUnix, path);
  SocketFileId first;
  SocketFileId second;
  std::string error;
  ASSERT_GE(keep(bindControlSocket(address, {}, first, error)), 0) << error;
  // A reload binds a new socket at the same path.
  ASSERT_GE(keep(bindControlSocket(address, {}, second, error)), 0) << error;
  ASSERT_NE(first.ino, second.ino);

  EXPECT_FALSE(removeSocketFileIfOurs(path, first));
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(removeSocketFileIfOurs(path, second));
  EXPECT_NE(lstat(path.c_str(), &st), 0);
  EXPECT_FALSE(removeSocketFileIfOurs(path, SocketFileId{}));
}

TEST_F(ControlSocketBindTest, FlagsFollowTheTransportAndTheOptions) {
  struct Case {
    Transport transport;
    const char* host;
    bool nonblocking;
    int type;
    int listening;
    int reuseaddr;
  };
  const Case cases[] = {
      {Transport::kUdp, "127.0.0.1", false, SOCK_DGRAM, 0, 0},
      {Transport::kUdp, "127.0.0.1", true, SOCK_DGRAM, 0, 0},
      {Transport::kTcp, "127.0.0.1", false, SOCK_STREAM, 1, 1},
      {Transport::kTcp, "127.0.0.1", true, SOCK_STREAM, 1, 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(transportName(c.transport)) + (c.nonblocking ? " nonblocking" : " blocking"));
    ControlBindOptions options;
    options.nonblocking = c.nonblocking;
    SocketFileId file;
    std::string error;
    const int fd = keep(bindControlSocket(ipAddress(c.transport, c.host, 0), options, file, error));
    ASSERT_GE(fd, 0) << error;
    EXPECT_EQ(file.ino, 0u);
    EXPECT_NE(boundPort(fd), 0);
    EXPECT_EQ(intOption(fd, SOL_SOCKET, SO_TYPE), c.type);
    EXPECT_EQ(intOption(fd, SOL_SOCKET, SO_ACCEPTCONN), c.listening);
    EXPECT_EQ(intOption(fd, SOL_SOCKET, SO_REUSEADDR) != 0, c.reuseaddr != 0);
    EXPECT_EQ((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0, c.nonblocking);
    EXPECT_NE(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);  // never leaks into a relay or a script
  }
}

TEST_F(ControlSocketBindTest, Ipv6SocketsAreV6Only) {
  for (Transport t : {Transport::kUdp6, Transport::kTcp6}) {
    SCOPED_TRACE(std::string(transportName(t)));
    SocketFileId file;
    std::string error;
    const int fd = keep(bindControlSocket(ipAddress(t, "::1", 0), {}, file, error));
    if (fd < 0 && error.find("Cannot assign requested address") != std::string::npos) {
      GTEST_SKIP() << "no ::1 here: " << error;
    }
    ASSERT_GE(fd, 0) << error;
    EXPECT_EQ(intOption(fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
  }
}

TEST_F(ControlSocketBindTest, PortInUseIsRefusedWithAnErrorNamingTheAddress) {
  SocketFileId file;
  std::string error;
  const int first = keep(bindControlSocket(ipAddress(Transport::kTcp, "127.0.0.1", 0), {}, file, error));
  ASSERT_GE(first, 0) << error;
  const SocketAddress taken = ipAddress(Transport::kTcp, "127.0.0.1", boundPort(first));
  EXPECT_EQ(keep(bindControlSocket(taken, {}, file, error)), -1);
  EXPECT_EQ(error, "cannot bind " + taken.uri() + ": " + std::strerror(EADDRINUSE));
}

}  // namespace
}  // namespace rtpc
