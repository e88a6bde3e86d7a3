#pragma once
// The admin CLI's commands (REFERENCE.md section 3): one table with their
// usage text, a pure parser from one received line to a command or to the
// exact error answer, and the help text generated from the table.
// docs/admin.md documents every command.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "shared/config.h"

namespace rtpc {

// A longer line is refused whole: the admin socket is not a bulk channel.
inline constexpr size_t kMaxAdminLineBytes = 4096;

// Which parser a table row's first word leads to. `modify` has two rows
// (adding a member and acting on one) so that each form has its own usage.
enum class AdminHandler : uint8_t { kList, kWorkers, kModifyAdd, kModifyMember, kReload, kHelp, kQuit };

struct AdminCommandSpec {
  std::string_view name;
  std::string_view aliases[2];  // empty = none
  std::string_view usage;       // one help line per row
  AdminHandler handler;
};

// The commands in help order.
std::span<const AdminCommandSpec> adminCommands();

// `Supported commands:` and one tab-indented usage line per row; like the
// reference, no `OK` after it.
std::string helpText();

enum class AdminAction : uint8_t {
  kListClusters,   // ls
  kListMembers,    // ls <cluster>
  kListWorkers,    // workers
  kAddMember,      // modify <cluster> add k=v,...
  kDeleteMember,   // modify <cluster> delete|remove <member>: drain, then remove
  kSuspendMember,  // modify <cluster> pause|suspend <member>
  kResumeMember,   // modify <cluster> resume <member>
  kReload,
  kHelp,
  kQuit,
};

enum class AdminFormat : uint8_t { kText, kJson };

struct AdminCommand {
  AdminAction action = AdminAction::kHelp;
  AdminFormat format = AdminFormat::kText;
  std::string cluster;       // ls <cluster>, modify
  std::string member;        // delete/pause/resume
  MemberConfig new_member;   // add: validated, status defaults to ACTIVE
  // ls with unquoted words after the name (`ls Core 1`): the reference takes
  // the rest of the line as the name, so `cluster` is those words joined by
  // one space; when no cluster has that name, this (the strict reading's
  // "unexpected argument" error) is the answer instead of "not found".
  std::string error_unless_found;
};

// The complete answer to send: one line starting `ERROR:`, newline included.
struct AdminError {
  std::string answer;
};

using AdminParseResult = std::variant<AdminCommand, AdminError>;

// One line as received, with or without its "\n" / "\r\n". Never throws
// (allocation failure aside); anything malformed becomes an AdminError.
// Names are free text (UTF-8, spaces): a word that holds spaces is quoted.
AdminParseResult parseAdminLine(std::string_view line);

// The words of a line (docs/admin.md "Quoting"): separated by spaces or tabs;
// "..." quotes (inside, \ takes the next character as it is), '...' quotes
// (nothing special inside), outside quotes \ escapes the next character;
// quoted and plain parts next to each other make one word
// (name="relay 2",protocol=udp is one word). Pure; error is set (and words
// are incomplete) for an unterminated quote or a backslash at the end.
struct TokenizeResult {
  std::vector<std::string> words;
  std::vector<bool> quoted;  // per word: some part of it was quoted
  std::string error;         // the error answer's text, without "ERROR: "
};
TokenizeResult tokenizeAdminLine(std::string_view line);

// `word` as it must be written on an admin line to come back as one word:
// as it is when it needs no quotes, else in "..." with " and \ escaped.
// tokenizeAdminLine(quoteAdminWord(w)).words == {w} for every w.
std::string quoteAdminWord(std::string_view word);

// The bytes an admin line may hold: UTF-8 text without control characters
// (tab aside). Returns the error text (without "ERROR: ") or nullopt.
std::optional<std::string> checkAdminLineBytes(std::string_view line);

// Member fields `key=value` separated by `separator` (',' on the admin line,
// '\t' in the supervisor's apply message, where values may hold commas):
// every field of kMemberFields at most once, required ones present, each
// value checked by member_fields.h; status defaults to ACTIVE. Returns the
// member or the problem text.
std::variant<MemberConfig, std::string> parseMemberFieldList(std::string_view list, char separator);

}  // namespace rtpc
