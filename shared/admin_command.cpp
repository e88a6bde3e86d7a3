#include "shared/admin_command.h"

#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "shared/member_fields.h"
#include "shared/quote.h"
#include "shared/utf8.h"

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

// A word of the line: its text with quotes and escapes removed, and whether
// any of it was quoted (a quoted "json" is a name, not the keyword).
struct Word {
  std::string text;
  bool quoted = false;
};

// Returns the words, or the error answer's text for a line that cannot be
// split (unterminated quote, backslash at the end).
std::variant<std::vector<Word>, std::string> splitWords(std::string_view line) {
  const TokenizeResult r = tokenizeAdminLine(line);
  if (!r.error.empty()) return r.error;
  std::vector<Word> words;
  words.reserve(r.words.size());
  for (size_t i = 0; i < r.words.size(); ++i) words.push_back(Word{r.words[i], r.quoted[i]});
  return words;
}

// The member's fields are checked by the config loader's rules
// (member_fields.h): a member added at run time could equally have been
// configured.
AdminParseResult parseAddFields(std::string_view list, AdminCommand command) {
  std::variant<MemberConfig, std::string> member = parseMemberFieldList(list, ',');
  if (auto* problem = std::get_if<std::string>(&member)) return malformed("modify add", *problem, kAddUsage);
  command.new_member = std::move(std::get<MemberConfig>(member));
  return command;
}

// A cluster or member name longer than any name can be is not found, and
// is echoed cut (docs/admin.md: values in messages are cut after 64 bytes).
bool tooLongForAName(std::string_view name) { return name.size() > kMaxNameBytes; }

AdminError clusterNotFound(std::string_view name) { return error(nameForMessage(name) + ": cluster not found"); }

bool isKeyword(const Word& word, std::string_view keyword) { return !word.quoted && word.text == keyword; }

AdminParseResult parseList(const std::vector<Word>& words) {
  const std::string_view usage = usageOf(AdminHandler::kList);
  AdminCommand command;
  const size_t n = words.size();
  // Valid: ls | ls json | ls NAME | ls NAME json. A quoted "json" is a name.
  if (n == 1) {
    command.action = AdminAction::kListClusters;
    return command;
  }
  if (n == 2 && isKeyword(words[1], "json")) {
    command.action = AdminAction::kListClusters;
    command.format = AdminFormat::kJson;
    return command;
  }
  // The first word after the longest valid beginning is the wrong one.
  const size_t valid = n >= 3 && isKeyword(words[2], "json") ? 3 : 2;
  if (n > valid) {
    AdminError strict = malformed("ls", "unexpected argument " + quoteForMessage(words[valid].text), usage);
    // The reference (`cmd.split(None, 1)`) takes the rest of the line as the
    // name: `ls Core 1` lists cluster "Core 1". Only plain words are joined.
    const bool json = isKeyword(words[n - 1], "json");
    const size_t last = json ? n - 1 : n;
    for (size_t i = 1; i < last; ++i) {
      if (words[i].quoted || words[i].text.empty()) return strict;
    }
    std::string joined = words[1].text;
    for (size_t i = 2; i < last; ++i) {
      joined += ' ';
      joined += words[i].text;
    }
    if (tooLongForAName(joined)) return strict;
    command.action = AdminAction::kListMembers;
    command.format = json ? AdminFormat::kJson : AdminFormat::kText;
    command.cluster = std::move(joined);
    command.error_unless_found = std::move(strict.answer);
    return command;
  }
  if (tooLongForAName(words[1].text)) return clusterNotFound(words[1].text);
  command.action = AdminAction::kListMembers;
  command.format = n == 3 ? AdminFormat::kJson : AdminFormat::kText;
  command.cluster = words[1].text;
  return command;
}

AdminParseResult parseModify(const std::vector<Word>& words) {
  const std::string both = std::string(kAddUsage) + " or " + std::string(kMemberUsage);
  if (words.size() < 2) return malformed("modify", "missing cluster name", both);
  if (words.size() < 3) return malformed("modify", "missing action", both);
  AdminCommand command;
  command.cluster = words[1].text;
  const std::string_view action = words[2].text;
  if (action == "add") {
    if (words.size() < 4) return malformed("modify add", "missing member fields", kAddUsage);
    if (words.size() > 4) {
      return malformed("modify add",
                       "unexpected argument " + quoteForMessage(words[4].text) +
                           " (fields are separated by commas, no spaces; quote a value that holds spaces)",
                       kAddUsage);
    }
    if (tooLongForAName(command.cluster)) return clusterNotFound(command.cluster);
    command.action = AdminAction::kAddMember;
    return parseAddFields(words[3].text, std::move(command));
  }
  for (const MemberActionWord& a : kMemberActions) {
    if (a.word != action) continue;
    const std::string what = "modify " + std::string(action);
    if (words.size() < 4) return malformed(what, "missing RTPproxy name", kMemberUsage);
    if (words.size() > 4) {
      return malformed(what, "unexpected argument " + quoteForMessage(words[4].text) +
                                 " (quote a name that holds spaces)", kMemberUsage);
    }
    if (tooLongForAName(command.cluster)) return clusterNotFound(command.cluster);
    command.action = a.action;
    command.member = words[3].text;
    return command;
  }
  return error("unsupported action: " + quoteForMessage(action));
}

AdminParseResult parseNoArguments(const std::vector<Word>& words, const AdminCommandSpec& spec,
                                  AdminAction action) {
  if (words.size() > 1) {
    return malformed(spec.name, "unexpected argument " + quoteForMessage(words[1].text), spec.usage);
  }
  AdminCommand command;
  command.action = action;
  return command;
}

