#include "shared/control_socket_bind.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace rtpc {

bool removeSocketFileIfOurs(const std::string& path, const SocketFileId& id) {
  if (id.ino == 0) return false;
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 || st.st_dev != id.dev || st.st_ino != id.ino) return false;
  return unlink(path.c_str()) == 0;
}

int bindControlSocket(const SocketAddress& address, const ControlBindOptions& options,
                      SocketFileId& created, std::string& error) {
  created = SocketFileId{};
  ResolvedAddress resolved;
  if (!resolveAddress(address, resolved, error)) return -1;
  const bool datagram = isDatagram(address.transport);
  const bool unix_path = resolved.family == AF_UNIX;
  const auto errnoText = [&](const char* what) {
    return std::string(what) + " " + address.uri() + ": " + std::strerror(errno);
  };
  int type = (datagram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC;
  if (options.nonblocking) type |= SOCK_NONBLOCK;
  const int fd = socket(resolved.family, type, 0);
  if (fd < 0) {
    error = errnoText("cannot open a socket for");
    return -1;
  }
  SocketFileId file;
  const auto fail = [&](const char* what) {
    error = errnoText(what);
    close(fd);
    removeSocketFileIfOurs(address.path, file);
    return -1;
  };

  const int one = 1;
  if (unix_path) {
    struct stat st {};
    if (lstat(address.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        error = address.path + " exists and is not a socket";
        close(fd);
        return -1;
      }
      if (unlink(address.path.c_str()) != 0) return fail("cannot remove the stale socket file");
    }
  } else {
    if (!datagram && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
      return fail("SO_REUSEADDR");
    }
    if (resolved.family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
      return fail("IPV6_V6ONLY");
    }
  }
  if (::bind(fd, resolved.sa(), resolved.length) != 0) return fail("cannot bind");
  if (unix_path) {
    struct stat st {};
    if (lstat(address.path.c_str(), &st) == 0) file = SocketFileId{st.st_dev, st.st_ino};
    if (options.unix_mode != 0 && chmod(address.path.c_str(), options.unix_mode) != 0) {
      return fail("cannot chmod");
    }
    if ((options.unix_uid != static_cast<uid_t>(-1) || options.unix_gid != static_cast<gid_t>(-1)) &&
        chown(address.path.c_str(), options.unix_uid, options.unix_gid) != 0) {
      return fail("cannot chown");
    }
  }
  if (!datagram && listen(fd, SOMAXCONN) != 0) return fail("cannot listen on");
  created = file;
  return fd;
}

}  // namespace rtpc
