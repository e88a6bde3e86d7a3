// RTPproxy command parser and formatter, driven by raw wire strings from
// PROTOCOL.md sections 1-3 and 8.

#include "shared/rtpp_command.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace {

// Counts heap allocations so a test can prove that parsing makes none.
std::atomic<size_t> g_allocations{0};

}  // namespace

void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// g++ sees free() on memory from `new` once these are inlined; here that is
// the point of the replacement.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace rtpc {
namespace {

using namespace std::string_literals;

ParseResult parseDatagram(std::string_view s, RtppCommand& c) {
  return parseCommand(s, Framing::kDatagram, c);
}

std::string format(const RtppCommand& c, const CommandEdits& e = {}) {
  CommandBuffer buf;
  EXPECT_TRUE(formatCommand(c, e, buf));
  return std::string(buf.view());
}

// ---------------------------------------------------------------------------
// Valid commands: every command of section 2, with its named arguments.

struct ValidCase {
  const char* wire;  // datagram, cookie "c"
  CommandType type;
  int argc;
  const char* modifiers;
  const char* call_id;
  const char* from_tag;
  const char* to_tag;
};

class ValidCommand : public ::testing::TestWithParam<ValidCase> {};

TEST_P(ValidCommand, ParsesToTypeArgcAndNamedArguments) {
  const ValidCase& tc = GetParam();
  RtppCommand c;
  const ParseResult r = parseDatagram(tc.wire, c);
  ASSERT_TRUE(r.ok) << tc.wire << " -> E" << r.error_code;
  EXPECT_TRUE(r.has_cookie);
  EXPECT_EQ(c.cookie, "c");
  EXPECT_EQ(c.type, tc.type);
  EXPECT_EQ(c.argc, tc.argc);
  EXPECT_EQ(c.modifiers, tc.modifiers);
  EXPECT_EQ(c.call_id, tc.call_id);
  EXPECT_EQ(c.from_tag, tc.from_tag);
  EXPECT_EQ(c.to_tag, tc.to_tag);
}

INSTANTIATE_TEST_SUITE_P(
    Section2, ValidCommand,
    ::testing::Values(
        ValidCase{"c U call1 192.0.2.1 10000 ftag1", CommandType::kUpdate, 5, "", "call1", "ftag1", ""},
        ValidCase{"c U call1 192.0.2.1 10000 ftag1 ttag1", CommandType::kUpdate, 6, "", "call1", "ftag1", "ttag1"},
        ValidCase{"c U call1 192.0.2.1 10000 ftag1 tcp:%%CC_SELF%%:22297 tag", CommandType::kUpdate, 7, "", "call1", "ftag1", ""},
        ValidCase{"c U call1 192.0.2.1 10000 ftag1 ttag1 unix:/s tag", CommandType::kUpdate, 8, "", "call1", "ftag1", "ttag1"},
        ValidCase{"c Uc8,0,101z20asw6 c;br 192.0.2.1 10000 f;1", CommandType::kUpdate, 5, "c8,0,101z20asw6", "c;br", "f;1", ""},
        ValidCase{"c Un call2 192.0.2.1 10000 ftag2", CommandType::kUpdate, 5, "n", "call2", "ftag2", ""},
        ValidCase{"c u call1 192.0.2.1 10000 ftag1", CommandType::kUpdate, 5, "", "call1", "ftag1", ""},
        ValidCase{"c L call1 192.0.2.2 20000 ftag1 ttag1", CommandType::kLookup, 6, "", "call1", "ftag1", "ttag1"},
        ValidCase{"c Ll127.0.0.1 call1 192.0.2.2 20000 ftag1", CommandType::kLookup, 5, "l127.0.0.1", "call1", "ftag1", ""},
        ValidCase{"c D d1 t1 f1", CommandType::kDelete, 4, "", "d1", "t1", "f1"},
        ValidCase{"c Dw d1 f1", CommandType::kDelete, 3, "w", "d1", "f1", ""},
        ValidCase{"c P p1 /nonexistent/prompt 0,8 f5 t5", CommandType::kPlay, 6, "", "p1", "f5", "t5"},
        ValidCase{"c P0 p1 prompt session f5", CommandType::kPlay, 5, "0", "p1", "f5", ""},
        ValidCase{"c P12 p1 prompt 0,8 f5 t5", CommandType::kPlay, 6, "12", "p1", "f5", "t5"},
        ValidCase{"c S call1 ftag1", CommandType::kNoPlay, 3, "", "call1", "ftag1", ""},
        ValidCase{"c S call1 ftag1 ttag1", CommandType::kNoPlay, 4, "", "call1", "ftag1", "ttag1"},
        ValidCase{"c R call1 ftag1", CommandType::kRecord, 3, "", "call1", "ftag1", ""},
        ValidCase{"c Rs call1 ftag1 ttag1", CommandType::kRecord, 4, "s", "call1", "ftag1", "ttag1"},
        ValidCase{"c C p1 udp:127.0.0.1:9 f5 t5", CommandType::kCopy, 5, "", "p1", "f5", "t5"},
        ValidCase{"c Csp p1 udp:127.0.0.1:9 f5", CommandType::kCopy, 4, "sp", "p1", "f5", ""},
        ValidCase{"c N call1 ftag1", CommandType::kNoRecord, 3, "", "call1", "ftag1", ""},
        ValidCase{"c Na call1 ftag1 ttag1", CommandType::kNoRecord, 4, "a", "call1", "ftag1", "ttag1"},
        ValidCase{"c Q call1 ftag1", CommandType::kQuery, 3, "", "call1", "ftag1", ""},
        ValidCase{"c Qv call1 ftag1 ttag1", CommandType::kQuery, 4, "v", "call1", "ftag1", "ttag1"},
        ValidCase{"c Q call1 ftag1 ttag1 ttl nosuch", CommandType::kQuery, 6, "", "call1", "ftag1", "ttag1"},
        ValidCase{"c V", CommandType::kVersion, 1, "", "", "", ""},
        ValidCase{"c VF 20260309", CommandType::kVersionFeature, 2, "", "", "", ""},
        ValidCase{"c vf 19990101", CommandType::kVersionFeature, 2, "", "", "", ""},
        ValidCase{"c I", CommandType::kInfo, 1, "", "", "", ""},
        ValidCase{"c Ib", CommandType::kInfo, 1, "b", "", "", ""},
        ValidCase{"c IbL", CommandType::kInfo, 1, "bL", "", "", ""},
        ValidCase{"c G", CommandType::kStats, 1, "", "", "", ""},
        ValidCase{"c Gv nsess_created npkts_rcvd", CommandType::kStats, 3, "v", "", "", ""},
        ValidCase{"c X", CommandType::kDeleteAll, 1, "", "", "", ""}));

TEST(ParseCommand, UpdateArgumentLayoutsFollowArgc) {
  RtppCommand c;
  ASSERT_TRUE(parseDatagram("c U cid 192.0.2.1 10000 ftag tcp:%%CC_SELF%%:22297 hello%20world", c).ok);
  EXPECT_EQ(c.remote_ip, "192.0.2.1");
  EXPECT_EQ(c.remote_port, "10000");
  EXPECT_EQ(c.to_tag, "");
  EXPECT_EQ(c.notify_socket, "tcp:%%CC_SELF%%:22297");
  EXPECT_EQ(c.notify_tag, "hello%20world");

  ASSERT_TRUE(parseDatagram("c U cid 192.0.2.1 10000 ftag ttag unix:/n t", c).ok);
  EXPECT_EQ(c.to_tag, "ttag");
  EXPECT_EQ(c.notify_socket, "unix:/n");
  EXPECT_EQ(c.notify_tag, "t");

  ASSERT_TRUE(parseDatagram("c U cid 192.0.2.1 10000 ftag ttag", c).ok);
  EXPECT_EQ(c.notify_socket, "");
  EXPECT_EQ(c.notify_tag, "");
}

TEST(ParseCommand, PlayCopyFeatureAndStatNamesAreNamed) {
  RtppCommand c;
  ASSERT_TRUE(parseDatagram("c P3 p1 /tmp/prompt 0,8 f5 t5", c).ok);
  EXPECT_EQ(c.play_name, "/tmp/prompt");
  EXPECT_EQ(c.play_codecs, "0,8");

  ASSERT_TRUE(parseDatagram("c Cp p1 udp:127.0.0.1:9 f5 t5", c).ok);
  EXPECT_EQ(c.copy_target, "udp:127.0.0.1:9");

  ASSERT_TRUE(parseDatagram("c VF 20050322", c).ok);
  EXPECT_EQ(c.feature, "20050322");
  EXPECT_EQ(c.letter(), 'V');

  ASSERT_TRUE(parseDatagram("c Q call1 ftag1 ttag1 ttl rtpa_jmax nrelayed", c).ok);
  ASSERT_EQ(c.extra_count, 3);
  EXPECT_EQ(c.token(c.extra_first), "ttl");
  EXPECT_EQ(c.token(c.extra_first + 2), "nrelayed");

  ASSERT_TRUE(parseDatagram("c G nsess_created ncmds_rcvd pps_in", c).ok);
  ASSERT_EQ(c.extra_count, 3);
  EXPECT_EQ(c.token(c.extra_first), "nsess_created");
  EXPECT_EQ(c.token(c.extra_first + 2), "pps_in");

  ASSERT_TRUE(parseDatagram("c Q call1 ftag1 ttag1", c).ok);
  EXPECT_EQ(c.extra_count, 0);
  ASSERT_TRUE(parseDatagram("c G", c).ok);
  EXPECT_EQ(c.extra_count, 0);
}

// ---------------------------------------------------------------------------
// Errors: the exact code rtpproxy answers, and whether a cookie can be echoed.

struct ErrorCase {
  std::string wire;
  Framing framing;
  int code;
  bool has_cookie;
};

class CommandError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(CommandError, AnswersRtpproxyErrorCode) {
  const ErrorCase& tc = GetParam();
  RtppCommand c;
  const ParseResult r = parseCommand(tc.wire, tc.framing, c);
  EXPECT_FALSE(r.ok) << tc.wire;
  EXPECT_EQ(r.error_code, tc.code) << tc.wire;
  EXPECT_EQ(r.has_cookie, tc.has_cookie) << tc.wire;
  if (tc.has_cookie) {
    EXPECT_FALSE(c.cookie.empty());
  }
}

std::string tokens(int n, const char* word = "x") {
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += word;
  }
  return s;
}

