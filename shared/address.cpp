#include "shared/address.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>

#include "shared/quote.h"

namespace rtpc {
namespace {

struct TransportEntry {
  std::string_view name;
  Transport transport;
};

constexpr std::array<TransportEntry, 6> kTransports{{
    {"udp", Transport::kUdp},
    {"udp6", Transport::kUdp6},
    {"unix", Transport::kUnix},
    {"cunix", Transport::kCunix},
    {"tcp", Transport::kTcp},
    {"tcp6", Transport::kTcp6},
}};

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlnum(char c) { return isDigit(c) || (lower(c) >= 'a' && lower(c) <= 'z'); }

// inet_pton needs a NUL-terminated string; literals are short, so a stack
// copy avoids an allocation.
template <int Family>
bool isLiteral(std::string_view text) {
  char buf[64];
  if (text.empty() || text.size() >= sizeof(buf)) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  unsigned char out[sizeof(in6_addr)];
  return inet_pton(Family, buf, out) == 1;
}

bool isIpv4Literal(std::string_view text) { return isLiteral<AF_INET>(text); }

// An IPv6 literal, optionally with a zone ("fe80::1%eth0").
bool isIpv6Literal(std::string_view text) {
  const size_t pct = text.find('%');
  if (pct != std::string_view::npos) {
    std::string_view zone = text.substr(pct + 1);
    if (zone.empty() || zone.size() > IF_NAMESIZE) return false;
    for (char c : zone) {
      if (!isAlnum(c) && c != '.' && c != '_' && c != '-') return false;
    }
    text = text.substr(0, pct);
  }
  return isLiteral<AF_INET6>(text);
}

bool looksNumeric(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return isDigit(c) || c == '.'; });
}

// RFC 1123 host name characters (plus '_', which exists in the wild).
bool isHostName(std::string_view text) {
  if (text.empty() || text.size() > 253 || text.front() == '.' || text.front() == '-') return false;
  char prev = '\0';
  for (char c : text) {
    if (!isAlnum(c) && c != '-' && c != '.' && c != '_') return false;
    if (c == '.' && prev == '.') return false;
    prev = c;
  }
  return true;
}

bool parsePort(std::string_view text, uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  uint32_t value = 0;
  for (char c : text) {
    if (!isDigit(c)) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

AddressResult fail(std::string message) { return AddressResult{std::nullopt, std::move(message)}; }

std::string portError(std::string_view text) {
  return "port must be 1..65535, got " + quoteForMessage(text);
}

// The family-neutral part: validates host (already without brackets) and the
// port text (empty = default) and fills the result.
AddressResult finishIp(Transport transport, std::string_view host, bool has_port,
                       std::string_view port_text, uint16_t default_port) {
  const bool v6 = isIpv6(transport);
  if (host.empty()) return fail("host is empty");
  uint16_t port = default_port;
  if (has_port) {
    if (!parsePort(port_text, port)) return fail(portError(port_text));
  } else if (default_port == 0) {
    return fail("a port is required");
  }
  if (isIpv6Literal(host)) {
    if (!v6) {
      return fail("IPv6 address needs protocol " +
                  std::string(transport == Transport::kTcp ? "tcp6" : "udp6"));
    }
  } else if (isIpv4Literal(host)) {
    if (v6) {
      return fail("IPv4 address needs protocol " +
                  std::string(transport == Transport::kTcp6 ? "tcp" : "udp"));
    }
  } else if (looksNumeric(host)) {
    return fail("invalid IPv4 address " + quoteForMessage(host));
  } else if (!isHostName(host)) {
    return fail("invalid host name " + quoteForMessage(host));
  }
  SocketAddress a;
  a.transport = transport;
  a.host = std::string(host);
  a.port = port;
  return AddressResult{std::move(a), {}};
}

AddressResult parseIp(Transport transport, std::string_view text, uint16_t default_port) {
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return fail("missing \"]\" in " + quoteForMessage(text));
    const std::string_view host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!isIpv6Literal(host)) return fail("invalid IPv6 address " + quoteForMessage(host));
    if (!rest.empty() && rest.front() != ':') {
      return fail("expected \":port\" after \"]\", got " + quoteForMessage(rest));
    }
    return finishIp(transport, host, !rest.empty(), rest.empty() ? rest : rest.substr(1),
                    default_port);
  }
  const size_t colons = static_cast<size_t>(std::count(text.begin(), text.end(), ':'));
  if (colons == 0) return finishIp(transport, text, false, {}, default_port);
  const size_t last = text.rfind(':');
  const std::string_view host = text.substr(0, last);
  const std::string_view port_text = text.substr(last + 1);
  if (colons == 1) return finishIp(transport, host, true, port_text, default_port);
  // Unbracketed IPv6: the reference splits at the last colon, so
  // "::1:32323" means [::1]:32323; a text that only makes sense whole
  // ("::1", "2001:db8::1") is a bare literal on the default port.
  uint16_t ignored = 0;
  if (isIpv6Literal(host) && parsePort(port_text, ignored)) {
    return finishIp(transport, host, true, port_text, default_port);
  }
  if (isIpv6Literal(text)) return finishIp(transport, text, false, {}, default_port);
  return fail("invalid IPv6 address " + quoteForMessage(text));
}

}  // namespace

std::optional<Transport> parseTransport(std::string_view name) {
  for (const auto& entry : kTransports) {
    if (equalsIgnoreCase(name, entry.name)) return entry.transport;
  }
  return std::nullopt;
}

