// The member field rules (shared/member_fields.h) directly, and through both
// of their users: a bad value in a config file's <rtpproxy> and the same value
// in `modify add` must be refused, with the same words after the field's label.

#include "shared/member_fields.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <variant>

#include "shared/admin_command.h"
#include "shared/config_loader.h"

namespace rtpc {
namespace {

struct BadValue {
  const char* key;
  std::string value;
  std::string problem;  // after the label
};

// One bad value per rule of every field.
const BadValue kBadValues[] = {
    {"name", "", " must not be empty"},
    {"name", std::string(256, 'n'), " is 256 bytes, at most 255 allowed"},
    {"protocol", "sctp", " must be one of udp, udp6, unix, cunix, tcp, tcp6, got \"sctp\""},
    {"protocol", "", " must be one of udp, udp6, unix, cunix, tcp, tcp6, got \"\""},
    {"address", "", " must not be empty"},
    {"address", "127.0.0.1:99999", ": port must be 1..65535, got \"99999\""},
    {"weight", "abc", " must be an integer >= 0, got \"abc\""},
    {"weight", "-1", " must be an integer >= 0, got \"-1\""},
    {"weight", "", " must be an integer >= 0, got \"\""},
    {"weight", "4294967296", " must be at most 4294967295, got \"4294967296\""},
    {"weight", "99999999999999999999999", " must be at most 4294967295, got \"99999999999999999999999\""},
    {"capacity", "0", " must be an integer >= 1, got \"0\""},
    {"capacity", "+", " must be an integer >= 1, got \"+\""},
    {"capacity", "4294967296", " must be at most 4294967295, got \"4294967296\""},
    {"status", "DRAINING", " must be ACTIVE or SUSPENDED, got \"DRAINING\""},
    {"status", "", " must be ACTIVE or SUSPENDED, got \"\""},
    {"wan_address", "1.2.3.4:5", " must be an IP address or host name, got \"1.2.3.4:5\""},
    {"lan_address", "[::1]", " must be an IP address or host name, got \"[::1]\""},
    {"cmd_out_address", "bad/host", " must be an IP address or host name, got \"bad/host\""},
};

// A valid member with `key` replaced by `value` (or added when optional).
struct MemberText {
  std::string name = "a";
  std::string protocol = "udp";
  std::string address = "127.0.0.1:2";
  std::string weight = "1";
  std::string capacity = "1";
  std::optional<std::string> status, wan_address, lan_address, cmd_out_address;