std::string subcommands(int n) {
  std::string s = "c U cid 192.0.2.1 10000 ftag ttag";
  for (int i = 0; i < n; ++i) s += " && D";
  return s;
}

const auto D = Framing::kDatagram;
const auto S = Framing::kStream;

INSTANTIATE_TEST_SUITE_P(
    Syntax, CommandError,
    ::testing::Values(
        ErrorCase{"", D, 5, false},
        ErrorCase{" \t\r\n", D, 5, false},
        ErrorCase{"", S, 5, false},
        ErrorCase{"\n", S, 5, false},
        ErrorCase{"cookie", D, 5, true},
        ErrorCase{"cookie \n", D, 5, true},
        ErrorCase{"V", D, 5, true},  // the V is the cookie
        ErrorCase{"c V\0"s, D, 5, true},
        ErrorCase{"c U ca\0ll 192.0.2.1 10000 f"s, D, 5, true},
        ErrorCase{"\0c V"s, D, 5, false},
        ErrorCase{"V\0"s, S, 5, false},
        ErrorCase{"c " + std::string(8191, 'V'), D, 5, true},  // 8193 bytes
        ErrorCase{"V " + std::string(8191, 'x'), S, 5, false},
        ErrorCase{"c G " + tokens(23, "nsess_created"), D, 5, true},  // 24 tokens
        ErrorCase{"c " + tokens(24), D, 5, true},
        ErrorCase{"c U cid 192.0.2.1 10000 ftag ttag && L " + tokens(23), D, 5, true},
        ErrorCase{subcommands(16), D, 5, true},
        ErrorCase{"c && V", D, 5, true},
        ErrorCase{"&&", S, 5, false}));

