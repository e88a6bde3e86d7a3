// RTPproxy replies: cookie split, classification, positive/negative answers
// and the address rewrite, on the reply strings of PROTOCOL.md.

#include "shared/rtpp_reply.h"

#include <gtest/gtest.h>

#include <string>

namespace rtpc {
namespace {

using namespace std::string_literals;

TEST(SplitReplyCookie, SplitsAtTheFirstSeparator) {
  std::string_view cookie, body;
  ASSERT_TRUE(splitReplyCookie("c 40144 127.0.0.1\n", cookie, body));
  EXPECT_EQ(cookie, "c");
  EXPECT_EQ(body, "40144 127.0.0.1\n");

  ASSERT_TRUE(splitReplyCookie("a6_1795634064 sessions created: 0\nactive sessions: 0\n", cookie, body));
  EXPECT_EQ(cookie, "a6_1795634064");
  EXPECT_EQ(body, "sessions created: 0\nactive sessions: 0\n");

  // G without names: "<cookie> \n" (observed).
  ASSERT_TRUE(splitReplyCookie("ck \n", cookie, body));
  EXPECT_EQ(cookie, "ck");
  EXPECT_EQ(body, "\n");

  ASSERT_TRUE(splitReplyCookie("ck\tE50\n", cookie, body));
  EXPECT_EQ(body, "E50\n");
}

TEST(SplitReplyCookie, RefusesAMissingCookieOrBody) {
  std::string_view cookie = "unchanged", body;
  EXPECT_FALSE(splitReplyCookie("", cookie, body));
  EXPECT_FALSE(splitReplyCookie("20040107", cookie, body));
  EXPECT_FALSE(splitReplyCookie(" 0\n", cookie, body));
  EXPECT_FALSE(splitReplyCookie("\n", cookie, body));
  EXPECT_EQ(cookie, "unchanged");
}

struct ClassifyCase {
  std::string body;
  ReplyKind kind;
  int error_code;
  int64_t number;
  uint32_t port;
  const char* address;
  bool ipv6;
  const char* subresults;
};

class ClassifyReply : public ::testing::TestWithParam<ClassifyCase> {};

TEST_P(ClassifyReply, GivesKindAndFields) {
  const ClassifyCase& tc = GetParam();
  const RtppReply r = classifyReply(tc.body);
  EXPECT_EQ(r.kind, tc.kind) << tc.body;
  EXPECT_EQ(r.error_code, tc.error_code) << tc.body;
  EXPECT_EQ(r.number, tc.number) << tc.body;
  EXPECT_EQ(r.port, tc.port) << tc.body;
  EXPECT_EQ(r.address, tc.address) << tc.body;
  EXPECT_EQ(r.ipv6, tc.ipv6) << tc.body;
  EXPECT_EQ(r.subresults, tc.subresults) << tc.body;
}

const std::string kInfo =
    "sessions created: 0\nactive sessions: 0\nactive streams: 0\npackets received: 0\n"
    "packets transmitted: 0\n";

INSTANTIATE_TEST_SUITE_P(
    ProtocolMd, ClassifyReply,
    ::testing::Values(
        ClassifyCase{"40144 127.0.0.1\n", ReplyKind::kPort, 0, 0, 40144, "127.0.0.1", false, ""},
        ClassifyCase{"40976 ::1 6\n", ReplyKind::kPort, 0, 0, 40976, "::1", true, ""},
        ClassifyCase{"40928\n", ReplyKind::kNumber, 0, 40928, 40928, "", false, ""},
        ClassifyCase{"0\n", ReplyKind::kNumber, 0, 0, 0, "", false, ""},
        ClassifyCase{"0 0.0.0.0\n", ReplyKind::kPort, 0, 0, 0, "0.0.0.0", false, ""},
        // rtpengine's U/L answer names the address family, also for IPv4.
        ClassifyCase{"45000 127.0.0.1 4\n", ReplyKind::kPort, 0, 0, 45000, "127.0.0.1", false, ""},
        ClassifyCase{"45002 ::1 6\n", ReplyKind::kPort, 0, 0, 45002, "::1", true, ""},
        ClassifyCase{"E50\n", ReplyKind::kError, 50, 0, 0, "", false, ""},
        ClassifyCase{"E0", ReplyKind::kError, 0, 0, 0, "", false, ""},
        ClassifyCase{"E999\n", ReplyKind::kError, 999, 0, 0, "", false, ""},
        ClassifyCase{"20040107\n", ReplyKind::kNumber, 0, 20040107, 0, "", false, ""},
        ClassifyCase{"1\n", ReplyKind::kNumber, 0, 1, 1, "", false, ""},
        ClassifyCase{"-1", ReplyKind::kNumber, 0, -1, 0, "", false, ""},
        ClassifyCase{"40610 127.0.0.1\n", ReplyKind::kPort, 0, 0, 40610, "127.0.0.1", false, ""},
        ClassifyCase{"40010 127.0.0.1 && 40496 127.0.0.1\n", ReplyKind::kPort, 0, 0, 40010, "127.0.0.1", false,
                     "40496 127.0.0.1"},
        ClassifyCase{"ttl=60 npkts_ina=0 npkts_ino=0 nrelayed=0 ndropped=0 && 0 && -1\n", ReplyKind::kText, 0,
                     0, 0, "", false, "0 && -1"},
        ClassifyCase{"60 0 0 0 0\n", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"0 0 14 0.000000 0.000000\n", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"nsess_created=0 npkts_rcvd=0 total_duration=0.000000 pps_in=0.000000\n",
                     ReplyKind::kText, 0, 0, 0, "", false, ""},
        // Two or three G values must not look like "<port> <addr> [6]".
        ClassifyCase{"0 14\n", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"3 0.000000\n", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"1 2 6\n", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{kInfo, ReplyKind::kMultiline, 0, 0, 0, "", false, ""},
        ClassifyCase{kInfo + "average load: 0.000000\n", ReplyKind::kMultiline, 0, 0, 0, "", false, ""},
        ClassifyCase{"40144 rtp.example.net\n", ReplyKind::kPort, 0, 0, 40144, "rtp.example.net", false, ""}));

INSTANTIATE_TEST_SUITE_P(
    Garbage, ClassifyReply,
    ::testing::Values(
        ClassifyCase{"", ReplyKind::kMalformed, 0, 0, 0, "", false, ""},
        ClassifyCase{" \r\n", ReplyKind::kMalformed, 0, 0, 0, "", false, ""},
        ClassifyCase{"0\0"s, ReplyKind::kMalformed, 0, 0, 0, "", false, ""},
        ClassifyCase{"\x01\x02\x03", ReplyKind::kMalformed, 0, 0, 0, "", false, ""},
        ClassifyCase{"12\x7f", ReplyKind::kMalformed, 0, 0, 0, "", false, ""},
        ClassifyCase{std::string(kReplyBufferBytes + 1, '1'), ReplyKind::kMalformed, 0, 0, 0, "", false, ""},
        ClassifyCase{"E", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"E5x", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"99999999999999999999999", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"70000 127.0.0.1", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"40144 127.0.0.1 5", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"hello world", ReplyKind::kText, 0, 0, 0, "", false, ""},
        ClassifyCase{"line one\nline two", ReplyKind::kText, 0, 0, 0, "", false, ""}));

TEST(ClassifyReply, BodyIsTrimmedOfSeparators) {
  EXPECT_EQ(classifyReply("40144 127.0.0.1\r\n").body, "40144 127.0.0.1");
  EXPECT_EQ(classifyReply(kInfo).body, kInfo.substr(0, kInfo.size() - 1));
}

struct PositiveCase {
  CommandType type;
  const char* body;
  bool positive;
};

class PositiveReply : public ::testing::TestWithParam<PositiveCase> {};

TEST_P(PositiveReply, ProvesTheMemberKnowsTheSession) {
  const PositiveCase& tc = GetParam();
  EXPECT_EQ(isPositiveReply(tc.type, classifyReply(tc.body)), tc.positive)
      << commandLetter(tc.type) << " / " << tc.body;
}

INSTANTIATE_TEST_SUITE_P(
    ByCommand, PositiveReply,
    ::testing::Values(
        PositiveCase{CommandType::kUpdate, "40144 127.0.0.1\n", true},
        PositiveCase{CommandType::kUpdate, "40928\n", true},
        PositiveCase{CommandType::kUpdate, "40976 ::1 6\n", true},
        PositiveCase{CommandType::kUpdate, "0\n", false},
        PositiveCase{CommandType::kUpdate, "E72\n", false},
        PositiveCase{CommandType::kLookup, "40128 127.0.0.1\n", true},
        PositiveCase{CommandType::kLookup, "0\n", false},
        PositiveCase{CommandType::kLookup, "0 0.0.0.0\n", false},
        PositiveCase{CommandType::kLookup, "garbage reply", false},
        PositiveCase{CommandType::kDelete, "0\n", true},
        PositiveCase{CommandType::kDelete, "E50\n", false},
        PositiveCase{CommandType::kDelete, "1\n", false},
        PositiveCase{CommandType::kNoPlay, "0\n", true},
        PositiveCase{CommandType::kRecord, "0\n", true},
        PositiveCase{CommandType::kRecord, "E50\n", false},
        PositiveCase{CommandType::kNoRecord, "0\n", true},
        PositiveCase{CommandType::kPlay, "0\n", true},
        PositiveCase{CommandType::kPlay, "E60\n", false},
        PositiveCase{CommandType::kCopy, "0\n", true},
        PositiveCase{CommandType::kCopy, "40610 127.0.0.1\n", true},
        PositiveCase{CommandType::kCopy, "E65\n", false},
        PositiveCase{CommandType::kQuery, "60 0 0 0 0\n", true},
        PositiveCase{CommandType::kQuery, "ttl=60 npkts_ina=0 npkts_ino=0 nrelayed=0 ndropped=0\n", true},
        PositiveCase{CommandType::kQuery, "E50\n", false},
        PositiveCase{CommandType::kQuery, "", false},
        PositiveCase{CommandType::kVersion, "20040107\n", true},
        PositiveCase{CommandType::kVersion, "20040108\n", false},
        PositiveCase{CommandType::kVersionFeature, "1\n", true},
        PositiveCase{CommandType::kStats, "0 0 14 0.000000 0.000000\n", true},
        PositiveCase{CommandType::kStats, "E68\n", false},
        PositiveCase{CommandType::kDeleteAll, "0\n", true},
        PositiveCase{CommandType::kInfo, "\x01", false}));

TEST(NegativeUlReply, IsZeroOrRtpengineZeroAddress) {
  EXPECT_TRUE(isNegativeUlReply(classifyReply("0\n")));
  EXPECT_TRUE(isNegativeUlReply(classifyReply("0 0.0.0.0\n")));
  EXPECT_TRUE(isNegativeUlReply(classifyReply("0 :: 6\n")));
  EXPECT_FALSE(isNegativeUlReply(classifyReply("40144 127.0.0.1\n")));
  EXPECT_FALSE(isNegativeUlReply(classifyReply("40928\n")));
  EXPECT_FALSE(isNegativeUlReply(classifyReply("E50\n")));
  EXPECT_FALSE(isNegativeUlReply(classifyReply("")));
}

struct RewriteCase {
  const char* body;
  const char* address;
  const char* expected;
};

class ReplyAddressRewrite : public ::testing::TestWithParam<RewriteCase> {};

TEST_P(ReplyAddressRewrite, ReplacesTheAddressOnly) {
  const RewriteCase& tc = GetParam();
  ReplyBuffer out;
  ASSERT_TRUE(formatReplyWithAddress(classifyReply(tc.body), tc.address, out)) << tc.body;
  EXPECT_EQ(out.view(), tc.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Rewrites, ReplyAddressRewrite,
    ::testing::Values(
        RewriteCase{"40144 127.0.0.1\n", "203.0.113.5", "40144 203.0.113.5"},
        RewriteCase{"40144 127.0.0.1\n", "2001:db8::5", "40144 2001:db8::5 6"},
        RewriteCase{"40976 ::1 6\n", "2001:db8::5", "40976 2001:db8::5 6"},
        RewriteCase{"40976 ::1 6\n", "203.0.113.5", "40976 203.0.113.5"},
        RewriteCase{"40976 ::1 6\n", "rtp.example.net", "40976 rtp.example.net 6"},
        RewriteCase{"40928\n", "203.0.113.5", "40928 203.0.113.5"},
        RewriteCase{"40010 127.0.0.1 && 40496 127.0.0.1\n", "203.0.113.5",
                    "40010 203.0.113.5 && 40496 127.0.0.1"},
        RewriteCase{"0\n", "203.0.113.5", "0"},
        RewriteCase{"0 0.0.0.0\n", "203.0.113.5", "0"}));

TEST(ReplyAddressRewrite, RefusesNonPortRepliesAndOverflow) {
  ReplyBuffer out;
  EXPECT_FALSE(formatReplyWithAddress(classifyReply("E50\n"), "203.0.113.5", out));
  EXPECT_FALSE(formatReplyWithAddress(classifyReply("60 0 0 0 0\n"), "203.0.113.5", out));
  EXPECT_FALSE(formatReplyWithAddress(classifyReply("-1\n"), "203.0.113.5", out));
  EXPECT_TRUE(out.empty());

  ASSERT_TRUE(out.append(std::string(kReplyBufferBytes - 8, 'x')));
  const size_t before = out.size();
  EXPECT_FALSE(formatReplyWithAddress(classifyReply("40144 127.0.0.1\n"), "203.0.113.5", out));
  EXPECT_EQ(out.size(), before);
}

}  // namespace
}  // namespace rtpc
