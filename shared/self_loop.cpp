#include "shared/self_loop.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>

#include "shared/quote.h"

namespace rtpc {
namespace {

// An IP address in one comparable form: IPv4 (also IPv4-mapped IPv6) as
// family AF_INET.
struct Ip {
  int family = AF_UNSPEC;
  std::array<unsigned char, 16> bytes{};
  bool operator==(const Ip&) const = default;
};

Ip fromV4(const in_addr& a) {
  Ip ip;
  ip.family = AF_INET;
  std::memcpy(ip.bytes.data(), &a, 4);
  return ip;
}

Ip fromV6(const in6_addr& a) {
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    in_addr v4{};
    std::memcpy(&v4, a.s6_addr + 12, 4);
    return fromV4(v4);
  }
  Ip ip;
  ip.family = AF_INET6;
  std::memcpy(ip.bytes.data(), &a, 16);
  return ip;
}

std::optional<Ip> parseIp(const std::string& text) {
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return fromV4(v4);
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return fromV6(v6);
  return std::nullopt;
}

bool isLocalhostName(const std::string& host) {
  if (host.size() != 9) return false;
  for (size_t i = 0; i < host.size(); ++i) {
    char c = host[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != "localhost"[i]) return false;
  }
  return true;
}

bool isLoopback(const Ip& ip) {
  if (ip.family == AF_INET) return ip.bytes[0] == 127;
  static const std::array<unsigned char, 16> kV6Loopback{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return ip.family == AF_INET6 && ip.bytes == kV6Loopback;
}

bool isWildcard(const Ip& ip) {
  return std::all_of(ip.bytes.begin(), ip.bytes.end(), [](unsigned char b) { return b == 0; });
}

// The addresses a host written in the config stands for: "localhost" is
// both loopbacks (resolveAddress picks one per family).
std::vector<Ip> hostIps(const std::string& host) {
  if (isLocalhostName(host)) {
    std::vector<Ip> out;
    out.push_back(*parseIp("127.0.0.1"));
    out.push_back(*parseIp("::1"));
    return out;
  }
  if (auto ip = parseIp(host)) return {*ip};
  return {};
}

bool isLocal(const Ip& ip, const std::vector<std::string>& local_addresses) {
  if (isLoopback(ip) || isWildcard(ip)) return true;
  return std::any_of(local_addresses.begin(), local_addresses.end(), [&](const std::string& text) {
    const auto local = parseIp(text);
    return local && *local == ip;
  });
}

// Does a datagram or connection sent to `member` arrive at a socket bound to `control`?
bool reaches(const Ip& member, const Ip& control, const std::vector<std::string>& local_addresses) {
  if (member == control) return true;
  // Sending to 0.0.0.0 / :: reaches this host, as loopback does.
  if (isWildcard(member)) return isLocal(control, local_addresses);
  if (isWildcard(control)) {
    // A wildcard bind takes its own family only (IPv6 sockets are V6ONLY).
    return member.family == control.family && isLocal(member, local_addresses);
  }
  return false;
}

std::string normalPath(const std::string& path) {
  std::string p = std::filesystem::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

bool sameSocketKind(Transport control, Transport member) {
  if (isUnixPath(control) || isUnixPath(member)) return isUnixPath(control) && isUnixPath(member);
  return isDatagram(control) == isDatagram(member);
}

bool controlReached(const SocketAddress& control, uint16_t port, const std::vector<Ip>& member_ips,
                    const std::vector<std::string>& local_addresses) {
  if (port != control.port) return false;
  for (const Ip& c : hostIps(control.host)) {
    for (const Ip& m : member_ips) {
      if (reaches(m, c, local_addresses)) return true;
    }
  }
  return false;
}

}  // namespace

bool isSelfLoop(const SocketAddress& control, const SocketAddress& member,
                const std::vector<std::string>& local_addresses) {
  if (!sameSocketKind(control.transport, member.transport)) return false;
  if (isUnixPath(control.transport)) return normalPath(control.path) == normalPath(member.path);
  return controlReached(control, member.port, hostIps(member.host), local_addresses);
}

bool isSelfLoopResolved(const SocketAddress& control, Transport member_transport, const sockaddr* member,
                        const std::vector<std::string>& local_addresses) {
  if (member == nullptr || !sameSocketKind(control.transport, member_transport)) return false;
  if (member->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(member);
    return controlReached(control, ntohs(in->sin_port), {fromV4(in->sin_addr)}, local_addresses);
  }
  if (member->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(member);
    return controlReached(control, ntohs(in6->sin6_port), {fromV6(in6->sin6_addr)}, local_addresses);
  }
  return false;
}

std::optional<std::string> selfLoopError(const SocketAddress& control, const std::string& member_name,
                                         const SocketAddress& member,
                                         const std::vector<std::string>& local_addresses) {
  if (!isSelfLoop(control, member, local_addresses)) return std::nullopt;
  return "rtpproxy " + quoteForMessage(member_name) + " address " + member.uri() +
         " is the cluster's own control socket " + control.uri() +
         " (its commands would loop back to the cluster)";
}

std::optional<std::string> selfLoopError(const SocketAddress& control, const std::string& member_name,
                                         const SocketAddress& member) {
  const auto control_ip = parseIp(control.host);
  const bool wildcard = !isUnixPath(control.transport) && control_ip && isWildcard(*control_ip);
  return selfLoopError(control, member_name, member, wildcard ? thisHostAddresses() : std::vector<std::string>{});
}

std::vector<std::string> thisHostAddresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, text, sizeof text);
    } else {
      continue;
    }
    out.emplace_back(text);
  }
  freeifaddrs(list);
  return out;
}

}  // namespace rtpc