INSTANTIATE_TEST_SUITE_P(
    Table, CommandError,
    ::testing::Values(
        ErrorCase{"c Z", D, 0, true},
        ErrorCase{"c K a b", D, 0, true},
        ErrorCase{"c \xc3\x9c call 192.0.2.1 10000 f", D, 0, true},
        ErrorCase{"c 1", D, 0, true},
        ErrorCase{"c V x", D, 1, true},
        ErrorCase{"c VF", D, 1, true},
        ErrorCase{"c VF 1 2", D, 1, true},
        ErrorCase{"c U call1 192.0.2.1 10000", D, 1, true},
        ErrorCase{"c U " + tokens(8), D, 1, true},
        ErrorCase{"c L call1 192.0.2.1 10000 f t unix:/n tag", D, 1, true},
        ErrorCase{"c D call1", D, 1, true},
        ErrorCase{"c D call1 f t x", D, 1, true},
        ErrorCase{"c P call1 prompt 0,8", D, 1, true},
        ErrorCase{"c S call1", D, 1, true},
        ErrorCase{"c R call1 f t x", D, 1, true},
        ErrorCase{"c C call1 target", D, 1, true},
        ErrorCase{"c N call1", D, 1, true},
        ErrorCase{"c Q call1", D, 1, true},
        ErrorCase{"c Q call1 f t " + tokens(12), D, 1, true},
        ErrorCase{"c I x", D, 1, true},
        ErrorCase{"c X x", D, 1, true},
        ErrorCase{"c " + tokens(23, "V"), D, 1, true},  // exactly 23 tokens: E1, not E5
        ErrorCase{"c Vx", D, 2, true},
        ErrorCase{"c VFx 20040107", D, 2, true},
        ErrorCase{"c Sx call1 f", D, 2, true},
        ErrorCase{"c Xa", D, 2, true},
        ErrorCase{"c D call1 f && D", D, 3, true},
        ErrorCase{"c G nsess_created && D", D, 3, true},
        ErrorCase{"c U call1 192.0.2.1 10000 f t &&", D, 3, true},
        ErrorCase{"c U call1 192.0.2.1 10000 f t && && D", D, 3, true},
        ErrorCase{"c Q call1 f t && D &&", D, 3, true},
        ErrorCase{"U call1 192.0.2.1 10000 f t &&\n", S, 3, false}));

INSTANTIATE_TEST_SUITE_P(
    Modifiers, CommandError,
    ::testing::Values(
        ErrorCase{"c Dx d1 f1", D, 8, true},
        ErrorCase{"c Dwa d1 f1", D, 8, true},
        ErrorCase{"c Gx", D, 9, true},
        ErrorCase{"c Gvx nsess_created", D, 9, true},
        ErrorCase{"c Ix", D, 18, true},
        ErrorCase{"c Ibx", D, 18, true},
        ErrorCase{"c Qx call1 f", D, 19, true},
        ErrorCase{"c Rp call1 f", D, 6, true},
        ErrorCase{"c Rsx call1 f", D, 6, true},
        ErrorCase{"c Rx call1 f", D, 7, true},
        ErrorCase{"c Nax call1 f", D, 6, true},
        ErrorCase{"c Nx call1 f", D, 7, true},
        ErrorCase{"c Cx call1 target f", D, 7, true},
        ErrorCase{"c Px call1 prompt 0,8 f", D, 17, true},
        ErrorCase{"c P1a call1 prompt 0,8 f", D, 17, true},
        ErrorCase{"c UT60 call1 192.0.2.1 10000 f", D, 35, true},  // OpenSIPS T<ttl>
        ErrorCase{"c Ux call1 192.0.2.1 10000 f", D, 35, true},
        ErrorCase{"c Lz call1 192.0.2.1 10000 f", D, 13, true},
        ErrorCase{"c Uz0 call1 192.0.2.1 10000 f", D, 13, true},
        ErrorCase{"c Uz1000 call1 192.0.2.1 10000 f", D, 13, true},
        ErrorCase{"c Uc call1 192.0.2.1 10000 f", D, 14, true},
        ErrorCase{"c Uc0c8 call1 192.0.2.1 10000 f", D, 14, true},
        ErrorCase{"c Ul call1 192.0.2.1 10000 f", D, 15, true},
        ErrorCase{"c Ul[ call1 192.0.2.1 10000 f", D, 15, true},
        ErrorCase{"c Ul[] call1 192.0.2.1 10000 f", D, 15, true},
        ErrorCase{"c Ulx call1 192.0.2.1 10000 f", D, 15, true},
        ErrorCase{"c Ur call1 192.0.2.1 10000 f", D, 16, true},
        ErrorCase{"c Ur{lbl} call1 192.0.2.1 10000 f", D, 16, true},
        ErrorCase{"c U call1 192.0.2.1 10000 f t unix:/n bad%2", D, 10, true},
        ErrorCase{"c U call1 192.0.2.1 10000 f unix:/n bad%zz", D, 10, true}));

