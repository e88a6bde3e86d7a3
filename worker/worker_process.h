#pragma once
// WorkerProcess: what a worker process forked by the supervisor runs. Its own
// event_base and a ClusterWorker over the control socket the supervisor bound
// (inherited fd) and the cluster's session-table block in shared memory, so
// that a restarted worker loses neither datagrams nor calls.
//
// It publishes member status and counters to its ClusterRecord on a timer and
// right after each admin change, and takes typed requests from the supervisor
// over a SOCK_SEQPACKET socketpair: one message = one request or one answer,
// so no framing can get out of step. Messages are text (they are small, rare
// and easy to read in strace):
//
//   request  "<id> modify <cluster> add|delete|pause|resume ..."  (an admin line)
//   request  "<id> apply\n<member fields>\n<member fields>..."    (new member set)
//   request  "<id> ping"
//   answer   "<id> OK"  or  "<id> ERROR: <message>"
//   "0 ready" (unsolicited, once): the worker serves its control socket; the
//   supervisor reports READY=1 once every worker sent it. Request ids start at 1.
//
// Member fields are those of `modify add` (name=..,protocol=..,...), parsed by
// the admin parser's field rules (parseMemberFieldList), so a member pushed by
// a reload passes exactly the checks of one added by hand. In an apply they
// are separated by tabs, not commas: names are free text (spaces, commas)
// but hold no control character. A modify line is the admin line as the
// operator sent it, quotes included, and is parsed again by the worker.
//
// Lifetime: PR_SET_PDEATHSIG(SIGKILL) so that it never outlives the
// supervisor; exits when the socketpair closes (the supervisor restarts it);
// SIGTERM/SIGINT: stops taking requests, gives commands in flight a short
// grace to be answered, exits 0. SIGUSR1 reopens the log file onto stderr.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shared/config.h"

namespace rtpc {

class ShmSegment;
class ClusterWorker;

struct WorkerProcessOptions {
  ClusterConfig config;
  int control_fd = -1;   // bound (and listening) control socket
  int channel_fd = -1;   // the worker's end of the SOCK_SEQPACKET socketpair
  ShmSegment* segment = nullptr;  // mapped before the fork
  uint32_t slot = 0;
  pid_t supervisor_pid = 0;
  std::string log_file;  // reopened onto stderr on SIGUSR1; empty = leave stderr alone
  uint32_t publish_interval_ms = 150;
  uint32_t stop_grace_ms = 500;  // after SIGTERM, for commands in flight
};

// Runs until told to stop; returns the process exit code. Call in the forked
// child only (it installs a signal mask and a parent-death signal), and leave
// with _exit() afterwards: the parent's objects are copies that must not be
// destroyed twice.
int runWorkerProcess(WorkerProcessOptions options);

// --- channel messages (pure) ---

// The largest message either side sends or accepts (an apply of 256 members
// with every optional field is ~200 KiB at most; typical ones are tiny).
inline constexpr size_t kMaxChannelMessageBytes = 256 * 1024;

// "name=N<TAB>protocol=P<TAB>address=A<TAB>capacity=C<TAB>weight=W<TAB>status=S[<TAB>wan_address=..]..."
std::string memberFieldList(const MemberConfig& member);
// "apply\n" + one memberFieldList per line.
std::string applyRequestBody(const ClusterConfig& cluster);

inline constexpr std::string_view kWorkerReadyMessage = "0 ready";

struct ChannelMessage {
  uint64_t id = 0;
  std::string_view body;
};
// "<id> <body>"; nullopt when the id is missing or not a number.
std::optional<ChannelMessage> parseChannelMessage(std::string_view message);

// Parses an apply body into `out` (a copy of the current cluster config whose
// members are replaced). Returns "" or the error text (without "ERROR: ").
std::string parseApplyBody(std::string_view body, ClusterConfig& out);

// Runs one request body against the worker; returns "OK" or "ERROR: ...".
std::string handleWorkerRequest(ClusterWorker& worker, std::string_view body);

}  // namespace rtpc
