#pragma once
// ControlSocket: a listening socket the supervisor binds itself (a cluster's
// control socket, or the admin socket) and keeps across worker restarts.
// Datagram transports are bound, stream ones bound and listening; a unix
// socket file left by a previous run is replaced (a live socket of another
// process, or anything else at that path, is refused), chowned to the -o owner, and removed on close() only while it
// is still the file this socket created (a reload may have bound a new
// socket at the same path meanwhile).

#include <sys/types.h>

#include <memory>
#include <string>

#include "shared/address.h"
#include "shared/control_socket_bind.h"

namespace rtpc {

// -o user:group resolved; -1 = leave unchanged.
struct SocketOwner {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  bool any() const { return uid != static_cast<uid_t>(-1) || gid != static_cast<gid_t>(-1); }
};

// Resolves "user", "group" names (or numeric ids); false with a message.
bool resolveSocketOwner(const std::string& user, const std::string& group, SocketOwner& out,
                        std::string& error);

class ControlSocket {
 public:
  // unix_mode: permissions of a created unix socket file (0 = leave umask's).
  static std::unique_ptr<ControlSocket> bind(const SocketAddress& address, const SocketOwner& owner,
                                             mode_t unix_mode, std::string& error);
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  int fd() const { return fd_; }
  const SocketAddress& address() const { return address_; }
  // Closes the socket and removes the unix socket file if it is still ours.
  void close();

 private:
  ControlSocket() = default;
  int fd_ = -1;
  SocketAddress address_;
  SocketFileId file_;  // the unix socket file this socket created
};

}  // namespace rtpc