// ---------------------------------------------------------------------------
// Limits at their edge, framing, and what the tokenizer leaves alone.

TEST(ParseCommand, ExactlyTwentyThreeTokensIsAccepted) {
  RtppCommand c;
  const std::string wire = "c G " + tokens(22, "nsess_created");
  const ParseResult r = parseDatagram(wire, c);
  ASSERT_TRUE(r.ok) << "E" << r.error_code;
  EXPECT_EQ(c.argc, 23);
  EXPECT_EQ(c.extra_count, 22);
}

TEST(ParseCommand, FifteenSubcommandsAreAcceptedSixteenAreNot) {
  RtppCommand c;
  const std::string fifteen = subcommands(15);
  ASSERT_TRUE(parseDatagram(fifteen, c).ok);
  EXPECT_EQ(c.subcommand_count, 15);
  EXPECT_EQ(c.subcommandText(14), "D");
  const std::string sixteen = subcommands(16);
  EXPECT_EQ(parseDatagram(sixteen, c).error_code, ecode::kSyntax);
}

TEST(ParseCommand, FullSubcommandsIndexPastTwoHundredFiftyFiveTokens) {
  // 15 subcommands of 23 tokens each: the last ones start beyond index 255.
  std::string wire = "c U cid 192.0.2.1 10000 ftag ttag";
  for (int i = 0; i < 15; ++i) wire += " && " + tokens(22, "x") + " y" + std::to_string(i);
  RtppCommand c;
  ASSERT_TRUE(parseDatagram(wire, c).ok);
  EXPECT_EQ(c.subcommand_count, 15);
  EXPECT_EQ(c.subcommandToken(14, 22), "y14");
  EXPECT_EQ(c.subcommandToken(13, 22), "y13");
  EXPECT_EQ(format(c), wire.substr(2));
}

TEST(ParseCommand, EightKilobytesIsAcceptedOneMoreIsNot) {
  RtppCommand c;
  std::string wire = "c U call 192.0.2.1 10000 f ";
  wire += std::string(kMaxCommandBytes - wire.size(), 't');
  ASSERT_EQ(wire.size(), kMaxCommandBytes);
  EXPECT_TRUE(parseDatagram(wire, c).ok);
  EXPECT_EQ(c.to_tag.size() + 27, kMaxCommandBytes);
  wire += 't';
  const ParseResult r = parseDatagram(wire, c);
  EXPECT_EQ(r.error_code, ecode::kSyntax);
  EXPECT_EQ(c.cookie, "c");
}

TEST(ParseCommand, NonAsciiCallIdAndTagsPassThrough) {
  RtppCommand c;
  const std::string wire = "c U \xff\xfe\x01id 192.0.2.1 10000 t\xc3\xa4g";
  ASSERT_TRUE(parseDatagram(wire, c).ok);
  EXPECT_EQ(c.call_id, "\xff\xfe\x01id");
  EXPECT_EQ(c.from_tag, "t\xc3\xa4g");
  EXPECT_EQ(format(c), wire.substr(2));
}

TEST(ParseCommand, SeparatorRunsCollapseAndTrailingNewlineIsIgnored) {
  RtppCommand c;
  ASSERT_TRUE(parseDatagram("\t c1 \r\n U \t call1  192.0.2.1\t10000 ftag1 \r\n", c).ok);
  EXPECT_EQ(c.cookie, "c1");
  EXPECT_EQ(c.argc, 5);
  EXPECT_EQ(c.body, "U \t call1  192.0.2.1\t10000 ftag1");
  EXPECT_EQ(format(c), "U call1 192.0.2.1 10000 ftag1");
}

TEST(ParseCommand, StreamFramingHasNoCookie) {
  RtppCommand c;
  ParseResult r = parseCommand("V\n", Framing::kStream, c);
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.has_cookie);
  EXPECT_EQ(c.cookie, "");
  EXPECT_EQ(c.type, CommandType::kVersion);

  r = parseCommand("VF 20040107\r\n", Framing::kStream, c);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(c.feature, "20040107");

  // unix: one read() holding two lines is one command (observed E1).
  r = parseCommand("V\nVF 20040107\n", Framing::kStream, c);
  EXPECT_EQ(r.error_code, ecode::kArgCount);
  EXPECT_FALSE(r.has_cookie);
}

TEST(ParseCommand, DatagramFramingTakesTheFirstTokenAsCookie) {
  RtppCommand c;
  // Two lines in one datagram are one command (observed "two1 E1").
  ParseResult r = parseDatagram("two1 V\ntwo2 V\n", c);
  EXPECT_EQ(r.error_code, ecode::kArgCount);
  EXPECT_TRUE(r.has_cookie);
  EXPECT_EQ(c.cookie, "two1");

  r = parseDatagram("a6_1795634064 Ib\n", c);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(c.cookie, "a6_1795634064");
  EXPECT_EQ(c.type, CommandType::kInfo);
}

