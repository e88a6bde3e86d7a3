// I / Ib / Il and G / Gv replies: parse, merge across members and format back
// byte for byte as PROTOCOL.md section 4 shows them.

#include "shared/rtpp_stats.h"

#include <gtest/gtest.h>

#include <string>

namespace rtpc {
namespace {

const char kInfoZero[] =
    "sessions created: 0\nactive sessions: 0\nactive streams: 0\npackets received: 0\n"
    "packets transmitted: 0\n";
const char kInfoZeroLoad[] =
    "sessions created: 0\nactive sessions: 0\nactive streams: 0\npackets received: 0\n"
    "packets transmitted: 0\naverage load: 0.000000\n";

TEST(InfoReply, ParsesTheObservedReplies) {
  InfoStats s;
  s.sessions_created = 99;
  ASSERT_TRUE(parseInfoReply(kInfoZero, s));
  EXPECT_EQ(s.sessions_created, 0u);
  EXPECT_FALSE(s.has_load);

  ASSERT_TRUE(parseInfoReply(kInfoZeroLoad, s));
  EXPECT_TRUE(s.has_load);
  EXPECT_EQ(s.average_load, 0.0);
}

TEST(InfoReply, ReadsEveryFieldIntoItsPlace) {
  InfoStats s;
  ASSERT_TRUE(parseInfoReply(
      "sessions created: 12\nactive sessions: 5\nactive streams: 10\npackets received: 123456789012\n"
      "packets transmitted: 7\naverage load: 0.250000\n",
      s));
  EXPECT_EQ(s.sessions_created, 12u);
  EXPECT_EQ(s.active_sessions, 5u);
  EXPECT_EQ(s.active_streams, 10u);
  EXPECT_EQ(s.packets_received, 123456789012u);
  EXPECT_EQ(s.packets_transmitted, 7u);
  EXPECT_DOUBLE_EQ(s.average_load, 0.25);
}

TEST(InfoReply, ToleratesCrlfAndUnknownLines) {
  InfoStats s;
  ASSERT_TRUE(parseInfoReply("sessions created: 3\r\nactive sessions: 2\r\nnew counter: x\r\n\r\n", s));
  EXPECT_EQ(s.sessions_created, 3u);
  EXPECT_EQ(s.active_sessions, 2u);
}

TEST(InfoReply, RejectsBadValuesAndMissingActiveSessions) {
  InfoStats s;
  s.active_sessions = 42;
  EXPECT_FALSE(parseInfoReply("", s));
  EXPECT_FALSE(parseInfoReply("E18\n", s));
  EXPECT_FALSE(parseInfoReply("sessions created: 1\nactive streams: 2\n", s));
  EXPECT_FALSE(parseInfoReply("sessions created: 1\nactive sessions: x\n", s));
  EXPECT_FALSE(parseInfoReply("sessions created: 1\nactive sessions: -1\n", s));
  EXPECT_FALSE(parseInfoReply("active sessions: 1\naverage load: zero\n", s));
  EXPECT_FALSE(parseInfoReply("active sessions: 99999999999999999999999\n", s));
  EXPECT_EQ(s.active_sessions, 42u);  // left alone on failure
}

TEST(InfoReply, MergesMembersBySumming) {
  InfoStats a, b;
  ASSERT_TRUE(parseInfoReply(
      "sessions created: 10\nactive sessions: 4\nactive streams: 8\npackets received: 100\n"
      "packets transmitted: 90\n",
      a));
  ASSERT_TRUE(parseInfoReply(
      "sessions created: 5\nactive sessions: 1\nactive streams: 2\npackets received: 50\n"
      "packets transmitted: 40\naverage load: 0.500000\n",
      b));
  a += b;
  EXPECT_EQ(a.sessions_created, 15u);
  EXPECT_EQ(a.active_sessions, 5u);
  EXPECT_EQ(a.active_streams, 10u);
  EXPECT_EQ(a.packets_received, 150u);
  EXPECT_EQ(a.packets_transmitted, 130u);
  EXPECT_DOUBLE_EQ(a.average_load, 0.5);
  EXPECT_TRUE(a.has_load);

  ReplyBuffer out;
  ASSERT_TRUE(formatInfoReply(a, false, out));
  EXPECT_EQ(out.view(),
            "sessions created: 15\nactive sessions: 5\nactive streams: 10\npackets received: 150\n"
            "packets transmitted: 130\n");
}

TEST(InfoReply, FormatsExactlyAsRtpproxy) {
  InfoStats s;
  ReplyBuffer out;
  ASSERT_TRUE(formatInfoReply(s, false, out));
  EXPECT_EQ(out.view(), kInfoZero);
  out.clear();
  ASSERT_TRUE(formatInfoReply(s, true, out));
  EXPECT_EQ(out.view(), kInfoZeroLoad);

  s.average_load = 1.0 / 3.0;
  s.packets_received = UINT64_MAX;
  out.clear();
  ASSERT_TRUE(formatInfoReply(s, true, out));
  EXPECT_EQ(out.view(),
            "sessions created: 0\nactive sessions: 0\nactive streams: 0\n"
            "packets received: 18446744073709551615\npackets transmitted: 0\naverage load: 0.333333\n");
}

TEST(InfoReply, ParseThenFormatIsByteExact) {
  for (const char* text : {kInfoZero, kInfoZeroLoad}) {
    InfoStats s;
    ASSERT_TRUE(parseInfoReply(text, s));
    ReplyBuffer out;
    ASSERT_TRUE(formatInfoReply(s, s.has_load, out));
    EXPECT_EQ(out.view(), text);
  }
}

TEST(InfoReply, FormatRollsBackOnOverflow) {
  ReplyBuffer out;
  ASSERT_TRUE(out.append(std::string(kReplyBufferBytes - 30, 'x')));
  EXPECT_FALSE(formatInfoReply(InfoStats{}, true, out));
  EXPECT_EQ(out.size(), kReplyBufferBytes - 30);
}

TEST(StatNames, DoublesAreTotalDurationAndPpsIn) {
  EXPECT_TRUE(isDoubleStat("total_duration"));
  EXPECT_TRUE(isDoubleStat("pps_in"));
  EXPECT_FALSE(isDoubleStat("nsess_created"));
  EXPECT_FALSE(isDoubleStat("rtpa_nlost"));
  EXPECT_FALSE(isDoubleStat("nosuch"));
}

TEST(StatNames, KnowsEverySection4Counter) {
  for (const char* name :
       {"nsess_created", "nsess_destroyed", "nsess_timeout", "nsess_complete", "nsess_nortp", "nsess_owrtp",
        "nsess_nortcp", "nsess_owrtcp", "nplrs_created", "nplrs_destroyed", "npkts_rcvd", "npkts_played",
        "npkts_relayed", "npkts_resizer_in", "npkts_resizer_out", "npkts_resizer_discard", "npkts_discard",
        "total_duration", "ncmds_rcvd", "ncmds_rcvd_ndups", "ncmds_succd", "ncmds_errs", "ncmds_repld",
        "rtpa_nsent", "rtpa_nrcvd", "rtpa_ndups", "rtpa_nlost", "rtpa_perrs", "pps_in"}) {
    EXPECT_TRUE(isKnownStat(name)) << name;
  }
  EXPECT_FALSE(isKnownStat("nosuch"));
  EXPECT_FALSE(isKnownStat(""));
  EXPECT_FALSE(isKnownStat("nsess_created "));
}

RtppCommand statsCommand(const char* wire) {
  RtppCommand c;
  const ParseResult r = parseCommand(wire, Framing::kStream, c);
  EXPECT_TRUE(r.ok) << wire;
  return c;
}

struct StatsCase {
  const char* command;
  const char* reply;
};

class StatsRoundTrip : public ::testing::TestWithParam<StatsCase> {};

TEST_P(StatsRoundTrip, ParseThenFormatIsByteExact) {
  const StatsCase& tc = GetParam();
  // The text must outlive the command: keep it in a string for the test.
  const std::string wire = tc.command;
  RtppCommand cmd;
  ASSERT_TRUE(parseCommand(wire, Framing::kStream, cmd).ok);
  StatsValues v;
  ASSERT_TRUE(parseStatsReply(cmd, tc.reply, v)) << tc.reply;
  EXPECT_EQ(v.count, cmd.extra_count);
  ReplyBuffer out;
  ASSERT_TRUE(formatStatsReply(cmd, v, out));
  EXPECT_EQ(std::string(out.view()) + "\n", tc.reply);
}

INSTANTIATE_TEST_SUITE_P(
    ProtocolMd, StatsRoundTrip,
    ::testing::Values(
        StatsCase{"G nsess_created nsess_destroyed ncmds_rcvd pps_in total_duration", "0 0 14 0.000000 0.000000\n"},
        StatsCase{"Gv nsess_created npkts_rcvd total_duration pps_in",
                  "nsess_created=0 npkts_rcvd=0 total_duration=0.000000 pps_in=0.000000\n"},
        StatsCase{"G nsess_created", "20\n"},
        StatsCase{"G", "\n"},
        StatsCase{"Gv", "\n"},
        StatsCase{"GV total_duration npkts_rcvd", "total_duration=12345.678900 npkts_rcvd=18446744073709551615\n"}));

TEST(StatsReply, ValuesHaveTheRightKind) {
  const RtppCommand cmd = statsCommand("G ncmds_rcvd pps_in total_duration");
  StatsValues v;
  ASSERT_TRUE(parseStatsReply(cmd, "14 2.500000 60.000000\n", v));
  ASSERT_EQ(v.count, 3);
  EXPECT_FALSE(v.values[0].is_double);
  EXPECT_EQ(v.values[0].integer, 14u);
  EXPECT_TRUE(v.values[1].is_double);
  EXPECT_DOUBLE_EQ(v.values[1].real, 2.5);
  EXPECT_TRUE(v.values[2].is_double);
  EXPECT_DOUBLE_EQ(v.values[2].real, 60.0);
}

TEST(StatsReply, RejectsMismatches) {
  const RtppCommand g = statsCommand("G nsess_created pps_in");
  const RtppCommand gv = statsCommand("Gv nsess_created pps_in");
  StatsValues v;
  v.count = 7;
  EXPECT_FALSE(parseStatsReply(g, "0\n", v));                      // too few
  EXPECT_FALSE(parseStatsReply(g, "0 0.000000 1\n", v));           // too many
  EXPECT_FALSE(parseStatsReply(g, "E68\n", v));
  EXPECT_FALSE(parseStatsReply(g, "0.5 0.000000\n", v));           // integer counter with a fraction
  EXPECT_FALSE(parseStatsReply(g, "-1 0.000000\n", v));
  EXPECT_FALSE(parseStatsReply(g, "0 x\n", v));
  EXPECT_FALSE(parseStatsReply(g, "nsess_created=0 pps_in=0.000000\n", v));  // names without v
  EXPECT_FALSE(parseStatsReply(gv, "0 0.000000\n", v));                     // v without names
  EXPECT_FALSE(parseStatsReply(gv, "pps_in=0.000000 nsess_created=0\n", v));  // order swapped
  EXPECT_FALSE(parseStatsReply(gv, "nsess_created= pps_in=0.000000\n", v));
  EXPECT_FALSE(parseStatsReply(gv, "nsess_createdd=0 pps_in=0.000000\n", v));
  EXPECT_FALSE(parseStatsReply(g, "", v));
  EXPECT_EQ(v.count, 7);  // left alone on failure

  const RtppCommand q = statsCommand("Q call ftag ttag ttl");
  EXPECT_FALSE(parseStatsReply(q, "60\n", v));
}

TEST(StatsReply, MergesMembersKeepingOrderAndFormat) {
  const RtppCommand cmd = statsCommand("Gv npkts_rcvd pps_in ncmds_rcvd total_duration");
  StatsValues a, b;
  ASSERT_TRUE(parseStatsReply(cmd, "npkts_rcvd=10 pps_in=1.250000 ncmds_rcvd=3 total_duration=0.500000\n", a));
  ASSERT_TRUE(parseStatsReply(cmd, "npkts_rcvd=5 pps_in=2.000000 ncmds_rcvd=4 total_duration=100.250000\n", b));
  ASSERT_TRUE(addStats(a, b));
  ReplyBuffer out;
  ASSERT_TRUE(formatStatsReply(cmd, a, out));
  EXPECT_EQ(out.view(), "npkts_rcvd=15 pps_in=3.250000 ncmds_rcvd=7 total_duration=100.750000");

  const RtppCommand plain = statsCommand("G npkts_rcvd pps_in ncmds_rcvd total_duration");
  out.clear();
  ASSERT_TRUE(formatStatsReply(plain, a, out));
  EXPECT_EQ(out.view(), "15 3.250000 7 100.750000");
}

TEST(StatsReply, AddRefusesDifferentShapes) {
  const RtppCommand two = statsCommand("G nsess_created pps_in");
  const RtppCommand one = statsCommand("G nsess_created");
  const RtppCommand swapped = statsCommand("G pps_in nsess_created");
  StatsValues a, b, c;
  ASSERT_TRUE(parseStatsReply(two, "1 1.000000", a));
  ASSERT_TRUE(parseStatsReply(one, "1", b));
  ASSERT_TRUE(parseStatsReply(swapped, "1.000000 1", c));
  EXPECT_FALSE(addStats(a, b));
  EXPECT_FALSE(addStats(a, c));
  EXPECT_EQ(a.values[0].integer, 1u);
}

TEST(StatsReply, FormatRefusesACountMismatchAndRollsBackOnOverflow) {
  const RtppCommand cmd = statsCommand("Gv nsess_created nsess_destroyed");
  StatsValues v;
  v.count = 1;
  ReplyBuffer out;
  EXPECT_FALSE(formatStatsReply(cmd, v, out));
  EXPECT_TRUE(out.empty());

  v.count = 2;
  ASSERT_TRUE(out.append(std::string(kReplyBufferBytes - 20, 'x')));
  EXPECT_FALSE(formatStatsReply(cmd, v, out));
  EXPECT_EQ(out.size(), kReplyBufferBytes - 20);
}

TEST(StatsReply, TwentyTwoNamesFitOneReply) {
  std::string wire = "Gv";
  std::string reply;
  for (int i = 0; i < 22; ++i) {
    wire += " npkts_resizer_discard";
    reply += (i ? " " : "") + std::string("npkts_resizer_discard=18446744073709551615");
  }
  RtppCommand cmd;
  ASSERT_TRUE(parseCommand(wire, Framing::kStream, cmd).ok);
  StatsValues v;
  ASSERT_TRUE(parseStatsReply(cmd, reply, v));
  EXPECT_EQ(v.count, 22);
  ReplyBuffer out;
  ASSERT_TRUE(formatStatsReply(cmd, v, out));
  EXPECT_EQ(out.view(), reply);
}

}  // namespace
}  // namespace rtpc
