// Address parsing, formatting and resolution: the forms the reference's
// configs and command lines use, as raw strings.

#include "shared/address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

namespace rtpc {
namespace {

TEST(TransportTest, ParsesEveryNameInAnyLetterCase) {
  struct Case {
    const char* text;
    Transport expected;
  };
  const Case cases[] = {
      {"udp", Transport::kUdp},     {"UDP", Transport::kUdp},     {"Udp6", Transport::kUdp6},
      {"unix", Transport::kUnix},   {"UNIX", Transport::kUnix},   {"cunix", Transport::kCunix},
      {"tcp", Transport::kTcp},     {"TCP6", Transport::kTcp6},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    ASSERT_TRUE(parseTransport(c.text).has_value());
    EXPECT_EQ(*parseTransport(c.text), c.expected);
  }
}

TEST(TransportTest, RejectsUnknownNames) {
  for (const char* text : {"", "sctp", "udp4", "udp ", " udp", "unix:", "u"}) {
    SCOPED_TRACE(text);
    EXPECT_FALSE(parseTransport(text).has_value());
  }
}

TEST(TransportTest, NamesRoundTripAndClassify) {
  for (Transport t : {Transport::kUdp, Transport::kUdp6, Transport::kUnix, Transport::kCunix, Transport::kTcp,
                      Transport::kTcp6}) {
    EXPECT_EQ(parseTransport(transportName(t)), t);
  }
  EXPECT_EQ(transportName(Transport::kCunix), "cunix");
  EXPECT_TRUE(isDatagram(Transport::kUdp6));
  EXPECT_FALSE(isDatagram(Transport::kTcp));
  EXPECT_TRUE(isUnixPath(Transport::kCunix));
  EXPECT_FALSE(isUnixPath(Transport::kTcp));
  EXPECT_TRUE(isIpv6(Transport::kTcp6));
  EXPECT_FALSE(isIpv6(Transport::kUdp));
}

struct ValidCase {
  Transport transport;
  const char* text;
  const char* host;
  uint16_t port;
  const char* display;
  const char* uri;
};

TEST(ParseAddressTest, AcceptsTheFormsTheReferenceWrites) {
  const ValidCase cases[] = {
      {Transport::kUdp, "192.168.222.1:44", "192.168.222.1", 44, "192.168.222.1:44", "udp:192.168.222.1:44"},
      {Transport::kUdp, "127.0.0.1", "127.0.0.1", 22222, "127.0.0.1:22222", "udp:127.0.0.1:22222"},
      {Transport::kUdp, "localhost:7000", "localhost", 7000, "localhost:7000", "udp:localhost:7000"},
      {Transport::kUdp, "relay-1.example.com", "relay-1.example.com", 22222, "relay-1.example.com:22222",
       "udp:relay-1.example.com:22222"},
      {Transport::kUdp, "10.0.0.1:65535", "10.0.0.1", 65535, "10.0.0.1:65535", "udp:10.0.0.1:65535"},
      {Transport::kUdp6, "[::1]:32323", "::1", 32323, "[::1]:32323", "udp6:[::1]:32323"},
      {Transport::kUdp6, "[::1]", "::1", 22222, "[::1]:22222", "udp6:[::1]:22222"},
      {Transport::kUdp6, "localhost:32322", "localhost", 32322, "localhost:32322", "udp6:localhost:32322"},
      {Transport::kUdp6, "::1", "::1", 22222, "[::1]:22222", "udp6:[::1]:22222"},
      {Transport::kUdp6, "2001:db8::1", "2001:db8::1", 22222, "[2001:db8::1]:22222", "udp6:[2001:db8::1]:22222"},
      // As the reference: unbracketed, the last colon separates the port.
      {Transport::kUdp6, "::1:32323", "::1", 32323, "[::1]:32323", "udp6:[::1]:32323"},
      {Transport::kUdp6, "[fe80::1%lo]:5000", "fe80::1%lo", 5000, "[fe80::1%lo]:5000", "udp6:[fe80::1%lo]:5000"},
      {Transport::kTcp, "127.0.0.1:9000", "127.0.0.1", 9000, "127.0.0.1:9000", "tcp:127.0.0.1:9000"},
      {Transport::kTcp6, "[::1]:9000", "::1", 9000, "[::1]:9000", "tcp6:[::1]:9000"},
  };
  for (const ValidCase& c : cases) {
    SCOPED_TRACE(c.text);
    const AddressResult r = parseAddress(c.transport, c.text);
    ASSERT_TRUE(r.address.has_value()) << r.error;
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.address->transport, c.transport);
    EXPECT_EQ(r.address->host, c.host);
    EXPECT_EQ(r.address->port, c.port);
    EXPECT_EQ(r.address->path, "");
    EXPECT_EQ(r.address->display(), c.display);
    EXPECT_EQ(r.address->uri(), c.uri);
  }
}

TEST(ParseAddressTest, UnixPathsAreTakenVerbatimUpToSunPathLength) {
  const AddressResult r = parseAddress(Transport::kUnix, "/var/run/rtpproxy.sock");
  ASSERT_TRUE(r.address.has_value());
  EXPECT_EQ(r.address->path, "/var/run/rtpproxy.sock");
  EXPECT_EQ(r.address->host, "");
  EXPECT_EQ(r.address->display(), "/var/run/rtpproxy.sock");
  EXPECT_EQ(r.address->uri(), "unix:/var/run/rtpproxy.sock");

  const std::string longest = "/" + std::string(kMaxUnixPathBytes - 1, 'a');
  const AddressResult fits = parseAddress(Transport::kCunix, longest);
  ASSERT_TRUE(fits.address.has_value()) << fits.error;
  EXPECT_EQ(fits.address->uri(), "cunix:" + longest);

  const AddressResult too_long = parseAddress(Transport::kUnix, longest + "b");
  EXPECT_FALSE(too_long.address.has_value());
  EXPECT_EQ(too_long.error, "unix socket path is 108 bytes, at most 107 fit");
}

struct InvalidCase {
  Transport transport;
  const char* text;
  const char* error;
};

TEST(ParseAddressTest, RejectsWithAMessageSayingWhatIsWrong) {
  const InvalidCase cases[] = {
      {Transport::kUdp, "", "address is empty"},
      {Transport::kUnix, "", "address is empty"},
      {Transport::kUdp, "127.0.0.1:99999", "port must be 1..65535, got \"99999\""},
      {Transport::kUdp, "127.0.0.1:0", "port must be 1..65535, got \"0\""},
      {Transport::kUdp, "127.0.0.1:", "port must be 1..65535, got \"\""},
      {Transport::kUdp, "127.0.0.1:12a", "port must be 1..65535, got \"12a\""},
      {Transport::kUdp, "127.0.0.1:-5", "port must be 1..65535, got \"-5\""},
      {Transport::kUdp, ":5000", "host is empty"},
      {Transport::kUdp, "1.2.3", "invalid IPv4 address \"1.2.3\""},
      {Transport::kUdp, "256.1.1.1:5", "invalid IPv4 address \"256.1.1.1\""},
      {Transport::kUdp, "bad host:5", "invalid host name \"bad host\""},
      {Transport::kUdp, "a..b", "invalid host name \"a..b\""},
      {Transport::kUdp, "[::1]:5000", "IPv6 address needs protocol udp6"},
      {Transport::kUdp, "::1", "IPv6 address needs protocol udp6"},
      {Transport::kTcp, "[::1]:5000", "IPv6 address needs protocol tcp6"},
      {Transport::kUdp6, "127.0.0.1:5000", "IPv4 address needs protocol udp"},
      {Transport::kTcp6, "127.0.0.1:5000", "IPv4 address needs protocol tcp"},
      {Transport::kUdp6, "[::1:5000", "missing \"]\" in \"[::1:5000\""},
      {Transport::kUdp6, "[::1]5000", "expected \":port\" after \"]\", got \"5000\""},
      {Transport::kUdp6, "[zz::1]:5000", "invalid IPv6 address \"zz::1\""},
      {Transport::kUdp6, "1:2:3", "invalid IPv6 address \"1:2:3\""},
      {Transport::kUdp6, "[::1]:70000", "port must be 1..65535, got \"70000\""},
  };
  for (const InvalidCase& c : cases) {
    SCOPED_TRACE(c.text);
    const AddressResult r = parseAddress(c.transport, c.text);
    EXPECT_FALSE(r.address.has_value());
    EXPECT_EQ(r.error, c.error);
  }
}

TEST(ParseAddressTest, DefaultPortZeroMakesThePortMandatory) {
  EXPECT_EQ(parseAddress(Transport::kTcp, "127.0.0.1", 0).error, "a port is required");
  EXPECT_EQ(parseAddress(Transport::kTcp6, "[::1]", 0).error, "a port is required");
  const AddressResult r = parseAddress(Transport::kTcp, "127.0.0.1:12131", 0);
  ASSERT_TRUE(r.address.has_value());
  EXPECT_EQ(r.address->port, 12131);
}

TEST(ParseAddressTest, QuotesHostileTextOnOneLine) {
  const AddressResult r = parseAddress(Transport::kUdp, "a\nb\"c:5");
  EXPECT_EQ(r.error, "invalid host name \"a\\x0ab\\\"c\"");
}

TEST(ParseAddressUriTest, PrefixSelectsTheTransportAndBareTextTakesTheDefault) {
  struct Case {
    const char* text;
    Transport fallback;
    const char* uri;
  };
  const Case cases[] = {
      {"/var/run/rtp_cluster.sock", Transport::kUnix, "unix:/var/run/rtp_cluster.sock"},
      {"unix:/tmp/a.sock", Transport::kUdp, "unix:/tmp/a.sock"},
      {"cunix:/tmp/a.sock", Transport::kUnix, "cunix:/tmp/a.sock"},
      {"UDP:127.0.0.1:5", Transport::kUnix, "udp:127.0.0.1:5"},
      {"udp6:[::1]:5", Transport::kUnix, "udp6:[::1]:5"},
      {"tcp:127.0.0.1", Transport::kUnix, "tcp:127.0.0.1:22222"},
      {"tcp6:[::1]:7", Transport::kUnix, "tcp6:[::1]:7"},
      {"localhost:5000", Transport::kUdp, "udp:localhost:5000"},
      {"::1", Transport::kUdp6, "udp6:[::1]:22222"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const AddressResult r = parseAddressUri(c.text, c.fallback);
    ASSERT_TRUE(r.address.has_value()) << r.error;
    EXPECT_EQ(r.address->uri(), c.uri);
  }
  const AddressResult admin = parseAddressUri("tcp:127.0.0.1", Transport::kUnix, kDefaultAdminPort);
  ASSERT_TRUE(admin.address.has_value());
  EXPECT_EQ(admin.address->port, kDefaultAdminPort);
  EXPECT_EQ(parseAddressUri("udp:", Transport::kUnix).error, "address is empty");
}

std::string numericHost(const ResolvedAddress& r) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (r.family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(r.sa())->sin_addr, buf, sizeof(buf));
  } else if (r.family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(r.sa())->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

uint16_t portOf(const ResolvedAddress& r) {
  return ntohs(r.family == AF_INET ? reinterpret_cast<const sockaddr_in*>(r.sa())->sin_port
                                   : reinterpret_cast<const sockaddr_in6*>(r.sa())->sin6_port);
}

TEST(ResolveAddressTest, NumericAndLocalhostResolveWithoutTheResolver) {
  struct Case {
    const char* uri;
    int family;
    const char* host;
    uint16_t port;
  };
  const Case cases[] = {
      {"udp:127.0.0.1:5000", AF_INET, "127.0.0.1", 5000},
      {"udp:localhost:5001", AF_INET, "127.0.0.1", 5001},
      {"udp6:[::1]:5002", AF_INET6, "::1", 5002},
      {"tcp6:localhost:5003", AF_INET6, "::1", 5003},
      {"tcp:10.1.2.3", AF_INET, "10.1.2.3", 22222},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.uri);
    const AddressResult a = parseAddressUri(c.uri, Transport::kUdp);
    ASSERT_TRUE(a.address.has_value()) << a.error;
    ResolvedAddress r;
    std::string error;
    ASSERT_TRUE(resolveAddress(*a.address, r, error)) << error;
    EXPECT_EQ(r.family, c.family);
    EXPECT_EQ(r.length, c.family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
    EXPECT_EQ(numericHost(r), c.host);
    EXPECT_EQ(portOf(r), c.port);
  }
}

TEST(ResolveAddressTest, UnixPathFillsSunPath) {
  SocketAddress a;
  a.transport = Transport::kUnix;
  a.path = "/tmp/x.sock";
  ResolvedAddress r;
  std::string error;
  ASSERT_TRUE(resolveAddress(a, r, error)) << error;
  EXPECT_EQ(r.family, AF_UNIX);
  EXPECT_STREQ(reinterpret_cast<const sockaddr_un*>(r.sa())->sun_path, "/tmp/x.sock");
  EXPECT_EQ(r.length, offsetof(sockaddr_un, sun_path) + a.path.size() + 1);

  a.path.assign(kMaxUnixPathBytes + 1, 'x');
  EXPECT_FALSE(resolveAddress(a, r, error));
  EXPECT_EQ(error, "unix socket path must be 1..107 bytes");
}

TEST(ResolveAddressTest, UnknownHostFailsWithAMessage) {
  SocketAddress a;
  a.transport = Transport::kUdp;
  a.host = "no-such-host.invalid";
  a.port = 1;
  ResolvedAddress r;
  std::string error;
  EXPECT_FALSE(resolveAddress(a, r, error));
  EXPECT_EQ(error.rfind("cannot resolve \"no-such-host.invalid\": ", 0), 0u) << error;
}

TEST(ResolveAddressTest, UnknownZoneFails) {
  SocketAddress a;
  a.transport = Transport::kUdp6;
  a.host = "fe80::1%nosuchif0";
  a.port = 1;
  ResolvedAddress r;
  std::string error;
  EXPECT_FALSE(resolveAddress(a, r, error));
  EXPECT_EQ(error, "unknown interface \"nosuchif0\" in \"fe80::1%nosuchif0\"");
}

}  // namespace
}  // namespace rtpc