TEST(ParseCommand, CookieNeverCarriesANul) {
  RtppCommand c;
  const std::string wire = "ab\0cd V"s;
  const ParseResult r = parseDatagram(wire, c);
  EXPECT_EQ(r.error_code, ecode::kSyntax);
  EXPECT_TRUE(r.has_cookie);
  EXPECT_EQ(c.cookie, "ab");
}

TEST(ParseCommand, SubcommandsAreSplitOnAmpersandTokensOnly) {
  RtppCommand c;
  ASSERT_TRUE(parseDatagram("c U call8 192.0.2.1 10000 ftag8 ttag8 && L 192.0.2.2 20000", c).ok);
  EXPECT_EQ(c.argc, 6);
  ASSERT_EQ(c.subcommand_count, 1);
  EXPECT_EQ(c.subcommand_argc[0], 3);
  EXPECT_EQ(c.subcommandToken(0, 0), "L");
  EXPECT_EQ(c.subcommandToken(0, 2), "20000");
  EXPECT_EQ(c.subcommandText(0), "L 192.0.2.2 20000");
  EXPECT_EQ(c.body, "U call8 192.0.2.1 10000 ftag8 ttag8 && L 192.0.2.2 20000");
  EXPECT_EQ(c.token_count, 9);

  // "&&x" is an ordinary token, not a separator.
  ASSERT_TRUE(parseDatagram("c U call 192.0.2.1 10000 f &&x", c).ok);
  EXPECT_EQ(c.subcommand_count, 0);
  EXPECT_EQ(c.to_tag, "&&x");

  ASSERT_TRUE(parseDatagram("c Qv call9 ftag9 ttag9 && D && D", c).ok);
  EXPECT_EQ(c.subcommand_count, 2);
  EXPECT_EQ(c.subcommandText(1), "D");
}

TEST(ParseCommand, ReusedCommandObjectIsFullyReset) {
  RtppCommand c;
  ASSERT_TRUE(parseDatagram("c U cid 192.0.2.1 10000 f t unix:/n tag && L 192.0.2.2 2", c).ok);
  ASSERT_TRUE(parseDatagram("c G nsess_created", c).ok);
  EXPECT_EQ(c.call_id, "");
  EXPECT_EQ(c.to_tag, "");
  EXPECT_EQ(c.notify_socket, "");
  EXPECT_EQ(c.subcommand_count, 0);
  EXPECT_EQ(c.extra_count, 1);
  ASSERT_TRUE(parseDatagram("c V", c).ok);
  EXPECT_EQ(c.extra_count, 0);
}

TEST(ParseCommand, DoesNotAllocate) {
  RtppCommand c;
  const std::string wire =
      "c_1234 Uc8,0,101z20l127.0.0.1 callid;branch 192.0.2.1 10000 ftag;1 ttag;1 "
      "tcp:%%CC_SELF%%:22297 tag && L 192.0.2.2 20000";
  const size_t before = g_allocations.load();
  const ParseResult r = parseDatagram(wire, c);
  const size_t after = g_allocations.load();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(after, before);

  // The counter does see allocations, so the checks above can fail.
  const size_t before_control = g_allocations.load();
  std::string control(200, 'x');
  EXPECT_GT(g_allocations.load(), before_control);

  CommandBuffer buf;
  CommandEdits e;
  e.swap_tags = true;
  e.local_address = "::1";
  const size_t before_fmt = g_allocations.load();
  ASSERT_TRUE(formatCommand(c, e, buf));
  EXPECT_EQ(g_allocations.load(), before_fmt);
}

TEST(CommandLetter, IsTheWireLetter) {
  EXPECT_EQ(commandLetter(CommandType::kUpdate), 'U');
  EXPECT_EQ(commandLetter(CommandType::kLookup), 'L');
  EXPECT_EQ(commandLetter(CommandType::kDelete), 'D');
  EXPECT_EQ(commandLetter(CommandType::kPlay), 'P');
  EXPECT_EQ(commandLetter(CommandType::kNoPlay), 'S');
  EXPECT_EQ(commandLetter(CommandType::kRecord), 'R');
  EXPECT_EQ(commandLetter(CommandType::kCopy), 'C');
  EXPECT_EQ(commandLetter(CommandType::kNoRecord), 'N');
  EXPECT_EQ(commandLetter(CommandType::kQuery), 'Q');
  EXPECT_EQ(commandLetter(CommandType::kVersion), 'V');
  EXPECT_EQ(commandLetter(CommandType::kVersionFeature), 'V');
  EXPECT_EQ(commandLetter(CommandType::kInfo), 'I');
  EXPECT_EQ(commandLetter(CommandType::kStats), 'G');
  EXPECT_EQ(commandLetter(CommandType::kDeleteAll), 'X');
}

// ---------------------------------------------------------------------------
// U/L modifiers.

struct UlCase {
  const char* modifiers;
  int code;
  bool ipv6, weak, new_port;
  const char* local;   // the whole l modifier
  const char* remote;  // the whole r modifier
};

class UlModifierScan : public ::testing::TestWithParam<UlCase> {};

TEST_P(UlModifierScan, ReportsFlagsAddressesAndErrors) {
  const UlCase& tc = GetParam();
  UlModifiers m;
  const std::string_view mods = tc.modifiers;
  ASSERT_EQ(scanUlModifiers(mods, m), tc.code) << tc.modifiers;
  if (tc.code != 0) return;
  EXPECT_EQ(m.ipv6, tc.ipv6);
  EXPECT_EQ(m.weak, tc.weak);
  EXPECT_EQ(m.new_port, tc.new_port);
  EXPECT_EQ(mods.substr(m.local_offset, m.local_length), tc.local);
  EXPECT_EQ(mods.substr(m.remote_offset, m.remote_length), tc.remote);
}

