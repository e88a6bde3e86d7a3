#pragma once
// RTPproxy control commands: a pure parser from wire bytes to a RtppCommand
// view, and a formatter that writes a command back, optionally edited.
// ../shared/docs/PROTOCOL.md sections 1-3 are the specification.
//
// Hot path: parse() never allocates. A RtppCommand holds views into the input
// text, so the input must outlive it.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "shared/fixed_buffer.h"

namespace rtpc {

// Limits of rtpproxy itself (PROTOCOL.md section 1).
inline constexpr size_t kMaxCommandBytes = 8192;  // longer input -> E5
inline constexpr size_t kMaxTokens = 23;          // per (sub)command, cookie excluded; more -> E5
inline constexpr size_t kMaxSubcommands = 15;     // `&&` parts; more -> E5
inline constexpr size_t kMaxStatNames = 22;       // G names (token limit)

// Error codes rtpproxy answers (PROTOCOL.md section 3) and the cluster's own.
namespace ecode {
inline constexpr int kUnknownCommand = 0;   // E0
inline constexpr int kArgCount = 1;         // E1
inline constexpr int kModifiers = 2;        // E2: modifiers on V/VF/S/X
inline constexpr int kSubcommand = 3;       // E3: `&&` not allowed / bad subcommand
inline constexpr int kSyntax = 5;           // E5: empty, NUL, too many tokens / subcommands, too long
inline constexpr int kRecordPlayMod = 6;    // E6: `p` on R; `Na<junk>`
inline constexpr int kRecordMod = 7;        // E7: bad R/C/N modifier
inline constexpr int kDeleteMod = 8;        // E8: bad D modifier
inline constexpr int kStatsMod = 9;         // E9: bad G modifier
inline constexpr int kNotifyTag = 10;       // E10: notify tag URL-decoding
inline constexpr int kPtime = 13;           // E13: z out of 1..999
inline constexpr int kCodecs = 14;          // E14: c empty/duplicated
inline constexpr int kLocalAddrSyntax = 15; // E15: l syntax
inline constexpr int kRemoteAddrSyntax = 16;// E16: r syntax
inline constexpr int kPlayCount = 17;       // E17: P count not numeric
inline constexpr int kInfoMod = 18;         // E18: bad I modifier
inline constexpr int kQueryMod = 19;        // E19: bad Q modifier
inline constexpr int kBadULModifier = 35;   // E35: unknown U/L modifier
inline constexpr int kSessionUnknown = 50;  // E50
inline constexpr int kOverload = 98;        // E98: new session refused, overload
inline constexpr int kShuttingDown = 99;    // E99: new session refused, SIGHUP drain
inline constexpr int kNoPorts = 72;         // E72: cannot create a session
// The cluster's own (REFERENCE.md section 4).
inline constexpr int kStatsAllFailed = 993;
inline constexpr int kStatsNothingCached = 994;
inline constexpr int kBroadcastNoUniqueAnswer = 995;
inline constexpr int kBroadcastMemberTimeout = 996;
inline constexpr int kMemberTimeout = 997;
inline constexpr int kNoMemberToPick = 998;
inline constexpr int kNoMemberOnline = 999;
}  // namespace ecode

enum class CommandType : uint8_t {
  kUpdate,          // U
  kLookup,          // L
  kDelete,          // D
  kPlay,            // P
  kNoPlay,          // S
  kRecord,          // R
  kCopy,            // C
  kNoRecord,        // N
  kQuery,           // Q
  kVersion,         // V
  kVersionFeature,  // VF
  kInfo,            // I
  kStats,           // G
  kDeleteAll,       // X
};

// The wire letter of a command type ('F' is never returned: VF is 'V').
char commandLetter(CommandType type);

// One token as an offset/length into the parsed text; trivially constructible
// so that a RtppCommand costs nothing to declare on the stack.
struct TokenSpan {
  uint16_t offset;
  uint16_t length;
};

// A parsed command. All string_views point into the text given to parse().
struct RtppCommand {
  std::string_view text;       // the whole input (datagram or line) as given
  std::string_view cookie;     // UDP only; empty on stream transports
  std::string_view body;       // from the command word to the last token (trailing separators trimmed)
  CommandType type{};
  std::string_view modifiers;  // characters after the command letter (for VF: empty)

  // Named arguments of the main command; empty when the command has none.
  std::string_view call_id;        // U L D P S R C N Q
  std::string_view remote_ip;      // U L
  std::string_view remote_port;    // U L
  std::string_view from_tag;       // U L D P S R C N Q
  std::string_view to_tag;         // optional on all of the above
  std::string_view notify_socket;  // U only
  std::string_view notify_tag;     // U only
  std::string_view play_name;      // P
  std::string_view play_codecs;    // P
  std::string_view copy_target;    // C
  std::string_view feature;        // VF
  // Q stat names after to_tag, G stat names: tokens [extra_first, extra_first + extra_count).
  uint8_t extra_first = 0;
  uint8_t extra_count = 0;

