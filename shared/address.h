#pragma once
// Control-socket addresses as the config, the command line and the admin
// protocol write them: a protocol plus "host:port" or a unix path.
// Pure parsing and formatting; resolving to a sockaddr is separate.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rtpc {

enum class Transport : uint8_t {
  kUdp,    // datagram, cookie
  kUdp6,
  kUnix,   // stream, one command per connection, answer then close
  kCunix,  // stream, persistent, newline framed
  kTcp,    // like cunix over TCP
  kTcp6,
};

inline constexpr uint16_t kDefaultControlPort = 22222;
// The admin socket's port when `tcp:host` gives none (the reference client's).
inline constexpr uint16_t kDefaultAdminPort = 12345;
// Longest unix socket path: sun_path less its terminating NUL.
inline constexpr size_t kMaxUnixPathBytes = sizeof(sockaddr_un::sun_path) - 1;

// "udp", "UDP", "Udp6", ... -> Transport. Case-insensitive.
std::optional<Transport> parseTransport(std::string_view name);
// Lower-case name: "udp", "udp6", "unix", "cunix", "tcp", "tcp6".
std::string_view transportName(Transport t);
bool isDatagram(Transport t);  // udp, udp6
bool isUnixPath(Transport t);  // unix, cunix
bool isIpv6(Transport t);      // udp6, tcp6

struct SocketAddress {
  Transport transport = Transport::kUdp;
  std::string host;   // IP literal or host name (without [] for IPv6); empty for unix
  uint16_t port = 0;  // IP transports
  std::string path;   // unix transports

  // As the reference prints it: "127.0.0.1:32324", "[::1]:32323", or the unix path.
  std::string display() const;
  // With the protocol prefix: "udp:127.0.0.1:22222", "udp6:[::1]:22222", "unix:/path".
  std::string uri() const;
  bool operator==(const SocketAddress&) const = default;
};

// Parses an address written for a known transport, as the config writes it:
// udp "host[:port]" (port defaults to kDefaultControlPort), udp6 "[v6]:port",
// "[v6]", "host:port" or a bare IPv6 literal, unix/cunix "/path" (at most
// sizeof(sun_path)-1 bytes). tcp/tcp6 take the same forms as udp/udp6.
// IPv4 literals are refused for udp6/tcp6 and IPv6 literals for udp/tcp.
// default_port 0 makes the port mandatory. Returns an error message on failure.
struct AddressResult {
  std::optional<SocketAddress> address;
  std::string error;  // e.g. `port must be 1..65535, got "99999"`
};
AddressResult parseAddress(Transport transport, std::string_view text,
                           uint16_t default_port = kDefaultControlPort);

// Parses "proto:rest" (udp:, udp6:, unix:, cunix:, tcp:, tcp6:); text without a
// known prefix is taken as `default_transport` (e.g. a bare "/path" -> unix).
AddressResult parseAddressUri(std::string_view text, Transport default_transport,
                              uint16_t default_port = kDefaultControlPort);

// Resolves numeric hosts (and "localhost") into a sockaddr for bind/connect.
// Host names other than numeric literals and localhost are resolved with
// getaddrinfo (not for the hot path). Returns false with a message on failure.
struct ResolvedAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_UNSPEC;
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
};
bool resolveAddress(const SocketAddress& address, ResolvedAddress& out, std::string& error);

// True when resolveAddress() would have to ask the resolver (DNS, the hosts
// file): an IP transport whose host is neither an IP literal nor
// "localhost". The worker resolves such names without blocking its loop.
bool needsNameResolution(const SocketAddress& address);

}  // namespace rtpc