  explicit MemberText(const std::string& key, const std::string& value) {
    if (key == "name") name = value;
    if (key == "protocol") protocol = value;
    if (key == "address") address = value;
    if (key == "weight") weight = value;
    if (key == "capacity") capacity = value;
    if (key == "status") status = value;
    if (key == "wan_address") wan_address = value;
    if (key == "lan_address") lan_address = value;
    if (key == "cmd_out_address") cmd_out_address = value;
  }
  // Every field as (key, value), in the order of kMemberFields.
  template <typename F>
  void each(F f) const {
    f("name", name);
    f("protocol", protocol);
    f("address", address);
    f("weight", weight);
    f("capacity", capacity);
    if (status) f("status", *status);
    if (wan_address) f("wan_address", *wan_address);
    if (lan_address) f("lan_address", *lan_address);
    if (cmd_out_address) f("cmd_out_address", *cmd_out_address);
  }
};

// The config loader's words about the member: what follows "<key>".
std::string loaderProblem(const MemberText& m, const std::string& key) {
  std::string xml =
      "<rtp_cluster_config><rtp_cluster><name>c</name><protocol>udp</protocol><address>127.0.0.1:1</address>"
      "<rtpproxy>";
  m.each([&xml](const std::string& k, const std::string& v) { xml += "<" + k + ">" + v + "</" + k + ">"; });
  xml += "</rtpproxy></rtp_cluster></rtp_cluster_config>";
  const LoadResult r = loadConfigText(xml, "rtp_cluster.xml");
  if (r.ok()) return "(loaded)";
  const std::string label = "<" + key + ">";
  const size_t at = r.error.find(": " + label);
  if (at == std::string::npos) return "(unexpected: " + r.error + ")";
  return r.error.substr(at + 2 + label.size());
}

// `modify add`'s words about the member: what follows "modify add: key".
std::string adminProblem(const MemberText& m, const std::string& key) {
  std::string fields;
  m.each([&fields](const std::string& k, const std::string& v) {
    if (!fields.empty()) fields += ',';
    fields += k + "=" + v;
  });
  const AdminParseResult r = parseAdminLine("modify c add " + fields);
  const AdminError* e = std::get_if<AdminError>(&r);
  if (e == nullptr) return "(accepted)";
  const std::string head = "ERROR: modify add: " + key;
  const size_t end = e->answer.find("; usage: ");
  if (e->answer.rfind(head, 0) != 0 || end == std::string::npos) return "(unexpected: " + e->answer + ")";
  return e->answer.substr(head.size(), end - head.size());
}

TEST(MemberFieldsTest, ConfigFileAndModifyAddRefuseTheSameBadValueWithTheSameWords) {
  for (const BadValue& c : kBadValues) {
    SCOPED_TRACE(std::string(c.key) + "=" + c.value);
    const MemberText member(c.key, c.value);
    EXPECT_EQ(loaderProblem(member, c.key), c.problem);
    EXPECT_EQ(adminProblem(member, c.key), c.problem);
  }
}

TEST(MemberFieldsTest, ConfigFileAndModifyAddAcceptTheSameMember) {
  // The loader trims XML white space, so the values have none.
  std::string xml =
      "<rtp_cluster_config><rtp_cluster><name>c</name><protocol>udp</protocol><address>127.0.0.1:1</address>"
      "<rtpproxy><name>r</name><protocol>udp6</protocol><address>[::1]</address><weight>+0</weight>"
      "<capacity>1000000</capacity><status>suspended</status><wan_address>2001:db8::2</wan_address>"
      "<lan_address>10.0.0.5</lan_address><cmd_out_address>relay.example</cmd_out_address></rtpproxy>"
      "</rtp_cluster></rtp_cluster_config>";
  const LoadResult loaded = loadConfigText(xml, "rtp_cluster.xml");
  ASSERT_TRUE(loaded.ok()) << loaded.error;
  const AdminParseResult added = parseAdminLine(
      "modify c add name=r,protocol=udp6,address=[::1],weight=+0,capacity=1000000,status=suspended,"
      "wan_address=2001:db8::2,lan_address=10.0.0.5,cmd_out_address=relay.example");
  ASSERT_TRUE(std::holds_alternative<AdminCommand>(added)) << std::get<AdminError>(added).answer;
  const MemberConfig& configured = loaded.config->clusters.at(0).members.at(0);
  EXPECT_EQ(std::get<AdminCommand>(added).new_member, configured);
  EXPECT_EQ(configured.address.port, kDefaultControlPort);
  EXPECT_EQ(configured.status, AdminStatus::kSuspended);
}

TEST(MemberFieldsTest, SetMemberFieldNamesTheFieldWithTheCallersLabel) {
  struct Case {
    MemberField field;
    const char* text;
    const char* label;
    const char* complaint;  // nullptr: accepted
  };
  const Case cases[] = {
      // Names are free text as in the reference: spaces and any UTF-8.
      {MemberField::kName, "r 1", "<name>", nullptr},
      {MemberField::kName, "Supercluster#1", "<name>", nullptr},
      {MemberField::kName, "caf\xc3\xa9 \xe4\xb8\xad\xe7\xbb\xa7, \"A\" & <B>", "name", nullptr},
      {MemberField::kName, "r\x7f", "name", "name must not contain control characters, got \"r\\x7f\""},
      {MemberField::kName, "r\t1", "name", "name must not contain control characters, got \"r\\x091\""},
      {MemberField::kName, "r\xc2\x85", "name", "name must not contain control characters, got \"r\xc2\x85\""},
      {MemberField::kName, "r\xc0\xaf", "name", "name must be UTF-8 text, got \"r\xc0\xaf\""},
      {MemberField::kName, "r1", "name", nullptr},
      {MemberField::kCapacity, "2500000", "capacity", nullptr},
      {MemberField::kCapacity, "2_500_000", "capacity", nullptr},  // Python's int() takes it
      {MemberField::kCapacity, "2__5", "capacity", "capacity must be an integer >= 1, got \"2__5\""},
      {MemberField::kCapacity, "_25", "capacity", "capacity must be an integer >= 1, got \"_25\""},
      {MemberField::kCapacity, "25_", "capacity", "capacity must be an integer >= 1, got \"25_\""},
      {MemberField::kWeight, "+_1", "weight", "weight must be an integer >= 0, got \"+_1\""},
      {MemberField::kCapacity, "4294967295", "capacity", nullptr},
      {MemberField::kWeight, "4294967295", "weight", nullptr},
      {MemberField::kWeight, "+7", "weight", nullptr},
      {MemberField::kWeight, "1e3", "weight", "weight must be an integer >= 0, got \"1e3\""},
      {MemberField::kCapacity, "18446744073709551616", "<capacity>",
       "<capacity> must be at most 4294967295, got \"18446744073709551616\""},
      {MemberField::kWanAddress, "", "wan_address", nullptr},
      {MemberField::kStatus, "Active", "status", nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    MemberConfig member;
    const std::optional<std::string> got = setMemberField(member, c.field, c.text, c.label);
    if (c.complaint == nullptr) {
      EXPECT_EQ(got, std::nullopt);
    } else {
      EXPECT_EQ(got, std::optional<std::string>(c.complaint));
    }
  }
}

TEST(MemberFieldsTest, AddressIsParsedForTheProtocolSetBeforeIt) {
  MemberConfig member;
  ASSERT_EQ(setMemberField(member, MemberField::kProtocol, "unix", "protocol"), std::nullopt);
  ASSERT_EQ(setMemberField(member, MemberField::kAddress, "/run/rtpp.sock", "address"), std::nullopt);
  EXPECT_EQ(member.address.transport, Transport::kUnix);
  EXPECT_EQ(member.address.path, "/run/rtpp.sock");
  // The same text is no udp address.
  MemberConfig udp;
  ASSERT_EQ(setMemberField(udp, MemberField::kProtocol, "udp", "protocol"), std::nullopt);
  EXPECT_NE(setMemberField(udp, MemberField::kAddress, "/run/rtpp.sock", "address"), std::nullopt);
}

TEST(MemberFieldsTest, TheTableListsEveryFieldOnceWithTheRequiredOnesFirst) {
  bool optional_seen = false;
  for (size_t i = 0; i < kMemberFields.size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(kMemberFields[i].field), i) << kMemberFields[i].key;
    EXPECT_EQ(kMemberFieldKeys[i], kMemberFields[i].key);
    if (!kMemberFields[i].required) optional_seen = true;
    EXPECT_FALSE(optional_seen && kMemberFields[i].required) << kMemberFields[i].key;
  }
  EXPECT_EQ(kMemberFields.size(), static_cast<size_t>(MemberField::kCmdOutAddress) + 1);
}

}  // namespace
}  // namespace rtpc
