// The admin command parser: raw lines as an operator or a script types them,
// the exact reference error strings, usage on malformed commands, hostile
// bytes, and the help text generated from the table.

#include "shared/admin_command.h"

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

namespace rtpc {
namespace {

AdminCommand expectCommand(const AdminParseResult& r, const std::string& line) {
  if (const AdminError* e = std::get_if<AdminError>(&r)) {
    ADD_FAILURE() << "line " << testing::PrintToString(line) << " answered " << e->answer;
    return {};
  }
  return std::get<AdminCommand>(r);
}

std::string expectError(const AdminParseResult& r, const std::string& line) {
  if (std::holds_alternative<AdminCommand>(r)) {
    ADD_FAILURE() << "line " << testing::PrintToString(line) << " was accepted";
    return {};
  }
  return std::get<AdminError>(r).answer;
}

TEST(AdminCommandTest, ParsesEveryCommandFormAndAlias) {
  struct Case {
    std::string line;
    AdminAction action;
    AdminFormat format;
    const char* cluster;
    const char* member;
  };
  const Case cases[] = {
      {"ls", AdminAction::kListClusters, AdminFormat::kText, "", ""},
      {"ls\n", AdminAction::kListClusters, AdminFormat::kText, "", ""},
      {"ls\r\n", AdminAction::kListClusters, AdminFormat::kText, "", ""},
      {"  ls  ", AdminAction::kListClusters, AdminFormat::kText, "", ""},
      {"ls json", AdminAction::kListClusters, AdminFormat::kJson, "", ""},
      {"ls c1", AdminAction::kListMembers, AdminFormat::kText, "c1", ""},
      {"ls\tSupercluster#1", AdminAction::kListMembers, AdminFormat::kText, "Supercluster#1", ""},
      {"ls c1 json", AdminAction::kListMembers, AdminFormat::kJson, "c1", ""},
      {"ls json json", AdminAction::kListMembers, AdminFormat::kJson, "json", ""},
      {"workers", AdminAction::kListWorkers, AdminFormat::kText, "", ""},
      {"workers json", AdminAction::kListWorkers, AdminFormat::kJson, "", ""},
      {"modify c1 delete rtpp1", AdminAction::kDeleteMember, AdminFormat::kText, "c1", "rtpp1"},
      {"modify c1 remove rtpp1", AdminAction::kDeleteMember, AdminFormat::kText, "c1", "rtpp1"},
      {"modify c1 pause rtpp1", AdminAction::kSuspendMember, AdminFormat::kText, "c1", "rtpp1"},
      {"modify c1 suspend rtpp1", AdminAction::kSuspendMember, AdminFormat::kText, "c1", "rtpp1"},
      {"modify  c1   resume\trtpp1\r\n", AdminAction::kResumeMember, AdminFormat::kText, "c1", "rtpp1"},
      {"reload", AdminAction::kReload, AdminFormat::kText, "", ""},
      {"help", AdminAction::kHelp, AdminFormat::kText, "", ""},
      {"h", AdminAction::kHelp, AdminFormat::kText, "", ""},
      {"quit", AdminAction::kQuit, AdminFormat::kText, "", ""},
      {"q", AdminAction::kQuit, AdminFormat::kText, "", ""},
      {"exit", AdminAction::kQuit, AdminFormat::kText, "", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.line));
    const AdminCommand cmd = expectCommand(parseAdminLine(c.line), c.line);
    EXPECT_EQ(cmd.action, c.action);
    EXPECT_EQ(cmd.format, c.format);
    EXPECT_EQ(cmd.cluster, c.cluster);
    EXPECT_EQ(cmd.member, c.member);
  }
}

TEST(AdminCommandTest, AnswersTheReferenceErrorStringsExactly) {
  struct Case {
    std::string line;
    const char* answer;
  };
  const Case cases[] = {
      {"", "ERROR: unknown command\n"},
      {"   ", "ERROR: unknown command\n"},
      {"foo", "ERROR: unknown command\n"},
      {"LS", "ERROR: unknown command\n"},
      {"lsx", "ERROR: unknown command\n"},  // the reference's startswith() took this as ls
      {"modifyx c1 add", "ERROR: unknown command\n"},
      {"modify c1 destroy rtpp1", "ERROR: unsupported action: \"destroy\"\n"},
      {"modify c1 ADD name=x", "ERROR: unsupported action: \"ADD\"\n"},
      {"modify c1 \\\"x", "ERROR: unsupported action: \"\\\"x\"\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.line));
    EXPECT_EQ(expectError(parseAdminLine(c.line), c.line), c.answer);
  }
}

TEST(AdminCommandTest, MalformedKnownCommandsGetOneErrorLineWithTheirUsage) {
  const std::string add_usage =
      "modify CLUSTER_NAME add name=NAME,protocol=udp|udp6|unix|cunix|tcp|tcp6,address=ADDRESS,capacity=N,weight=N"
      "[,status=ACTIVE|SUSPENDED][,wan_address=IP][,lan_address=IP][,cmd_out_address=IP]";
  const std::string member_usage = "modify CLUSTER_NAME delete|remove|pause|suspend|resume RTPPROXY_NAME";
  struct Case {
    std::string line;
    std::string answer;
  };
  const Case cases[] = {
      {"workers json x", "ERROR: workers: unexpected argument \"x\"; usage: workers [json]\n"},
      {"workers text", "ERROR: workers: unexpected argument \"text\"; usage: workers [json]\n"},
      {"reload now", "ERROR: reload: unexpected argument \"now\"; usage: reload\n"},
      {"help me", "ERROR: help: unexpected argument \"me\"; usage: help\n"},
      {"quit now", "ERROR: quit: unexpected argument \"now\"; usage: quit\n"},
      {"modify", "ERROR: modify: missing cluster name; usage: " + add_usage + " or " + member_usage + "\n"},
      {"modify c1", "ERROR: modify: missing action; usage: " + add_usage + " or " + member_usage + "\n"},
      {"modify c1 delete", "ERROR: modify delete: missing RTPproxy name; usage: " + member_usage + "\n"},
      {"modify c1 pause a b",
       "ERROR: modify pause: unexpected argument \"b\" (quote a name that holds spaces); usage: " + member_usage +
           "\n"},
      {"modify c1 add", "ERROR: modify add: missing member fields; usage: " + add_usage + "\n"},
      {"modify c1 add name=a, protocol=udp",
       "ERROR: modify add: unexpected argument \"protocol=udp\" (fields are separated by commas, no spaces; quote a "
       "value that holds spaces); usage: " +
           add_usage + "\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.line));
    EXPECT_EQ(expectError(parseAdminLine(c.line), c.line), c.answer);
  }
}

// `ls` followed by several plain words: the reference takes the rest of the
// line as the cluster name; when no such cluster exists the daemon answers the
// strict reading's error, which blames the first word after the longest valid
// beginning.
TEST(AdminCommandTest, LsWithPlainWordsNamesTheRestOfTheLineAndKeepsTheStrictError) {
  struct Case {
    std::string line;
    std::string cluster;
    AdminFormat format;
    std::string blamed;
  };
  const Case cases[] = {
      {"ls Core 1", "Core 1", AdminFormat::kText, "1"},
      {"ls Core 1 json", "Core 1", AdminFormat::kJson, "1"},
      {"ls  Core   one  two", "Core one two", AdminFormat::kText, "one"},
      {"ls c1 extra", "c1 extra", AdminFormat::kText, "extra"},
      {"ls demo json extra", "demo json extra", AdminFormat::kText, "extra"},
      {"ls demo extra json", "demo extra", AdminFormat::kJson, "extra"},
      {"ls c1 json json", "c1 json", AdminFormat::kJson, "json"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line);
    const AdminParseResult parsed = parseAdminLine(c.line);
    ASSERT_TRUE(std::holds_alternative<AdminCommand>(parsed));
    const AdminCommand& command = std::get<AdminCommand>(parsed);
    EXPECT_EQ(command.action, AdminAction::kListMembers);
    EXPECT_EQ(command.cluster, c.cluster);
    EXPECT_EQ(command.format, c.format);
    EXPECT_EQ(command.error_unless_found,
              "ERROR: ls: unexpected argument \"" + c.blamed + "\"; usage: ls [CLUSTER_NAME] [json]\n");
  }
  // A quoted word is never joined: the strict error stands.
  EXPECT_EQ(expectError(parseAdminLine("ls \"Core 1\" x"), "quoted"),
            "ERROR: ls: unexpected argument \"x\"; usage: ls [CLUSTER_NAME] [json]\n");
  // One name: no fallback error.
  EXPECT_TRUE(std::get<AdminCommand>(parseAdminLine("ls c1")).error_unless_found.empty());
}

TEST(AdminCommandTest, ModifyAddProducesAValidatedMemberWithStatusDefaultingToActive) {
  const std::string line =
      "modify Supercluster#1 add name=RTPPROXY5,protocol=udp,address=192.168.222.1:4444,capacity=2500,weight=100";
  const AdminCommand cmd = expectCommand(parseAdminLine(line), line);
  EXPECT_EQ(cmd.action, AdminAction::kAddMember);
  EXPECT_EQ(cmd.cluster, "Supercluster#1");
  MemberConfig expected;
  expected.name = "RTPPROXY5";
  expected.address = SocketAddress{Transport::kUdp, "192.168.222.1", 4444, {}};
  expected.capacity = 2500;
  expected.weight = 100;
  expected.status = AdminStatus::kActive;
  EXPECT_EQ(cmd.new_member, expected);
}

TEST(AdminCommandTest, ModifyAddTakesEveryOptionalFieldInAnyOrder) {
  struct Case {
    std::string fields;
    MemberConfig expected;
  };
  const Case cases[] = {
      {"weight=0,capacity=1,address=[::1]:32323,protocol=UDP6,name=r6,status=suspended",
       {"r6", {Transport::kUdp6, "::1", 32323, {}}, 0, 1, AdminStatus::kSuspended, "", "", ""}},
      {"name=u,protocol=unix,address=/var/run/rtpproxy.sock,capacity=10,weight=5,status=ACTIVE",
       {"u", {Transport::kUnix, {}, 0, "/var/run/rtpproxy.sock"}, 5, 10, AdminStatus::kActive, "", "", ""}},
      {"name=w,protocol=udp,address=10.0.0.1,capacity=+7,weight=1,wan_address=1.2.3.4,lan_address=10.0.0.5,"
       "cmd_out_address=10.0.0.9",
       {"w", {Transport::kUdp, "10.0.0.1", 22222, {}}, 1, 7, AdminStatus::kActive, "1.2.3.4", "10.0.0.5",
        "10.0.0.9"}},
      {"name=v6,protocol=udp6,address=[2001:db8::1]:9,capacity=1000000,weight=1000000,wan_address=2001:db8::2",
       {"v6", {Transport::kUdp6, "2001:db8::1", 9, {}}, 1000000, 1000000, AdminStatus::kActive, "2001:db8::2", "", ""}},
      // An empty optional host leaves it unset, as an empty config element does.
      {"name=e,protocol=udp,address=127.0.0.1:1,capacity=1,weight=1,wan_address=",
       {"e", {Transport::kUdp, "127.0.0.1", 1, {}}, 1, 1, AdminStatus::kActive, "", "", ""}},
  };
  for (const Case& c : cases) {
    const std::string line = "modify c add " + c.fields;
    SCOPED_TRACE(line);
    const AdminCommand cmd = expectCommand(parseAdminLine(line), line);
    EXPECT_EQ(cmd.action, AdminAction::kAddMember);
    EXPECT_EQ(cmd.new_member, c.expected);
  }
}

TEST(AdminCommandTest, ModifyAddNamesTheFieldInEveryFieldError) {
  const std::string ok_rest = "protocol=udp,address=127.0.0.1:1,capacity=1,weight=1";
  struct Case {
    std::string fields;
    const char* problem;  // between "modify add: " and "; usage:"
  };
  const Case cases[] = {
      {"protocol=udp,address=127.0.0.1:1,capacity=1,weight=1", "missing field \"name\""},
      {"name=a,address=127.0.0.1:1,capacity=1,weight=1", "missing field \"protocol\""},
      {"name=a,protocol=udp,capacity=1,weight=1", "missing field \"address\""},
      {"name=a,protocol=udp,address=127.0.0.1:1,weight=1", "missing field \"capacity\""},
      {"name=a,protocol=udp,address=127.0.0.1:1,capacity=1", "missing field \"weight\""},
      {"name=a,colour=red," + ok_rest, "unknown field \"colour\""},
      {"name=a,name=b," + ok_rest, "field \"name\" given twice"},
      {"name=a,," + ok_rest, "empty field (two commas in a row or a comma at an end)"},
      {"name=a," + ok_rest + ",", "empty field (two commas in a row or a comma at an end)"},
      {"name," + ok_rest, "field \"name\" is not key=value"},
      {"name=," + ok_rest, "name must not be empty"},
      {"name=" + std::string(256, 'n') + "," + ok_rest, "name is 256 bytes, at most 255 allowed"},
      {"name=a,protocol=sctp,address=127.0.0.1:1,capacity=1,weight=1",
       "protocol must be one of udp, udp6, unix, cunix, tcp, tcp6, got \"sctp\""},
      {"name=a,protocol=udp,address=,capacity=1,weight=1", "address must not be empty"},
      {"name=a,protocol=udp,address=127.0.0.1:99999,capacity=1,weight=1",
       "address: port must be 1..65535, got \"99999\""},
      {"name=a,protocol=udp,address=127.0.0.1:1,capacity=0,weight=1",
       "capacity must be an integer >= 1, got \"0\""},
      {"name=a,protocol=udp,address=127.0.0.1:1,capacity=-5,weight=1",
       "capacity must be an integer >= 1, got \"-5\""},
      {"name=a,protocol=udp,address=127.0.0.1:1,capacity=4294967296,weight=1",
       "capacity must be at most 4294967295, got \"4294967296\""},
      {"name=a,protocol=udp,address=127.0.0.1:1,capacity=1,weight=abc",
       "weight must be an integer >= 0, got \"abc\""},
      {"name=a,protocol=udp,address=127.0.0.1:1,capacity=1,weight=99999999999999999999999",
       "weight must be at most 4294967295, got \"99999999999999999999999\""},
      {"name=a," + ok_rest + ",status=DRAINING", "status must be ACTIVE or SUSPENDED, got \"DRAINING\""},
      {"name=a," + ok_rest + ",status=", "status must be ACTIVE or SUSPENDED, got \"\""},
      {"name=a," + ok_rest + ",wan_address=1.2.3.4:5",
       "wan_address must be an IP address or host name, got \"1.2.3.4:5\""},
      {"name=a," + ok_rest + ",lan_address=[::1]", "lan_address must be an IP address or host name, got \"[::1]\""},
      {"name=a," + ok_rest + ",cmd_out_address=bad/host",
       "cmd_out_address must be an IP address or host name, got \"bad/host\""},
  };
  for (const Case& c : cases) {
    const std::string line = "modify c add " + c.fields;
    SCOPED_TRACE(line);
    const std::string answer = expectError(parseAdminLine(line), line);
    EXPECT_EQ(answer.rfind("ERROR: modify add: " + std::string(c.problem) + "; usage: modify CLUSTER_NAME add ", 0),
              0u)
        << answer;
    EXPECT_EQ(answer.find('\n'), answer.size() - 1) << "one line";
  }
}

TEST(AdminCommandTest, HostileBytesAreAnsweredWithAnErrorNeverACrash) {
  struct Case {
    std::string line;
    const char* answer;
  };
  const Case cases[] = {
      {std::string("ls\0c1", 5), "ERROR: command line contains a NUL byte\n"},
      {std::string("\0", 1), "ERROR: command line contains a NUL byte\n"},
      {"ls caf\xe9", "ERROR: command line is not UTF-8: byte 0xe9 at offset 6\n"},
      {"ls caf\xc3", "ERROR: command line is not UTF-8: byte 0xc3 at offset 6\n"},
      {"ls \xed\xa0\x80", "ERROR: command line is not UTF-8: byte 0xed at offset 3\n"},  // a surrogate
      {"ls \xc0\xaf", "ERROR: command line is not UTF-8: byte 0xc0 at offset 3\n"},      // overlong '/'
      {"ls \x1b[2J", "ERROR: command line contains the control character 0x1b at offset 3\n"},
      {"ls\x7f", "ERROR: command line contains the control character 0x7f at offset 2\n"},
      {"ls \xc2\x85", "ERROR: command line contains the control character 0x85 at offset 3\n"},  // NEL (C1)
      {"ls\rc1", "ERROR: command line contains the control character 0x0d at offset 2\n"},
      {"ls\n\n", "ERROR: command line contains the control character 0x0a at offset 2\n"},
      {std::string(4097, 'a'), "ERROR: command line is longer than 4096 bytes\n"},
      {"ls " + std::string(5000, 'x') + "\n", "ERROR: command line is longer than 4096 bytes\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.line.substr(0, 40)));
    EXPECT_EQ(expectError(parseAdminLine(c.line), c.line), c.answer);
  }
}

// Names are free text (REFERENCE.md section 2): quoted words address them.
TEST(AdminCommandTest, TokenizerTable) {
  struct Case {
    std::string line;
    std::vector<std::string> words;
    std::vector<bool> quoted;
    std::string error;
  };
  const Case cases[] = {
      {"", {}, {}, ""},
      {" \t ", {}, {}, ""},
      {"ls c1", {"ls", "c1"}, {false, false}, ""},
      {"ls \"Core 1\"", {"ls", "Core 1"}, {false, true}, ""},
      {"ls 'Core 1'", {"ls", "Core 1"}, {false, true}, ""},
      {"ls Core\\ 1", {"ls", "Core 1"}, {false, false}, ""},
      {"ls \"\"", {"ls", ""}, {false, true}, ""},
      {"ls ''", {"ls", ""}, {false, true}, ""},
      {"a\"b c\"d", {"ab cd"}, {true}, ""},
      {"\"say \\\"hi\\\"\"", {"say \"hi\""}, {true}, ""},
      {"\"back\\\\slash\"", {"back\\slash"}, {true}, ""},
      {"'no \\escape'", {"no \\escape"}, {true}, ""},
      {"'it\"s'", {"it\"s"}, {true}, ""},
      {"\"it's\"", {"it's"}, {true}, ""},
      {"\\\"x", {"\"x"}, {false}, ""},
      {"caf\xc3\xa9 \"Zone \xe2\x82\xac\"", {"caf\xc3\xa9", "Zone \xe2\x82\xac"}, {false, true}, ""},
      {"name=\"relay 2\",protocol=udp", {"name=relay 2,protocol=udp"}, {true}, ""},
      {"ls \"Core 1", {}, {}, "unterminated quote (\") opened at offset 3"},
      {"ls 'Core", {}, {}, "unterminated quote (') opened at offset 3"},
      {"ls \"a\\\"", {}, {}, "unterminated quote (\") opened at offset 3"},
      {"ls a\\", {}, {}, "backslash at the end of the line (write \\\\ for a backslash)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.line));
    const TokenizeResult r = tokenizeAdminLine(c.line);
    EXPECT_EQ(r.error, c.error);
    if (!c.error.empty()) continue;
    EXPECT_EQ(r.words, c.words);
    EXPECT_EQ(r.quoted, c.quoted);
  }
}

TEST(AdminCommandTest, QuotedNamesWithSpacesAndUtf8ReachEveryCommand) {
  struct Case {
    std::string line;
    AdminAction action;
    AdminFormat format;
    std::string cluster;
    std::string member;
  };
  const Case cases[] = {
      {"ls \"Core 1\"", AdminAction::kListMembers, AdminFormat::kText, "Core 1", ""},
      {"ls \"Core 1\" json", AdminAction::kListMembers, AdminFormat::kJson, "Core 1", ""},
      {"ls caf\xc3\xa9", AdminAction::kListMembers, AdminFormat::kText, "caf\xc3\xa9", ""},
      {"ls \"json\"", AdminAction::kListMembers, AdminFormat::kText, "json", ""},  // a quoted json is a name
      {"ls 'json' json", AdminAction::kListMembers, AdminFormat::kJson, "json", ""},
      {"modify \"Core 1\" pause \"relay 2\"", AdminAction::kSuspendMember, AdminFormat::kText, "Core 1", "relay 2"},
      {"modify \"Core 1\" resume 'relay 2'", AdminAction::kResumeMember, AdminFormat::kText, "Core 1", "relay 2"},
      {"modify Core\\ 1 delete \"r\\\"q\"", AdminAction::kDeleteMember, AdminFormat::kText, "Core 1", "r\"q"},
      {"modify \"\xd0\xa1\xd0\xb5\xd1\x82\xd1\x8c\" remove \"\xe4\xb8\xad\xe7\xbb\xa7 1\"", AdminAction::kDeleteMember,
       AdminFormat::kText, "\xd0\xa1\xd0\xb5\xd1\x82\xd1\x8c", "\xe4\xb8\xad\xe7\xbb\xa7 1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.line));
    const AdminCommand cmd = expectCommand(parseAdminLine(c.line), c.line);
    EXPECT_EQ(cmd.action, c.action);
    EXPECT_EQ(cmd.format, c.format);
    EXPECT_EQ(cmd.cluster, c.cluster);
    EXPECT_EQ(cmd.member, c.member);
  }
  const std::string add = "modify \"Core 1\" add name=\"relay 2\",protocol=udp,address=127.0.0.1:9,capacity=5000000,weight=1";
  const AdminCommand cmd = expectCommand(parseAdminLine(add), add);
  EXPECT_EQ(cmd.action, AdminAction::kAddMember);
  EXPECT_EQ(cmd.cluster, "Core 1");
  EXPECT_EQ(cmd.new_member.name, "relay 2");
  EXPECT_EQ(cmd.new_member.capacity, 5000000u);

  EXPECT_EQ(expectError(parseAdminLine("ls \"Core 1"), "unterminated"),
            "ERROR: unterminated quote (\") opened at offset 3\n");
}

TEST(AdminCommandTest, QuoteAdminWordRoundTrips) {
  const std::string words[] = {"c1", "Core 1", "", "say \"hi\"", "back\\slash", "it's", "tab\there",
                               "caf\xc3\xa9", "\\\"'", "json"};
  for (const std::string& w : words) {
    SCOPED_TRACE(testing::PrintToString(w));
    const TokenizeResult r = tokenizeAdminLine(quoteAdminWord(w));
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.words, std::vector<std::string>{w});
  }
  EXPECT_EQ(quoteAdminWord("c1"), "c1");
  EXPECT_EQ(quoteAdminWord("Core 1"), "\"Core 1\"");
  EXPECT_EQ(quoteAdminWord("a\"b"), "\"a\\\"b\"");
}

// What the client builds from any words, the daemon splits back into the
// same words; random lines never crash the parser.
TEST(AdminCommandTest, RandomWordsRoundTripAndRandomLinesNeverCrash) {
  uint64_t state = 0x9e3779b97f4a7c15ull;
  const auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  static constexpr char kAlphabet[] = {'a', 'Z', '0', ' ', ' ', '"', '\'', '\\', '=', ',', '#', '\xc3', '\xa9'};
  for (int round = 0; round < 5000; ++round) {
    std::vector<std::string> words(1 + next() % 4);
    std::string line;
    for (std::string& w : words) {
      const size_t n = next() % 8;
      for (size_t i = 0; i < n; ++i) w += kAlphabet[next() % sizeof kAlphabet];
      if (!line.empty()) line += ' ';
      line += quoteAdminWord(w);
    }
    const TokenizeResult r = tokenizeAdminLine(line);
    ASSERT_EQ(r.error, "") << line;
    ASSERT_EQ(r.words, words) << line;
    std::string noise;
    for (size_t i = 0, n = next() % 40; i < n; ++i) noise += static_cast<char>(next() & 0xff);
    const AdminParseResult parsed = parseAdminLine(noise);
    if (const AdminError* e = std::get_if<AdminError>(&parsed)) {
      EXPECT_EQ(e->answer.rfind("ERROR: ", 0), 0u);
      EXPECT_EQ(e->answer.find('\n'), e->answer.size() - 1);
    }
  }
}

TEST(AdminCommandTest, ANameLongerThanAnyNameIsNotFoundAndEchoedCut) {
  const std::string huge(4000, 'x');
  const std::string cut = std::string(64, 'x') + "...";
  EXPECT_EQ(expectError(parseAdminLine("ls " + huge), "ls"), "ERROR: " + cut + ": cluster not found\n");
  EXPECT_EQ(expectError(parseAdminLine("ls " + huge + " json"), "ls json"), "ERROR: " + cut + ": cluster not found\n");
  EXPECT_EQ(expectError(parseAdminLine("modify " + huge + " pause r"), "modify"),
            "ERROR: " + cut + ": cluster not found\n");
  // A cut never splits a UTF-8 character: 63 ASCII bytes then a 2-byte one.
  const std::string utf8 = std::string(63, 'y') + "\xc3\xa9" + std::string(300, 'z');
  EXPECT_EQ(expectError(parseAdminLine("ls \"" + utf8 + "\""), "ls utf8"),
            "ERROR: " + std::string(63, 'y') + "...: cluster not found\n");
}

TEST(AdminCommandTest, LongestAcceptedLineIsExactly4096Bytes) {
  const std::string at_limit = "ls c1" + std::string(4091, ' ');
  ASSERT_EQ(at_limit.size(), kMaxAdminLineBytes);
  EXPECT_EQ(expectCommand(parseAdminLine(at_limit + "\r\n"), "4096").cluster, "c1");
  EXPECT_TRUE(std::holds_alternative<AdminError>(parseAdminLine(at_limit + "c")));
}

TEST(AdminCommandTest, HostileUnsupportedActionIsQuotedAndCut) {
  const std::string line = "modify c " + std::string(100, 'z');
  EXPECT_EQ(expectError(parseAdminLine(line), line),
            "ERROR: unsupported action: \"" + std::string(64, 'z') + "\"...\n");
}

TEST(AdminCommandTest, HelpIsGeneratedFromTheTableLikeTheReference) {
  const std::string help = helpText();
  EXPECT_EQ(help,
            "Supported commands:\n"
            "\tls [CLUSTER_NAME] [json]\n"
            "\tworkers [json]\n"
            "\tmodify CLUSTER_NAME add name=NAME,protocol=udp|udp6|unix|cunix|tcp|tcp6,address=ADDRESS,capacity=N,weight=N"
            "[,status=ACTIVE|SUSPENDED][,wan_address=IP][,lan_address=IP][,cmd_out_address=IP]\n"
            "\tmodify CLUSTER_NAME delete|remove|pause|suspend|resume RTPPROXY_NAME\n"
            "\treload\n"
            "\thelp (also h)\n"
            "\tquit (also q, exit)\n");
  EXPECT_EQ(help.find("OK"), std::string::npos);
  // Every row's usage is in the help, and every row's name parses.
  for (const AdminCommandSpec& spec : adminCommands()) {
    EXPECT_NE(help.find("\t" + std::string(spec.usage)), std::string::npos) << spec.usage;
    const AdminParseResult r = parseAdminLine(spec.name);
    if (const AdminError* e = std::get_if<AdminError>(&r)) {
      EXPECT_EQ(e->answer.find("unknown command"), std::string::npos) << spec.name;
    }
  }
}

}  // namespace
}  // namespace rtpc
