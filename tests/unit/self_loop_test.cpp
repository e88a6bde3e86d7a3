// isSelfLoop: a member address that is its own cluster's control socket.

#include "shared/self_loop.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rtpc {
namespace {

SocketAddress uri(const std::string& text) {
  const AddressResult r = parseAddressUri(text, Transport::kUdp);
  EXPECT_TRUE(r.address.has_value()) << text << ": " << r.error;
  return r.address.value_or(SocketAddress{});
}

struct Case {
  const char* control;
  const char* member;
  bool loop;
};

TEST(SelfLoop, Table) {
  const std::vector<std::string> local = {"192.0.2.10", "2001:db8::10"};
  const Case cases[] = {
      // IP: the same address and port.
      {"udp:127.0.0.1:22222", "udp:127.0.0.1:22222", true},
      {"udp:127.0.0.1:22222", "udp:127.0.0.1:22223", false},
      {"udp:127.0.0.1:22222", "udp:127.0.0.2:22222", false},  // another loopback address, another socket
      // localhost is the loopback address, either way round.
      {"udp:127.0.0.1:22222", "udp:localhost:22222", true},
      {"udp:LOCALHOST:22222", "udp:127.0.0.1:22222", true},
      {"udp6:[::1]:22222", "udp6:localhost:22222", true},
      {"udp6:[::1]:22222", "udp6:[::1]:22222", true},
      // A control bound to the wildcard is reached through loopback and every local address.
      {"udp:0.0.0.0:22222", "udp:127.0.0.1:22222", true},
      {"udp:0.0.0.0:22222", "udp:localhost:22222", true},
      {"udp:0.0.0.0:22222", "udp:192.0.2.10:22222", true},
      {"udp:0.0.0.0:22222", "udp:192.0.2.11:22222", false},  // another host
      {"udp:0.0.0.0:22222", "udp:0.0.0.0:22222", true},
      {"udp6:[::]:22222", "udp6:[::1]:22222", true},
      {"udp6:[::]:22222", "udp6:[2001:db8::10]:22222", true},
      {"udp6:[::]:22222", "udp:127.0.0.1:22222", false},  // a V6ONLY socket
      // Sending to the wildcard reaches this host.
      {"udp:127.0.0.1:22222", "udp:0.0.0.0:22222", true},
      {"udp:192.0.2.10:22222", "udp:0.0.0.0:22222", true},
      // IPv4-mapped IPv6 is the IPv4 address.
      {"udp:127.0.0.1:22222", "udp6:[::ffff:127.0.0.1]:22222", true},
      // udp and udp6 are both datagram; tcp is another socket.
      {"udp:127.0.0.1:22222", "tcp:127.0.0.1:22222", false},
      {"tcp:127.0.0.1:22222", "tcp:127.0.0.1:22222", true},
      {"tcp:0.0.0.0:22222", "tcp:localhost:22222", true},
      {"tcp6:[::1]:22222", "tcp6:[::1]:22222", true},
      {"tcp:127.0.0.1:22222", "udp:127.0.0.1:22222", false},
      // A host name is not judged without DNS.
      {"udp:127.0.0.1:22222", "udp:relay.example.com:22222", false},
      // unix paths, unix and cunix alike, normalised.
      {"unix:/run/rtpc/c1.sock", "unix:/run/rtpc/c1.sock", true},
      {"cunix:/run/rtpc/c1.sock", "unix:/run/rtpc/c1.sock", true},
      {"unix:/run/rtpc/c1.sock", "cunix:/run/rtpc/./c1.sock", true},
      {"unix:/run/rtpc/c1.sock", "unix:/run//rtpc/../rtpc/c1.sock", true},
      {"unix:/run/rtpc/c1.sock", "unix:/run/rtpc/c2.sock", false},
      {"unix:/run/rtpc/c1.sock", "udp:127.0.0.1:22222", false},
      {"udp:127.0.0.1:22222", "unix:/run/rtpc/c1.sock", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(isSelfLoop(uri(c.control), uri(c.member), local), c.loop) << c.control << " <- " << c.member;
  }
}

TEST(SelfLoop, ResolvedAddress) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(22222);
  inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
  const auto* sa = reinterpret_cast<const sockaddr*>(&in);
  EXPECT_TRUE(isSelfLoopResolved(uri("udp:0.0.0.0:22222"), Transport::kUdp, sa));
  EXPECT_TRUE(isSelfLoopResolved(uri("udp:localhost:22222"), Transport::kUdp, sa));
  EXPECT_FALSE(isSelfLoopResolved(uri("tcp:127.0.0.1:22222"), Transport::kUdp, sa));
  in.sin_port = htons(22223);
  EXPECT_FALSE(isSelfLoopResolved(uri("udp:127.0.0.1:22222"), Transport::kUdp, sa));
  EXPECT_FALSE(isSelfLoopResolved(uri("udp:127.0.0.1:22222"), Transport::kUdp, nullptr));
}

TEST(SelfLoop, ErrorNamesTheMemberAndBothAddresses) {
  EXPECT_EQ(selfLoopError(uri("udp:0.0.0.0:22222"), "r 1", uri("udp:127.0.0.1:22222"), {}).value_or(""),
            "rtpproxy \"r 1\" address udp:127.0.0.1:22222 is the cluster's own control socket "
            "udp:0.0.0.0:22222 (its commands would loop back to the cluster)");
  EXPECT_FALSE(selfLoopError(uri("udp:0.0.0.0:22222"), "r1", uri("udp:127.0.0.1:22223")).has_value());
}

TEST(SelfLoop, ThisHostHasAddresses) {
  const std::vector<std::string> local = thisHostAddresses();
  EXPECT_NE(std::find(local.begin(), local.end(), "127.0.0.1"), local.end());
}

}  // namespace
}  // namespace rtpc
