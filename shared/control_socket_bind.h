#pragma once
// Binding a control socket (a cluster's, or the admin socket), shared by the
// supervisor, which binds before it forks and keeps the socket across worker
// restarts, and a worker that runs without a supervisor.

#include <sys/types.h>

#include <cstdint>

#include <string>

#include "shared/address.h"

namespace rtpc {

// The unix socket file a bind created. Its owner removes the path later only
// while it is still this file: a reload or a newer process may have bound a
// new socket at the same path meanwhile.
struct SocketFileId {
  dev_t dev = 0;
  ino_t ino = 0;  // 0 = no file
};

// Unlinks `path` if it is still the file `id` names; false if not (or id is empty).
// Either way this process no longer counts `id` as a file it bound.
bool removeSocketFileIfOurs(const std::string& path, const SocketFileId& id);

// Whether something accepts connections on the unix socket file at `path`,
// found by connecting to it (without blocking).
enum class UnixSocketPeer : uint8_t {
  kLive,     // connected, or a live socket refused us (backlog full, other type)
  kStale,    // ECONNREFUSED: the file of a socket no one holds
  kAbsent,   // no file
  kUnknown,  // any other error, in error_number (e.g. EACCES)
};
UnixSocketPeer probeUnixSocketFile(const std::string& path, int& error_number);

struct ControlBindOptions {
  bool nonblocking = false;  // the caller runs the socket on its own loop right away
  // A created unix socket file: its permissions (0 = leave the umask's) and
  // owner (-1 = unchanged). Set before listen(), so that no client connects
  // through looser permissions.
  mode_t unix_mode = 0;
  uid_t unix_uid = static_cast<uid_t>(-1);
  gid_t unix_gid = static_cast<gid_t>(-1);
};

// Returns a close-on-exec socket bound to `address` (datagram transports) or
// bound and listening (stream ones), or -1 with an error naming the address
// ("cannot bind udp:127.0.0.1:22222: Address already in use").
// A unix socket file left at the path by a previous run (nothing accepts
// connections on it) is replaced, and so is one this process bound itself; a
// socket another process still listens on is refused ("<path> is in use: ...")
// as is anything that is not a socket ("<path> exists and is not a socket"),
// and left alone.
// `created` names the unix socket file made (empty for IP transports); on
// failure nothing is left behind: the fd is closed and that file removed.
// Stream IP sockets get SO_REUSEADDR (a restart must not wait for TIME_WAIT);
// IPv6 ones IPV6_V6ONLY (tcp6/udp6 must not take the IPv4 port too).
int bindControlSocket(const SocketAddress& address, const ControlBindOptions& options,
                      SocketFileId& created, std::string& error);

}  // namespace rtpc
