#include "shared/admin_command.h"

#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "shared/member_fields.h"
#include "shared/quote.h"

namespace rtpc {
namespace {

constexpr std::string_view kAddUsage =
    "modify CLUSTER_NAME add name=NAME,protocol=udp|udp6|unix|cunix|tcp|tcp6,address=ADDRESS,capacity=N,weight=N"
    "[,status=ACTIVE|SUSPENDED][,wan_address=IP][,lan_address=IP][,cmd_out_address=IP]";
constexpr std::string_view kMemberUsage = "modify CLUSTER_NAME delete|remove|pause|suspend|resume RTPPROXY_NAME";

constexpr std::array<AdminCommandSpec, 7> kCommands = {{
    {"ls", {}, "ls [CLUSTER_NAME] [json]", AdminHandler::kList},
    {"workers", {}, "workers [json]", AdminHandler::kWorkers},
    {"modify", {}, kAddUsage, AdminHandler::kModifyAdd},
    {"modify", {}, kMemberUsage, AdminHandler::kModifyMember},
    {"reload", {}, "reload", AdminHandler::kReload},
    {"help", {"h"}, "help", AdminHandler::kHelp},
    {"quit", {"q", "exit"}, "quit", AdminHandler::kQuit},
}};

struct MemberActionWord {
  std::string_view word;
  AdminAction action;
};
constexpr MemberActionWord kMemberActions[] = {
    {"delete", AdminAction::kDeleteMember},   {"remove", AdminAction::kDeleteMember},
    {"pause", AdminAction::kSuspendMember},   {"suspend", AdminAction::kSuspendMember},
    {"resume", AdminAction::kResumeMember},
};

std::string_view usageOf(AdminHandler handler) {
  for (const AdminCommandSpec& spec : kCommands) {
    if (spec.handler == handler) return spec.usage;
  }
  return {};
}

bool matches(const AdminCommandSpec& spec, std::string_view word) {
  if (spec.name == word) return true;
  for (std::string_view alias : spec.aliases) {
    if (!alias.empty() && alias == word) return true;
  }
  return false;
}

AdminError error(std::string_view text) {
  std::string answer;
  answer.reserve(text.size() + 8);
  answer += "ERROR: ";
  answer += text;
  answer += '\n';
  return AdminError{std::move(answer)};
}

// "ERROR: <command>: <problem>; usage: <usage>": a malformed known command
// gets its usage back so the operator can correct it in one go.
AdminError malformed(std::string_view command, std::string_view problem, std::string_view usage) {
  std::string text(command);
  text += ": ";
  text += problem;
  text += "; usage: ";
  text += usage;
  return error(text);
}

// Words separated by runs of spaces or tabs (the reference's split()).
std::vector<std::string_view> splitWords(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

// The member's fields are checked by the config loader's rules
// (member_fields.h): a member added at run time could equally have been
// configured.
AdminParseResult parseAddFields(std::string_view list, AdminCommand command) {
  constexpr std::string_view kWhat = "modify add";
  std::array<std::optional<std::string_view>, kMemberFields.size()> values{};
  size_t pos = 0;
  while (true) {
    const size_t comma = list.find(',', pos);
    const std::string_view field = list.substr(pos, comma == std::string_view::npos ? list.npos : comma - pos);
    if (field.empty()) return malformed(kWhat, "empty field (two commas in a row or a comma at an end)", kAddUsage);
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) {
      return malformed(kWhat, "field " + quoteForMessage(field) + " is not key=value", kAddUsage);
    }
    const std::string_view key = field.substr(0, eq);
    size_t index = kMemberFields.size();
    for (size_t i = 0; i < kMemberFields.size(); ++i) {
      if (kMemberFields[i].key == key) index = i;
    }
    if (index == kMemberFields.size()) return malformed(kWhat, "unknown field " + quoteForMessage(key), kAddUsage);
    if (values[index]) return malformed(kWhat, "field " + quoteForMessage(key) + " given twice", kAddUsage);
    values[index] = field.substr(eq + 1);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  for (size_t i = 0; i < kMemberFields.size(); ++i) {
    if (kMemberFields[i].required && !values[i]) {
      return malformed(kWhat, "missing field " + quoteForMessage(kMemberFields[i].key), kAddUsage);
    }
  }
  MemberConfig& m = command.new_member;
  // The reference crashes without status; ACTIVE is what its configs mean.
  m.status = AdminStatus::kActive;
  for (size_t i = 0; i < kMemberFields.size(); ++i) {
    const MemberFieldSpec& spec = kMemberFields[i];
    if (!values[i]) continue;
    if (std::optional<std::string> problem = setMemberField(m, spec.field, *values[i], spec.key)) {
      return malformed(kWhat, *problem, kAddUsage);
    }
  }
  return command;
}

AdminParseResult parseList(const std::vector<std::string_view>& words) {
  const std::string_view usage = usageOf(AdminHandler::kList);
  AdminCommand command;
  size_t n = words.size();
  if (n >= 2 && words[n - 1] == "json") {
    command.format = AdminFormat::kJson;
    --n;
  }
  if (n == 1) {
    command.action = AdminAction::kListClusters;
    return command;
  }
  if (n == 2) {
    command.action = AdminAction::kListMembers;
    command.cluster = std::string(words[1]);
    return command;
  }
  return malformed("ls", "unexpected argument " + quoteForMessage(words[2]), usage);
}

AdminParseResult parseModify(const std::vector<std::string_view>& words) {
  const std::string both = std::string(kAddUsage) + " or " + std::string(kMemberUsage);
  if (words.size() < 2) return malformed("modify", "missing cluster name", both);
  if (words.size() < 3) return malformed("modify", "missing action", both);
  AdminCommand command;
  command.cluster = std::string(words[1]);
  const std::string_view action = words[2];
  if (action == "add") {
    if (words.size() < 4) return malformed("modify add", "missing member fields", kAddUsage);
    if (words.size() > 4) {
      return malformed("modify add",
                       "unexpected argument " + quoteForMessage(words[4]) + " (fields are separated by commas, no spaces)",
                       kAddUsage);
    }
    command.action = AdminAction::kAddMember;
    return parseAddFields(words[3], std::move(command));
  }
  for (const MemberActionWord& a : kMemberActions) {
    if (a.word != action) continue;
    const std::string what = "modify " + std::string(action);
    if (words.size() < 4) return malformed(what, "missing RTPproxy name", kMemberUsage);
    if (words.size() > 4) return malformed(what, "unexpected argument " + quoteForMessage(words[4]), kMemberUsage);
    command.action = a.action;
    command.member = std::string(words[3]);
    return command;
  }
  return error("unsupported action: " + quoteForMessage(action));
}

AdminParseResult parseNoArguments(const std::vector<std::string_view>& words, const AdminCommandSpec& spec,
                                  AdminAction action) {
  if (words.size() > 1) {
    return malformed(spec.name, "unexpected argument " + quoteForMessage(words[1]), spec.usage);
  }
  AdminCommand command;
  command.action = action;
  return command;
}

AdminParseResult parseWords(const std::vector<std::string_view>& words) {
  if (words.empty()) return error("unknown command");
  for (const AdminCommandSpec& spec : kCommands) {
    if (!matches(spec, words[0])) continue;
    switch (spec.handler) {
      case AdminHandler::kList:
        return parseList(words);
      case AdminHandler::kWorkers: {
        AdminCommand command;
        command.action = AdminAction::kListWorkers;
        if (words.size() == 2 && words[1] == "json") {
          command.format = AdminFormat::kJson;
          return command;
        }
        if (words.size() == 1) return command;
        return malformed("workers", "unexpected argument " + quoteForMessage(words[1]), spec.usage);
      }
      case AdminHandler::kModifyAdd:
      case AdminHandler::kModifyMember:
        return parseModify(words);
      case AdminHandler::kReload:
        return parseNoArguments(words, spec, AdminAction::kReload);
      case AdminHandler::kHelp:
        return parseNoArguments(words, spec, AdminAction::kHelp);
      case AdminHandler::kQuit:
        return parseNoArguments(words, spec, AdminAction::kQuit);
    }
  }
  return error("unknown command");
}

}  // namespace

std::span<const AdminCommandSpec> adminCommands() { return kCommands; }

std::string helpText() {
  std::string text = "Supported commands:\n";
  for (const AdminCommandSpec& spec : kCommands) {
    text += '\t';
    text += spec.usage;
    bool first = true;
    for (std::string_view alias : spec.aliases) {
      if (alias.empty()) continue;
      text += first ? " (also " : ", ";
      text += alias;
      first = false;
    }
    if (!first) text += ')';
    text += '\n';
  }
  return text;
}

AdminParseResult parseAdminLine(std::string_view line) {
  try {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kMaxAdminLineBytes) {
      return error("command line is longer than " + std::to_string(kMaxAdminLineBytes) + " bytes");
    }
    for (size_t i = 0; i < line.size(); ++i) {
      const auto c = static_cast<unsigned char>(line[i]);
      if (c == 0) return error("command line contains a NUL byte");
      if ((c < 0x20 && c != '\t') || c >= 0x7f) {
        static constexpr char kHex[] = "0123456789abcdef";
        std::string what = "command line contains the byte 0x";
        what += kHex[c >> 4];
        what += kHex[c & 0xf];
        what += " at offset " + std::to_string(i) + " (only printable ASCII is accepted)";
        return error(what);
      }
    }
    return parseWords(splitWords(line));
  } catch (...) {
    // Only allocation can fail here; the caller's loop must survive it.
    return AdminError{"ERROR: out of memory\n"};
  }
}

}  // namespace rtpc
