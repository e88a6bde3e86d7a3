#pragma once
// A member whose address is its own cluster's control socket: every command
// the cluster forwards to it comes back to the cluster, which forwards it
// again (one `D` looped thousands of times a second). The config check, a
// reload and `modify add` refuse such a member; the worker refuses a member
// host name that resolves to it.
//
// Pure decisions on addresses as written (IP literals, "localhost", unix
// paths); the caller passes this host's own addresses (thisHostAddresses())
// for a control socket bound to the wildcard address. A member host name
// other than "localhost" cannot be judged here (it needs DNS): see
// isSelfLoopResolved() for after it resolved.

#include <sys/socket.h>

#include <optional>
#include <string>
#include <vector>

#include "shared/address.h"

namespace rtpc {

// True when a member at `member` would reach the control socket `control`:
// - unix/cunix: the same path (lexically normalised: "/run/./a//b.sock");
// - IP: the same kind (datagram udp/udp6, stream tcp/tcp6), the same port,
//   and the same host: equal addresses, "localhost" = 127.0.0.1 / ::1, an
//   IPv4-mapped IPv6 member = its IPv4 address, a member at 0.0.0.0 / ::
//   = this host; a control bound to 0.0.0.0 (or ::) is reached through any
//   loopback address and any of `local_addresses` (numeric, as inet_ntop).
bool isSelfLoop(const SocketAddress& control, const SocketAddress& member,
                const std::vector<std::string>& local_addresses = {});

// The same for a member address already resolved (a host name's answer).
bool isSelfLoopResolved(const SocketAddress& control, Transport member_transport, const sockaddr* member,
                        const std::vector<std::string>& local_addresses = {});

// The message a refusal gives, e.g. `member "r1" address udp:127.0.0.1:22222
// is the cluster's own control socket udp:0.0.0.0:22222 (its commands would
// loop back to the cluster)`; nullopt when no loop.
std::optional<std::string> selfLoopError(const SocketAddress& control, const std::string& member_name,
                                         const SocketAddress& member,
                                         const std::vector<std::string>& local_addresses);

// The same, asking this host's addresses (thisHostAddresses()) only when
// they matter: a control bound to the wildcard address.
std::optional<std::string> selfLoopError(const SocketAddress& control, const std::string& member_name,
                                         const SocketAddress& member);

// This host's interface addresses, numeric (getifaddrs); empty on failure.
std::vector<std::string> thisHostAddresses();

}  // namespace rtpc
