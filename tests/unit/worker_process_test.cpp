// The supervisor <-> worker channel messages: framing and member sets, which
// go through the admin parser on the worker's side.

#include "worker/worker_process.h"

#include <gtest/gtest.h>

#include "shared/log_quote.h"

namespace rtpc {
namespace {

MemberConfig makeMember(const std::string& name, Transport t, const std::string& where, uint16_t port = 0) {
  MemberConfig m;
  m.name = name;
  m.address.transport = t;
  if (isUnixPath(t)) {
    m.address.path = where;
  } else {
    m.address.host = where;
    m.address.port = port;
  }
  m.weight = 7;
  m.capacity = 42;
  return m;
}

TEST(WorkerProcessMessages, ChannelFramingTable) {
  struct Case {
    std::string_view wire;
    bool ok;
    uint64_t id;
    std::string_view body;
  };
  const Case cases[] = {
      {"1 ping", true, 1, "ping"},
      {"18446744073709551615 OK", true, UINT64_MAX, "OK"},
      {"7 ERROR: r1: RTPproxy not found", true, 7, "ERROR: r1: RTPproxy not found"},
      {"7 ", true, 7, ""},
      {"7", false, 0, ""},
      {" 7 OK", false, 0, ""},
      {"x7 OK", false, 0, ""},
      {"18446744073709551616 OK", false, 0, ""},
      {"", false, 0, ""},
  };
  for (const Case& c : cases) {
    const std::optional<ChannelMessage> m = parseChannelMessage(c.wire);
    ASSERT_EQ(m.has_value(), c.ok) << c.wire;
    if (!m) continue;
    EXPECT_EQ(m->id, c.id) << c.wire;
    EXPECT_EQ(m->body, c.body) << c.wire;
  }
}

TEST(WorkerProcessMessages, EveryMemberFieldSurvivesTheApplyRoundTrip) {
  ClusterConfig cluster;
  cluster.name = "c1";
  cluster.members.push_back(makeMember("udp4", Transport::kUdp, "127.0.0.1", 4000));
  cluster.members.push_back(makeMember("udp6", Transport::kUdp6, "::1", 4001));
  cluster.members.push_back(makeMember("local", Transport::kUnix, "/run/rtpp.sock"));
  cluster.members.push_back(makeMember("stream", Transport::kTcp, "192.0.2.9", 22222));
  cluster.members[1].status = AdminStatus::kSuspended;
  cluster.members[2].weight = 0;
  cluster.members[3].wan_address = "198.51.100.1";
  cluster.members[3].lan_address = "10.0.0.1";
  cluster.members[3].cmd_out_address = "192.0.2.1";

  ClusterConfig parsed;
  parsed.name = "c1";
  parsed.members.push_back(makeMember("stale", Transport::kUdp, "127.0.0.1", 1));
  EXPECT_EQ(parseApplyBody(applyRequestBody(cluster), parsed), "");
  EXPECT_EQ(parsed, cluster);
}

// Names are free text (REFERENCE.md section 2): spaces, commas, '=', quotes
// and UTF-8 must survive the supervisor -> worker apply message.
TEST(WorkerProcessMessages, NamesWithSpacesCommasAndUtf8SurviveTheApplyRoundTrip) {
  ClusterConfig cluster;
  cluster.name = "Core 1";
  cluster.members.push_back(makeMember("relay 2", Transport::kUdp, "127.0.0.1", 4000));
  cluster.members.push_back(makeMember("a,b=c \"d\" \\e", Transport::kUdp, "127.0.0.1", 4001));
  cluster.members.push_back(makeMember("caf\xc3\xa9 \xe4\xb8\xad\xe7\xbb\xa7", Transport::kUnix, "/run/a b.sock"));
  cluster.members.push_back(makeMember(std::string(kMaxNameBytes, 'n'), Transport::kUdp, "127.0.0.1", 4002));
  cluster.members[0].capacity = 5000000;
  ClusterConfig parsed;
  EXPECT_EQ(parseApplyBody(applyRequestBody(cluster), parsed), "");
  EXPECT_EQ(parsed.members, cluster.members);
}

// A free-text name in a key=value log line: bare when it is one token,
// quoted when it could split the line.
TEST(WorkerProcessMessages, LogNameKeepsAKeyValueLineParseable) {
  EXPECT_EQ(fmt::format("cluster={} x=1", logName("c1")), "cluster=c1 x=1");
  EXPECT_EQ(fmt::format("cluster={} x=1", logName("caf\xc3\xa9")), "cluster=caf\xc3\xa9 x=1");
  EXPECT_EQ(fmt::format("cluster={} x=1", logName("Core 1")), "cluster=\"Core 1\" x=1");
  EXPECT_EQ(fmt::format("cluster={}", logName("a=b")), "cluster=\"a=b\"");
  EXPECT_EQ(fmt::format("cluster={}", logName("say \"hi\" \\")), "cluster=\"say \\\"hi\\\" \\\\\"");
  EXPECT_EQ(fmt::format("cluster={}", logName("")), "cluster=\"\"");
}

TEST(WorkerProcessMessages, AnEmptyMemberSetIsValidAndBadOnesAreRefusedWhole) {
  ClusterConfig parsed;
  parsed.members.push_back(makeMember("stale", Transport::kUdp, "127.0.0.1", 1));
  EXPECT_EQ(parseApplyBody("apply", parsed), "");
  EXPECT_TRUE(parsed.members.empty());

  EXPECT_EQ(parseApplyBody("applyx", parsed), "malformed apply request");
  EXPECT_EQ(parseApplyBody("apply\nname=a\tprotocol=udp\taddress=127.0.0.1:1\tcapacity=1\tweight=1\n"
                           "name=a\tprotocol=udp\taddress=127.0.0.1:2\tcapacity=1\tweight=1",
                           parsed),
            "a: RTPproxy given twice");
  EXPECT_EQ(parseApplyBody("apply\nname=a\tprotocol=udp\taddress=127.0.0.1:1\tcapacity=0\tweight=1", parsed)
                .rfind("modify add: capacity must be an integer >= 1", 0),
            0u);
}

}  // namespace
}  // namespace rtpc