AdminParseResult parseWords(const std::vector<Word>& words) {
  if (words.empty()) return error("unknown command");
  // A quoted command word is still that command: the client quotes nothing
  // that needs no quotes, but a script may.
  const std::string_view first = words[0].text;
  for (const AdminCommandSpec& spec : kCommands) {
    if (!matches(spec, first)) continue;
    switch (spec.handler) {
      case AdminHandler::kList:
        return parseList(words);
      case AdminHandler::kWorkers: {
        AdminCommand command;
        command.action = AdminAction::kListWorkers;
        if (words.size() == 2 && isKeyword(words[1], "json")) {
          command.format = AdminFormat::kJson;
          return command;
        }
        if (words.size() == 1) return command;
        const size_t bad = isKeyword(words[1], "json") ? 2 : 1;
        return malformed("workers", "unexpected argument " + quoteForMessage(words[bad].text), spec.usage);
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

TokenizeResult tokenizeAdminLine(std::string_view line) {
  TokenizeResult r;
  size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size()) return r;
    std::string word;
    bool quoted = false;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      const char c = line[i];
      if (c == '\\') {
        if (i + 1 == line.size()) {
          r.error = "backslash at the end of the line (write \\\\ for a backslash)";
          return r;
        }
        word += line[i + 1];
        i += 2;
        continue;
      }
      if (c != '"' && c != '\'') {
        word += c;
        ++i;
        continue;
      }
      // A quoted part runs to the matching quote; in "..." a backslash takes
      // the next character as it is, in '...' nothing is special.
      quoted = true;
      const size_t open = i++;
      while (true) {
        if (i == line.size()) {
          r.error = std::string("unterminated quote (") + c + ") opened at offset " + std::to_string(open);
          return r;
        }
        if (line[i] == c) {
          ++i;
          break;
        }
        if (c == '"' && line[i] == '\\' && i + 1 < line.size()) {
          word += line[i + 1];
          i += 2;
          continue;
        }
        word += line[i++];
      }
    }
    r.words.push_back(std::move(word));
    r.quoted.push_back(quoted);
  }
}

std::string quoteAdminWord(std::string_view word) {
  bool plain = !word.empty();
  for (const char c : word) {
    if (c == ' ' || c == '\t' || c == '"' || c == '\'' || c == '\\') plain = false;
  }
  if (plain) return std::string(word);
  std::string out;
  out.reserve(word.size() + 4);
  out += '"';
  for (const char c : word) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

std::optional<std::string> checkAdminLineBytes(std::string_view line) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto at = [](size_t offset) { return " at offset " + std::to_string(offset); };
  for (size_t i = 0; i < line.size();) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c == 0) return std::string("command line contains a NUL byte");
    const size_t n = utf8SequenceLength(line, i);
    if (n == 0) {
      std::string what = "command line is not UTF-8: byte 0x";
      what += kHex[c >> 4];
      what += kHex[c & 0xf];
      return what + at(i);
    }
    const bool control = (c < 0x20 && c != '\t') || c == 0x7f ||
                         (c == 0xc2 && static_cast<unsigned char>(line[i + 1]) <= 0x9f);
    if (control) {
      std::string what = "command line contains the control character 0x";
      const auto code = c == 0xc2 ? static_cast<unsigned char>(line[i + 1]) : c;
      what += kHex[code >> 4];
      what += kHex[code & 0xf];
      return what + at(i);
    }
    i += n;
  }
  return std::nullopt;
}

std::variant<MemberConfig, std::string> parseMemberFieldList(std::string_view list, char separator) {
  std::array<std::optional<std::string_view>, kMemberFields.size()> values{};
  size_t pos = 0;
  while (true) {
    const size_t end = list.find(separator, pos);
    const std::string_view field = list.substr(pos, end == std::string_view::npos ? list.npos : end - pos);
    if (field.empty()) {
      if (separator == ',') return std::string("empty field (two commas in a row or a comma at an end)");
      return std::string("empty field");
    }
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) return "field " + quoteForMessage(field) + " is not key=value";
    const std::string_view key = field.substr(0, eq);
    size_t index = kMemberFields.size();
    for (size_t i = 0; i < kMemberFields.size(); ++i) {
      if (kMemberFields[i].key == key) index = i;
    }
    if (index == kMemberFields.size()) return "unknown field " + quoteForMessage(key);
    if (values[index]) return "field " + quoteForMessage(key) + " given twice";
    values[index] = field.substr(eq + 1);
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  for (size_t i = 0; i < kMemberFields.size(); ++i) {
    if (kMemberFields[i].required && !values[i]) return "missing field " + quoteForMessage(kMemberFields[i].key);
  }
  MemberConfig m;
  // The reference crashes without status; ACTIVE is what its configs mean.
  m.status = AdminStatus::kActive;
  for (size_t i = 0; i < kMemberFields.size(); ++i) {
    const MemberFieldSpec& spec = kMemberFields[i];
    if (!values[i]) continue;
    if (std::optional<std::string> problem = setMemberField(m, spec.field, *values[i], spec.key)) return *problem;
  }
  return m;
}

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
    if (std::optional<std::string> bad = checkAdminLineBytes(line)) return error(*bad);
    std::variant<std::vector<Word>, std::string> words = splitWords(line);
    if (auto* problem = std::get_if<std::string>(&words)) return error(*problem);
    return parseWords(std::get<std::vector<Word>>(words));
  } catch (...) {
    // Only allocation can fail here; the caller's loop must survive it.
    return AdminError{"ERROR: out of memory\n"};
  }
}

}  // namespace rtpc
