#include "supervisor/control_socket.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>

namespace rtpc {
namespace {

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
  ControlBindOptions options;
  options.unix_mode = unix_mode;
  options.unix_uid = owner.uid;
  options.unix_gid = owner.gid;
  SocketFileId file;
  const int fd = bindControlSocket(address, options, file, error);
  if (fd < 0) return nullptr;
  std::unique_ptr<ControlSocket> s(new ControlSocket());
  s->fd_ = fd;
  s->address_ = address;
  s->file_ = file;
  return s;
}

ControlSocket::~ControlSocket() { close(); }

void ControlSocket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  removeSocketFileIfOurs(address_.path, file_);
  file_ = SocketFileId{};
}

}  // namespace rtpc