std::string_view transportName(Transport t) {
  for (const auto& entry : kTransports) {
    if (entry.transport == t) return entry.name;
  }
  return "?";
}

bool isDatagram(Transport t) { return t == Transport::kUdp || t == Transport::kUdp6; }
bool isUnixPath(Transport t) { return t == Transport::kUnix || t == Transport::kCunix; }
bool isIpv6(Transport t) { return t == Transport::kUdp6 || t == Transport::kTcp6; }

std::string SocketAddress::display() const {
  if (isUnixPath(transport)) return path;
  std::string out;
  out.reserve(host.size() + 8);
  if (host.find(':') != std::string::npos) {
    out += '[';
    out += host;
    out += ']';
  } else {
    out += host;
  }
  out += ':';
  out += std::to_string(port);
  return out;
}

std::string SocketAddress::uri() const {
  std::string out(transportName(transport));
  out += ':';
  out += display();
  return out;
}

AddressResult parseAddress(Transport transport, std::string_view text, uint16_t default_port) {
  if (text.empty()) return fail("address is empty");
  if (isUnixPath(transport)) {
    if (text.find('\0') != std::string_view::npos) return fail("unix socket path contains a NUL byte");
    if (text.size() > kMaxUnixPathBytes) {
      return fail("unix socket path is " + std::to_string(text.size()) + " bytes, at most " +
                  std::to_string(kMaxUnixPathBytes) + " fit");
    }
    SocketAddress a;
    a.transport = transport;
    a.path = std::string(text);
    return AddressResult{std::move(a), {}};
  }
  return parseIp(transport, text, default_port);
}

AddressResult parseAddressUri(std::string_view text, Transport default_transport,
                              uint16_t default_port) {
  const size_t colon = text.find(':');
  if (colon != std::string_view::npos) {
    if (auto t = parseTransport(text.substr(0, colon))) {
      return parseAddress(*t, text.substr(colon + 1), default_port);
    }
  }
  return parseAddress(default_transport, text, default_port);
}

bool needsNameResolution(const SocketAddress& address) {
  if (isUnixPath(address.transport)) return false;
  std::string host = address.host;
  if (const size_t pct = host.find('%'); pct != std::string::npos) host.resize(pct);
  if (host == "localhost") return false;
  in_addr v4{};
  in6_addr v6{};
  return inet_pton(AF_INET, host.c_str(), &v4) != 1 && inet_pton(AF_INET6, host.c_str(), &v6) != 1;
}

bool resolveAddress(const SocketAddress& address, ResolvedAddress& out, std::string& error) {
  out = ResolvedAddress{};
  if (isUnixPath(address.transport)) {
    if (address.path.empty() || address.path.size() > kMaxUnixPathBytes) {
      error = "unix socket path must be 1.." + std::to_string(kMaxUnixPathBytes) + " bytes";
      return false;
    }
    auto* sun = reinterpret_cast<sockaddr_un*>(&out.storage);
    sun->sun_family = AF_UNIX;
    std::memcpy(sun->sun_path, address.path.data(), address.path.size());
    sun->sun_path[address.path.size()] = '\0';
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.path.size() + 1);
    out.family = AF_UNIX;
    return true;
  }

  const bool v6 = isIpv6(address.transport);
  const int family = v6 ? AF_INET6 : AF_INET;
  std::string host = address.host;
  std::string zone;
  if (v6) {
    const size_t pct = host.find('%');
    if (pct != std::string::npos) {
      zone = host.substr(pct + 1);
      host.resize(pct);
    }
  }
  if (host == "localhost") host = v6 ? "::1" : "127.0.0.1";

  if (v6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) == 1) {
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(address.port);
      if (!zone.empty()) {
        unsigned index = if_nametoindex(zone.c_str());
        if (index == 0 && !zone.empty() && zone.size() <= 9 &&
            std::all_of(zone.begin(), zone.end(), isDigit)) {
          index = static_cast<unsigned>(std::stoul(zone));
        }
        if (index == 0) {
          error = "unknown interface " + quoteForMessage(zone) + " in " + quoteForMessage(address.host);
          return false;
        }
        sin6->sin6_scope_id = index;
      }
      out.length = sizeof(sockaddr_in6);
      out.family = AF_INET6;
      return true;
    }
  } else {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out.storage);
    if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) == 1) {
      sin->sin_family = AF_INET;
      sin->sin_port = htons(address.port);
      out.length = sizeof(sockaddr_in);
      out.family = AF_INET;
      return true;
    }
  }

  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = isDatagram(address.transport) ? SOCK_DGRAM : SOCK_STREAM;
  addrinfo* list = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc != 0 || list == nullptr) {
    error = "cannot resolve " + quoteForMessage(address.host) + ": " +
            (rc != 0 ? gai_strerror(rc) : "no address");
    if (list != nullptr) freeaddrinfo(list);
    return false;
  }
  std::memcpy(&out.storage, list->ai_addr, list->ai_addrlen);
  out.length = list->ai_addrlen;
  out.family = list->ai_family;
  freeaddrinfo(list);
  if (out.family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&out.storage)->sin6_port = htons(address.port);
  } else {
    reinterpret_cast<sockaddr_in*>(&out.storage)->sin_port = htons(address.port);
  }
  return true;
}

}  // namespace rtpc
