#include "supervisor/control_socket.h"

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace rtpc {
namespace {

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

bool numericId(const std::string& text, unsigned long& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

bool resolveSocketOwner(const std::string& user, const std::string& group, SocketOwner& out,
                        std::string& error) {
  out = SocketOwner{};
  if (!user.empty()) {
    unsigned long id = 0;
    if (const passwd* pw = getpwnam(user.c_str()); pw != nullptr) {
      out.uid = pw->pw_uid;
    } else if (numericId(user, id)) {
      out.uid = static_cast<uid_t>(id);
    } else {
      error = "-o: unknown user \"" + user + "\"";
      return false;
    }
  }
  if (!group.empty()) {
    unsigned long id = 0;
    if (const struct group* gr = getgrnam(group.c_str()); gr != nullptr) {
      out.gid = gr->gr_gid;
    } else if (numericId(group, id)) {
      out.gid = static_cast<gid_t>(id);
    } else {
      error = "-o: unknown group \"" + group + "\"";
      return false;
    }
  }
  return true;
}

std::unique_ptr<ControlSocket> ControlSocket::bind(const SocketAddress& address, const SocketOwner& owner,
                                                   mode_t unix_mode, std::string& error) {
  ResolvedAddress resolved;
  if (!resolveAddress(address, resolved, error)) return nullptr;
  const bool datagram = isDatagram(address.transport);
  std::unique_ptr<ControlSocket> s(new ControlSocket());
  s->address_ = address;
  s->fd_ = socket(resolved.family, (datagram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (s->fd_ < 0) {
    error = errnoText("socket");
    return nullptr;
  }
  const auto fail = [&](const char* what) -> std::unique_ptr<ControlSocket> {
    error = errnoText(std::string(what) + " " + address.uri());
    s->close();
    return nullptr;
  };
  const int one = 1;
  if (resolved.family == AF_UNIX) {
    struct stat st {};
    if (lstat(address.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        error = address.path + " exists and is not a socket";
        s->close();
        return nullptr;
      }
      if (unlink(address.path.c_str()) != 0) return fail("cannot remove the stale socket file");
    }
  } else {
    if (!datagram && setsockopt(s->fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
      return fail("SO_REUSEADDR");
    }
    if (resolved.family == AF_INET6 && setsockopt(s->fd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
      return fail("IPV6_V6ONLY");
    }
  }
  if (::bind(s->fd_, resolved.sa(), resolved.length) != 0) return fail("cannot bind");
  if (resolved.family == AF_UNIX) {
    struct stat st {};
    if (lstat(address.path.c_str(), &st) == 0) {
      s->dev_ = st.st_dev;
      s->ino_ = st.st_ino;
    }
    if (unix_mode != 0 && chmod(address.path.c_str(), unix_mode) != 0) return fail("cannot chmod");
    if (owner.any() && chown(address.path.c_str(), owner.uid, owner.gid) != 0) return fail("cannot chown");
  }
  if (!datagram && listen(s->fd_, SOMAXCONN) != 0) return fail("cannot listen on");
  return s;
}

ControlSocket::~ControlSocket() { close(); }

void ControlSocket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (ino_ != 0) {
    struct stat st {};
    if (lstat(address_.path.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
      unlink(address_.path.c_str());
    }
    ino_ = 0;
  }
}

}  // namespace rtpc