INSTANTIATE_TEST_SUITE_P(
    UlTable, UlModifierScan,
    ::testing::Values(
        UlCase{"", 0, false, false, false, "", ""},
        UlCase{"asei6wn", 0, true, true, true, "", ""},
        UlCase{"ASEI6WN", 0, true, true, true, "", ""},
        UlCase{"z1", 0, false, false, false, "", ""},
        UlCase{"z999", 0, false, false, false, "", ""},
        UlCase{"Z20c8,0,101", 0, false, false, false, "", ""},
        UlCase{"l127.0.0.1", 0, false, false, false, "l127.0.0.1", ""},
        UlCase{"al[::1]6w", 0, true, true, false, "l[::1]", ""},
        UlCase{"l{ext}r192.0.2.9", 0, false, false, false, "l{ext}", "r192.0.2.9"},
        UlCase{"cL10.0.0.1", 14, false, false, false, "", ""},
        UlCase{"c0L10.0.0.1R[2001:db8::1]n", 0, false, false, true, "L10.0.0.1", "R[2001:db8::1]"},
        UlCase{"l1.2.3.46", 0, false, false, false, "l1.2.3.46", ""},  // the 6 is part of the address
        UlCase{"z0", 13, false, false, false, "", ""},
        UlCase{"z", 13, false, false, false, "", ""},
        UlCase{"z1000", 13, false, false, false, "", ""},
        UlCase{"z99999999999999999999", 13, false, false, false, "", ""},
        UlCase{"c", 14, false, false, false, "", ""},
        UlCase{"c8c0", 14, false, false, false, "", ""},
        UlCase{"l", 15, false, false, false, "", ""},
        UlCase{"l[::1", 15, false, false, false, "", ""},
        UlCase{"l{}", 15, false, false, false, "", ""},
        UlCase{"r", 16, false, false, false, "", ""},
        UlCase{"r[]", 16, false, false, false, "", ""},
        UlCase{"ry", 16, false, false, false, "", ""},
        UlCase{"x", 35, false, false, false, "", ""},
        UlCase{"T60", 35, false, false, false, "", ""},
        UlCase{"az20x", 35, false, false, false, "", ""}));

TEST(NotifyTag, PercentEscapesMustBeTwoHexDigits) {
  EXPECT_TRUE(isValidNotifyTag("hello%20world%3Bx"));
  EXPECT_TRUE(isValidNotifyTag("plain"));
  EXPECT_TRUE(isValidNotifyTag(""));
  EXPECT_FALSE(isValidNotifyTag("%"));
  EXPECT_FALSE(isValidNotifyTag("a%2"));
  EXPECT_FALSE(isValidNotifyTag("a%g0"));
}

// ---------------------------------------------------------------------------
// Formatting: round trips and edits.

class RoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(RoundTrip, CanonicalCommandComesBackByteForByte) {
  const std::string wire = GetParam();
  RtppCommand c;
  const ParseResult r = parseDatagram(wire, c);
  ASSERT_TRUE(r.ok) << wire << " -> E" << r.error_code;
  EXPECT_EQ(format(c), wire.substr(wire.find(' ') + 1));

  // The same command on a stream socket, newline terminated.
  const std::string line = wire.substr(wire.find(' ') + 1) + "\n";
  ASSERT_TRUE(parseCommand(line, Framing::kStream, c).ok);
  EXPECT_EQ(format(c) + "\n", line);
}

// Every valid wire string of PROTOCOL.md (sections 2, 5 and 8).
INSTANTIATE_TEST_SUITE_P(
    ProtocolMd, RoundTrip,
    ::testing::Values(
        "c U call1 192.0.2.1 10000 ftag1",
        "c L call1 192.0.2.2 20000 ftag1 ttag1",
        "c L call2 192.0.2.2 20000 ftag1 ttag1",
        "c Q call1 ftag1 ttag1 ttl nosuch",
        "c Un call2 192.0.2.1 10000 ftag2",
        "c U6 call4 ::1 10000 ftag4",
        "c Ue call6b 192.0.2.1 10000 ftag6",
        "c U call11 192.0.2.1 10000 ftag11 ttag11 && M1:1 x",
        "c C p1 udp:127.0.0.1:9 f5 t5",
        "c P p1 /nonexistent/prompt 0,8 f5 t5",
        "c G nosuch",
        "c X",
        "c VF 19990101",
        "c VF 20260309",
        "c V",
        "c I",
        "c Ib",
        "c Il",
        "c IbL",
        "c G nsess_created nsess_destroyed ncmds_rcvd pps_in total_duration",
        "c Gv nsess_created npkts_rcvd total_duration pps_in",
        "c G",
        "c U call8 192.0.2.1 10000 ftag8 ttag8 && L 192.0.2.2 20000",
        "c Qv call8 ftag8 ttag8 && D",
        "c Qv call9 ftag9 ttag9 && D && D",
        "c U c 1.1.1.1 1 f1 && L 2.2.2.2 2",
        "c U call1 192.0.2.1 10000 ftag1 ttag1 && S ttl=2",
        "c U call1 192.0.2.1 10000 ftag1 ttag1 && Sr tos=184",
        "c U call1 192.0.2.1 10000 ftag1 ttag1 && C callid2 ftag2 ttag2",
        "c U call1 192.0.2.1 10000 ftag1 tcp:%%CC_SELF%%:22297 hello%20world%3Bx",
        "c D d1 t1",
        "c D d1 t1 f1",
        "c D d3 f3",
        "c Dw d1 f1",
        "c Q call1 ftag1",
        "c Uw d1 192.0.2.1 10000 f1",
        "c Rs call1 ftag1 ttag1",
        "c N call1 ftag1",
        "c Na call1 ftag1 ttag1",
        "c S call1 ftag1 ttag1",
        "c Cp p1 udp:127.0.0.1:9 f5 t5",
        "c P0 p1 prompt session f5",
        "1234_5 UAIc8,0,101z20 callid;branch 192.0.2.1 10000 ftag;1",
        "1234_5 LEI6 callid;branch ::1 10000 ftag;1 ttag;1",
        "1_2_3 U callid 192.0.2.1 10000 ftag;1 unix:/run/n Tdlg1 && M3:1 Dtag",
        "0123456789abcdef0123456789abcdef Ur192.0.2.7Nz30 call-0 192.0.2.1 10000 t f unix:/n tag",
        "c Ll10.0.0.1 call-1 192.0.2.1 10000 ftag",
        "c Q callid;1 ftag;1 ttag;1",
        "c VF 20050322"));

