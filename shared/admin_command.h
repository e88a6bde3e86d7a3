#pragma once
// The admin CLI's commands (REFERENCE.md section 3): one table with their
// usage text, a pure parser from one received line to a command or to the
// exact error answer, and the help text generated from the table.
// docs/admin.md documents every command.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

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
};

// The complete answer to send: one line starting `ERROR:`, newline included.
struct AdminError {
  std::string answer;
};

using AdminParseResult = std::variant<AdminCommand, AdminError>;

// One line as received, with or without its "\n" / "\r\n". Never throws
// (allocation failure aside); anything malformed becomes an AdminError.
AdminParseResult parseAdminLine(std::string_view line);

}  // namespace rtpc
