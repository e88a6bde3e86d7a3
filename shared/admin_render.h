#pragma once
// The admin CLI's answers, rendered from one StatusSnapshot: the reference's
// exact `ls` / `ls <cluster>` text (REFERENCE.md section 3), JSON versions of
// the same data, and the worker listing. Every function returns the complete
// answer, newlines included, ending with an `OK` line or being one `ERROR:`
// line. JSON answers are one line of JSON followed by `OK`.
// docs/admin.md documents every field.

#include <string>
#include <string_view>

#include "shared/status_snapshot.h"

namespace rtpc {

// `ls`: one block per cluster, blank line between blocks.
std::string renderClusterList(const StatusSnapshot& snapshot);
std::string renderClusterListJson(const StatusSnapshot& snapshot);

// `ls <cluster>`: online members sorted by name, then offline members in slot
// order; `ERROR: <name>: cluster not found` for an unknown name.
std::string renderClusterMembers(const StatusSnapshot& snapshot, std::string_view cluster_name);
std::string renderClusterMembersJson(const StatusSnapshot& snapshot, std::string_view cluster_name);

// `workers`: one block per cluster worker (pid, restarts, uptime).
std::string renderWorkers(const StatusSnapshot& snapshot);
std::string renderWorkersJson(const StatusSnapshot& snapshot);

// `"text"` with the escapes JSON requires (", \\, control characters);
// UTF-8 is kept as it is (`café` stays `café`), and a byte that is not
// well-formed UTF-8 becomes \ufffd, so the result is valid JSON (and UTF-8)
// whatever the input holds.
std::string jsonString(std::string_view text);

}  // namespace rtpc