struct EditCase {
  const char* wire;  // datagram, cookie "c"
  CommandEdits edits;
  const char* expected;
};

class FormatEdit : public ::testing::TestWithParam<EditCase> {};

TEST_P(FormatEdit, AppliesTheEditAndParsesBack) {
  const EditCase& tc = GetParam();
  RtppCommand c;
  ASSERT_TRUE(parseDatagram(tc.wire, c).ok) << tc.wire;
  const std::string out = format(c, tc.edits);
  EXPECT_EQ(out, tc.expected);
  RtppCommand back;
  const ParseResult r = parseCommand(out, Framing::kStream, back);
  EXPECT_TRUE(r.ok) << out << " -> E" << r.error_code;
}

CommandEdits letter(char l) {
  CommandEdits e;
  e.type_letter = l;
  return e;
}
CommandEdits swapTags() {
  CommandEdits e;
  e.swap_tags = true;
  return e;
}
CommandEdits dropNotify() {
  CommandEdits e;
  e.drop_notify = true;
  return e;
}
CommandEdits local(const char* a) {
  CommandEdits e;
  e.local_address = a;
  return e;
}
CommandEdits dropRemote() {
  CommandEdits e;
  e.drop_remote_route = true;
  return e;
}
CommandEdits notify(const char* sock, const char* tag) {
  CommandEdits e;
  e.notify_socket = sock;
  e.notify_tag = tag;
  return e;
}

INSTANTIATE_TEST_SUITE_P(
    Edits, FormatEdit,
    ::testing::Values(
        EditCase{"c U cid 192.0.2.1 10000 f t", {}, "U cid 192.0.2.1 10000 f t"},
        EditCase{"c U cid 192.0.2.1 10000 f t", letter('L'), "L cid 192.0.2.1 10000 f t"},
        EditCase{"c Uc8 cid 192.0.2.1 10000 f t unix:/n tag", letter('L'), "Lc8 cid 192.0.2.1 10000 f t"},
        EditCase{"c U cid 192.0.2.1 10000 f t", swapTags(), "U cid 192.0.2.1 10000 t f"},
        EditCase{"c U cid 192.0.2.1 10000 f", swapTags(), "U cid 192.0.2.1 10000 f"},
        EditCase{"c U cid 192.0.2.1 10000 f t unix:/n tag", swapTags(), "U cid 192.0.2.1 10000 t f unix:/n tag"},
        EditCase{"c D cid f t", swapTags(), "D cid t f"},
        EditCase{"c P2 cid prompt 0,8 f t", swapTags(), "P2 cid prompt 0,8 t f"},
        EditCase{"c C cid udp:127.0.0.1:9 f t", swapTags(), "C cid udp:127.0.0.1:9 t f"},
        EditCase{"c Q cid f t ttl nrelayed", swapTags(), "Q cid t f ttl nrelayed"},
        EditCase{"c Na cid f t", swapTags(), "Na cid t f"},
        EditCase{"c U cid 192.0.2.1 10000 f t unix:/n tag", dropNotify(), "U cid 192.0.2.1 10000 f t"},
        EditCase{"c U cid 192.0.2.1 10000 f unix:/n tag", dropNotify(), "U cid 192.0.2.1 10000 f"},
        EditCase{"c U cid 192.0.2.1 10000 f", dropNotify(), "U cid 192.0.2.1 10000 f"},
        EditCase{"c U cid 192.0.2.1 10000 f", local("10.0.0.1"), "Ul10.0.0.1 cid 192.0.2.1 10000 f"},
        EditCase{"c Uc8l192.0.2.5z20 cid 192.0.2.1 10000 f", local("10.0.0.1"), "Uc8l10.0.0.1z20 cid 192.0.2.1 10000 f"},
        EditCase{"c Lal192.0.2.5w cid 192.0.2.1 10000 f t", local("::1"), "Lal[::1]w cid 192.0.2.1 10000 f t"},
        EditCase{"c Ul[::2] cid ::3 10000 f", local("[2001:db8::1]"), "Ul[2001:db8::1] cid ::3 10000 f"},
        EditCase{"c Ul{ext}z20 cid 192.0.2.1 10000 f", local("10.0.0.1"), "Ul10.0.0.1z20 cid 192.0.2.1 10000 f"},
        EditCase{"c Ul1.1.1.1l2.2.2.2 cid 192.0.2.1 10000 f", local("10.0.0.1"), "Ul10.0.0.1 cid 192.0.2.1 10000 f"},
        // The 6 moves to the front so it cannot extend the new IPv4 address.
        EditCase{"c Ul[::2]6 cid ::3 10000 f", local("10.0.0.1"), "U6l10.0.0.1 cid ::3 10000 f"},
        EditCase{"c Ur192.0.2.9 cid 192.0.2.1 10000 f", dropRemote(), "U cid 192.0.2.1 10000 f"},
        EditCase{"c Uz20r[::9]6 cid ::1 10000 f", dropRemote(), "U6z20 cid ::1 10000 f"},
        EditCase{"c Lr192.0.2.9ac0 cid 192.0.2.1 10000 f", dropRemote(), "Lac0 cid 192.0.2.1 10000 f"},
        EditCase{"c U cid 192.0.2.1 10000 f", notify("tcp:%%CC_SELF%%:9000", "x"),
                 "U cid 192.0.2.1 10000 f tcp:%%CC_SELF%%:9000 x"},
        EditCase{"c U cid 192.0.2.1 10000 f t", notify("tcp:%%CC_SELF%%:9000", "x"),
                 "U cid 192.0.2.1 10000 f t tcp:%%CC_SELF%%:9000 x"},
        EditCase{"c U cid 192.0.2.1 10000 f t unix:/n tag", notify("tcp:%%CC_SELF%%:9000", "unix%3A%2Fn%20tag"),
                 "U cid 192.0.2.1 10000 f t tcp:%%CC_SELF%%:9000 unix%3A%2Fn%20tag"},
        EditCase{"c U cid 192.0.2.1 10000 f t unix:/n tag", notify("tcp:h:1", ""),
                 "U cid 192.0.2.1 10000 f t tcp:h:1 tag"},
        EditCase{"c U cid 192.0.2.1 10000 f t", notify("tcp:h:1", ""), "U cid 192.0.2.1 10000 f t"},
        EditCase{"c L cid 192.0.2.1 10000 f t", notify("tcp:h:1", "x"), "L cid 192.0.2.1 10000 f t"},
        EditCase{"c D cid f t", local("10.0.0.1"), "D cid f t"},
        EditCase{"c U cid 192.0.2.1 10000 f t && L 192.0.2.2 20000", swapTags(),
                 "U cid 192.0.2.1 10000 t f && L 192.0.2.2 20000"}));

