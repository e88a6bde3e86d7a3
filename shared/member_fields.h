#pragma once
// The rules for an RTPproxy member's fields, in one place for both ways a
// member comes to be: a <rtpproxy> element of the config file and
// `modify <cluster> add k=v,...` at run time. A member added at run time is
// then exactly one that could have been configured, and both paths describe
// a bad value in the same words; only the field's label differs ("<weight>"
// in the file, "weight" on the admin line), and the caller supplies it.
//
// Each check returns the complete complaint starting with the label, e.g.
// `<weight> must be an integer >= 0, got "abc"`, or nullopt when the value is
// valid. Texts are taken as given: the loader trims XML white space first.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shared/address.h"
#include "shared/config.h"

namespace rtpc {

enum class MemberField : uint8_t {
  kName,
  kProtocol,
  kAddress,
  kWeight,
  kCapacity,
  kStatus,
  kWanAddress,
  kLanAddress,
  kCmdOutAddress,
};

struct MemberFieldSpec {
  MemberField field;
  std::string_view key;  // the XML element and the `modify add` key
  bool required;
};

// Every field in the order both paths check them: protocol before address,
// which is parsed for that protocol.
inline constexpr std::array<MemberFieldSpec, 9> kMemberFields = {{
    {MemberField::kName, "name", true},
    {MemberField::kProtocol, "protocol", true},
    {MemberField::kAddress, "address", true},
    {MemberField::kWeight, "weight", true},
    {MemberField::kCapacity, "capacity", true},
    {MemberField::kStatus, "status", false},
    {MemberField::kWanAddress, "wan_address", false},
    {MemberField::kLanAddress, "lan_address", false},
    {MemberField::kCmdOutAddress, "cmd_out_address", false},
}};

inline constexpr std::array<std::string_view, kMemberFields.size()> kMemberFieldKeys = [] {
  std::array<std::string_view, kMemberFields.size()> keys{};
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = kMemberFields[i].key;
  return keys;
}();

// Stores one field's value in `member`. kAddress is parsed for the transport
// that kProtocol stored in member.address, so set the protocol first (the
// order of kMemberFields). An empty wan/lan/cmd_out address leaves it unset.
std::optional<std::string> setMemberField(MemberConfig& member, MemberField field, std::string_view text,
                                          std::string_view label);

// The single rules setMemberField is made of; a cluster's fields of the same
// kind (its name, protocol and control address, the <tuning> numbers) use them too.

// Free text as in the reference (spaces and any UTF-8 included; the admin
// CLI addresses such names with quotes): refused only when empty, longer than
// kMaxNameBytes, not UTF-8, or holding a control character (which no one
// means and which would break log lines and the worker channel's framing).
std::optional<std::string> checkNameField(std::string_view text, std::string_view label);

std::optional<std::string> parseProtocolField(std::string_view text, std::string_view label, Transport& out);

std::optional<std::string> parseAddressField(Transport transport, std::string_view text, std::string_view label,
                                             uint16_t default_port, SocketAddress& out);

// Unsigned decimal with an optional '+' and '_' between digits (as the
// reference's int() takes it: "+2_500" is 2500) in [min, max].
std::optional<std::string> parseIntegerField(std::string_view text, uint32_t min, uint32_t max,
                                             std::string_view label, uint32_t& out);

// ACTIVE or SUSPENDED in any letter case.
std::optional<std::string> parseStatusField(std::string_view text, std::string_view label, AdminStatus& out);

// An IP literal or a host name, no port; empty is valid (unset).
std::optional<std::string> checkHostField(std::string_view text, std::string_view label);

}  // namespace rtpc
