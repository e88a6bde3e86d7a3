#include "shared/control_socket_bind.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace rtpc {
namespace {

// The unix socket files this process bound and has not removed yet. A live
// socket file is replaced only when it is one of these (a reload that moves a
// path from unix to cunix binds the new socket while the old one still
// listens); anyone else's live socket is left alone. The path is kept too: a
// file removed behind our back may have its inode number reused elsewhere.
struct BoundFile {
  std::string path;
  SocketFileId id;
};

std::vector<BoundFile>& boundFiles() {
  static std::vector<BoundFile> files;
  return files;
}

bool boundHere(const std::string& path, const struct stat& st) {
  const auto& files = boundFiles();
  return std::any_of(files.begin(), files.end(), [&](const BoundFile& f) {
    return f.id.dev == st.st_dev && f.id.ino == st.st_ino && f.path == path;
  });
}

void forget(const SocketFileId& id) {
  auto& files = boundFiles();
  files.erase(std::remove_if(files.begin(), files.end(),
                             [&](const BoundFile& f) { return f.id.dev == id.dev && f.id.ino == id.ino; }),
              files.end());
}

}  // namespace

UnixSocketPeer probeUnixSocketFile(const std::string& path, int& error_number) {
  error_number = 0;
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    error_number = ENAMETOOLONG;
    return UnixSocketPeer::kUnknown;
  }
  std::memcpy(sun.sun_path, path.data(), path.size());
  // Non-blocking: a listener with a full backlog answers EAGAIN at once
  // instead of holding the start.
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error_number = errno;
    return UnixSocketPeer::kUnknown;
  }
  const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&sun), sizeof sun);
  const int e = rc == 0 ? 0 : errno;
  close(fd);
  switch (e) {
    case 0:
    case EAGAIN:      // a listener whose backlog is full
    case EINPROGRESS:
    case EPROTOTYPE:  // a live socket of another type (datagram)
      return UnixSocketPeer::kLive;
    case ECONNREFUSED:  // the file of a socket no one holds any more
      return UnixSocketPeer::kStale;
    case ENOENT:
      return UnixSocketPeer::kAbsent;
    default:
      error_number = e;
      return UnixSocketPeer::kUnknown;
  }
}

bool removeSocketFileIfOurs(const std::string& path, const SocketFileId& id) {
  if (id.ino == 0) return false;
  forget(id);
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
      // Another instance's live socket must not be taken over (and later
      // deleted by us): only a file nobody accepts connections on, or one
      // this process bound itself, is replaced.
      if (!boundHere(address.path, st)) {
        int probe_errno = 0;
        switch (probeUnixSocketFile(address.path, probe_errno)) {
          case UnixSocketPeer::kLive:
            error = address.path + " is in use: another process accepts connections on it (stop it, or choose another path)";
            close(fd);
            return -1;
          case UnixSocketPeer::kUnknown:
            error = "cannot tell whether " + address.path + " is in use: " + std::strerror(probe_errno);
            close(fd);
            return -1;
          case UnixSocketPeer::kStale:
          case UnixSocketPeer::kAbsent:
            break;
        }
      }
      if (unlink(address.path.c_str()) != 0 && errno != ENOENT) {
        return fail("cannot remove the stale socket file");
      }
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
  if (file.ino != 0) boundFiles().push_back(BoundFile{address.path, file});
  return fd;
}

}  // namespace rtpc
