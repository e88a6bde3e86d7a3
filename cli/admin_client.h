#pragma once
// rtp_cluster_client: sends admin commands to a running rtp_cluster and
// prints the answers (REFERENCE.md section 3, "The client"; docs/admin.md).
// Each command is one connection carrying `<command>\nquit\n`; the answer is
// everything the server sends until it closes. A deadline covers the whole
// exchange, so a stalled server cannot hang a script.

#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/address.h"

namespace rtpc {

inline constexpr std::string_view kDefaultAdminSocket = "unix:/var/run/rtp_cluster.sock";
inline constexpr int kDefaultAdminTimeoutMs = 5000;

// `/path`, `unix:/path`, `tcp:host[:port]` (port 12345 by default; an IPv6
// literal in brackets selects tcp6), `tcp6:[v6][:port]`. Same forms as the
// daemon's -s.
AddressResult parseAdminSocket(std::string_view text);
// How messages name the socket: "unix:/path", "tcp:127.0.0.1:12345", "tcp:[::1]:1".
std::string adminSocketName(const SocketAddress& address);

enum class ExchangeOutcome : uint8_t {
  kClosed,         // the server closed the connection: the answer is complete
  kCannotConnect,  // error holds the reason (strerror text)
  kTimedOut,
  kIoError,        // send/recv failed after connecting; error holds the reason
};

struct ExchangeResult {
  ExchangeOutcome outcome = ExchangeOutcome::kClosed;
  std::string answer;  // everything received, also on timeout or error
  std::string error;
};

// Connects, sends `payload`, reads until the server closes or timeout_ms
// passes (counted from the call). Each received chunk is also written to
// `echo` as it arrives (nullptr: no echo), so a slow answer shows progress.
ExchangeResult exchangeWithServer(const SocketAddress& address, std::string_view payload, int timeout_ms,
                                  std::FILE* echo);

// Whether an answer to `command` means success: its last line is `OK`, or it
// is the help text (which, as in the reference, has no OK), or the command
// was quit and the server just closed. An ERROR line, an empty or truncated
// answer is a failure.
bool answerSucceeded(std::string_view command, std::string_view answer);

// The admin line for the command words given on the command line: one word
// is sent as it is (the whole line, as the reference's client does); several
// are joined with spaces, each quoted (quoteAdminWord) when it holds spaces
// or quotes, so `ls "Core 1"` reaches the cluster named `Core 1`.
std::string buildCommandLine(std::span<const std::string_view> words);

// Usage errors exit 1, like every other failure: the daemon and the
// reference client do the same.
inline constexpr int kUsageErrorExit = 1;

// The whole program: options, one-shot or interactive mode. Returns the exit
// status (0 success, 1 failure or usage error).
int runAdminClient(int argc, char** argv, std::FILE* in, std::FILE* out, std::FILE* err);

}  // namespace rtpc