TEST(FormatCommand, AllEditsTogether) {
  RtppCommand c;
  ASSERT_TRUE(parseDatagram("c Uc8,0r192.0.2.9l192.0.2.5 cid 192.0.2.1 10000 f t unix:/n tag && D", c).ok);
  CommandEdits e;
  e.type_letter = 'U';
  e.swap_tags = true;
  e.local_address = "10.1.1.1";
  e.drop_remote_route = true;
  e.notify_socket = "tcp:%%CC_SELF%%:22297";
  e.notify_tag = "t2";
  EXPECT_EQ(format(c, e), "Uc8,0l10.1.1.1 cid 192.0.2.1 10000 t f tcp:%%CC_SELF%%:22297 t2 && D");
}

TEST(FormatCommand, AppendsAfterExistingContentAndRollsBackOnOverflow) {
  RtppCommand c;
  const std::string wire = "c U cid 192.0.2.1 10000 f " + std::string(8000, 't');
  ASSERT_TRUE(parseDatagram(wire, c).ok);
  CommandBuffer buf;
  ASSERT_TRUE(buf.append(std::string(kCommandBufferBytes - 100, 'p')));
  const size_t before = buf.size();
  EXPECT_FALSE(formatCommand(c, {}, buf));
  EXPECT_EQ(buf.size(), before);

  CommandBuffer ok;
  ASSERT_TRUE(ok.append("cookie "));
  ASSERT_TRUE(formatCommand(c, {}, ok));
  EXPECT_EQ(ok.view(), "cookie " + wire.substr(2));
}

TEST(FormatCommand, RefusesAnUnparsedCommand) {
  RtppCommand c;
  EXPECT_FALSE(parseDatagram("c Z", c).ok);
  c.argc = 0;
  CommandBuffer buf;
  EXPECT_FALSE(formatCommand(c, {}, buf));
}

// glanceAtDatagram feeds only prefetch hints, but it reads raw datagrams:
// every shape must give in-bounds views, and the usual ones the right words.
TEST(GlanceAtDatagram, FindsCookieAndCallIdOfEveryShape) {
  struct Row {
    std::string_view datagram, cookie, call_id;
  };
  const Row rows[] = {
      {"123_4 U abc@host 192.0.2.1 4000 ft;1\n", "123_4", "abc@host"},
      {"123_4 D abc@host ft", "123_4", "abc@host"},
      {"c  Uc0,8  id1  a", "c", "id1"},  // runs of spaces
      {"c V\n", "c", ""},
      {"c V", "c", ""},
      {"c", "c", ""},
      {"", "", ""},
      {" ", "", ""},
      {"c D id\nrest", "c", "id"},
      {std::string_view("c D i\0d x", 10), "c", std::string_view("i\0d", 3)},
  };
  for (const Row& r : rows) {
    const DatagramGlance g = glanceAtDatagram(r.datagram);
    EXPECT_EQ(g.cookie, r.cookie) << r.datagram;
    EXPECT_EQ(g.call_id, r.call_id) << r.datagram;
    // Views into the datagram itself, never past its end.
    if (!g.call_id.empty()) {
      EXPECT_GE(g.call_id.data(), r.datagram.data());
      EXPECT_LE(g.call_id.data() + g.call_id.size(), r.datagram.data() + r.datagram.size());
    }
  }
}

}  // namespace
}  // namespace rtpc