  // Tokens of the main command: token(0) is the command word. Subcommand i
  // (0-based) has tokens subcommandToken(i, 0..). `&&` separators are not tokens.
  uint8_t argc = 0;            // main command token count, command word included
  uint8_t subcommand_count = 0;
  uint16_t token_count = 0;    // all tokens, main + subcommands
  // Index into tokens_ of each subcommand's first token; up to 15 * 23, so not a uint8_t.
  uint16_t subcommand_first[kMaxSubcommands];
  uint8_t subcommand_argc[kMaxSubcommands];
  TokenSpan tokens_[kMaxTokens * (kMaxSubcommands + 1)];

  std::string_view token(size_t i) const { return span(tokens_[i]); }
  std::string_view subcommandToken(size_t sub, size_t i) const {
    return span(tokens_[subcommand_first[sub] + i]);
  }
  // The text of subcommand i, from its first to its last token.
  std::string_view subcommandText(size_t sub) const;
  std::string_view span(TokenSpan t) const { return text.substr(t.offset, t.length); }

  bool hasSubcommands() const { return subcommand_count != 0; }
  char letter() const { return commandLetter(type); }
};

// Result of parse(): ok, or the error code rtpproxy would answer.
struct ParseResult {
  bool ok = false;
  int error_code = 0;  // meaningful when !ok
  // False when there was not even a cookie to echo (empty or blank datagram):
  // rtpproxy then answers a bare "E5\n".
  bool has_cookie = false;
};

enum class Framing : uint8_t {
  kDatagram,  // first token is the cookie (udp, udp6)
  kStream,    // no cookie (unix, cunix, tcp): the text is one command
};

// Parses one command. For kDatagram the first token is the cookie. A trailing
// "\n" (or any separators) is ignored. On error `out.cookie` is still set when
// one was found, so the caller can echo it.
ParseResult parseCommand(std::string_view text, Framing framing, RtppCommand& out);

// A glance at a datagram before it is parsed, to prefetch what its handling
// will read: the first word (the cookie) and the third one (the call-id of
// U/L/D/Q...; some other word, or empty, for other commands). Words are split
// on spaces only; any bytes are accepted. Never a substitute for parseCommand.
struct DatagramGlance {
  std::string_view cookie;
  std::string_view call_id;
};
DatagramGlance glanceAtDatagram(std::string_view datagram);

// Edits applied while formatting a command for a member.
struct CommandEdits {
  char type_letter = 0;                // replace the command letter ('L' for a U sent as lookup); 0 = keep
  bool swap_tags = false;              // exchange from_tag and to_tag (only if to_tag is present)
  bool drop_notify = false;            // leave out notify_socket and notify_tag (implied when the
                                       // result is an L: rtpproxy rejects notify args on L)
  std::string_view local_address;      // U/L: replace the `l<addr>` modifier (or add one); IPv6 gets [].
                                       // When modifiers are rewritten a `6` flag moves to the front, so
                                       // that it cannot be read as part of a preceding address or number.
  bool drop_remote_route = false;      // U/L: leave out the `r<addr>` modifier
  std::string_view notify_socket;      // replace the notify socket (U, when present or when both set)
  std::string_view notify_tag;         // replace the notify tag
};

inline constexpr size_t kCommandBufferBytes = kMaxCommandBytes + 512;
using CommandBuffer = FixedBuffer<kCommandBufferBytes>;

// Appends the command, without cookie and without a trailing newline, to out:
// tokens joined by single spaces, subcommands joined by " && ". With no edits
// a command that was written with single spaces comes back byte for byte.
// Returns false when out overflows.
bool formatCommand(const RtppCommand& cmd, const CommandEdits& edits, CommandBuffer& out);

// Whether the notify tag is a valid URL-encoded string (every `%` followed by
// two hex digits); rtpproxy answers E10 otherwise.
bool isValidNotifyTag(std::string_view tag);

// Scans U/L modifiers, left to right as rtpproxy does. Returns 0 when they are
// well-formed, or the rtpproxy error code (E13, E14, E15, E16, E35). Reports
// where the `l` and `r` modifiers sit inside `modifiers` (length 0 = absent)
// and whether `6` (IPv6 remote) is set.
struct UlModifiers {
  bool ipv6 = false;
  bool weak = false;
  bool new_port = false;
  uint16_t local_offset = 0, local_length = 0;    // the whole `l...` modifier
  uint16_t remote_offset = 0, remote_length = 0;  // the whole `r...` modifier
};
int scanUlModifiers(std::string_view modifiers, UlModifiers& out);

}  // namespace rtpc
