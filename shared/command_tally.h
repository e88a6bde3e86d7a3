#pragma once
// CommandTally: the answers a cluster sent, by command type and result and by
// error code. Counted once per answer at the one place the worker answers
// (ClusterWorker::answerRequest), published to shared memory, exported as
// Prometheus metrics. Fixed arrays indexed by small integers so that counting
// is an increment, and the same shapes are mirrored in shm_layout.h.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "shared/rtpp_command.h"

namespace rtpc {

// CommandType values plus one row for commands that did not parse.
inline constexpr size_t kCommandTypeCount = static_cast<size_t>(CommandType::kDeleteAll) + 1;
inline constexpr size_t kTallyUnparsedRow = kCommandTypeCount;
inline constexpr size_t kTallyRows = kCommandTypeCount + 1;

enum class CommandResult : uint8_t {
  kOk,     // any answer that is not an error (including "0": not found is a valid answer)
  kError,  // an E<n> answer
};
inline constexpr size_t kCommandResultCount = 2;

// Error codes get one slot each: E0..E99 (rtpproxy's range), E993..E999 (the
// cluster's own) and one "other" slot for anything else a member answered.
inline constexpr size_t kRelayErrorSlots = 100;
inline constexpr int kFirstClusterErrorCode = 993;
inline constexpr int kLastClusterErrorCode = 999;
inline constexpr size_t kErrorOtherSlot = kRelayErrorSlots + (kLastClusterErrorCode - kFirstClusterErrorCode + 1);
inline constexpr size_t kErrorSlots = kErrorOtherSlot + 1;

constexpr size_t errorCodeSlot(int code) {
  if (code >= 0 && code < static_cast<int>(kRelayErrorSlots)) return static_cast<size_t>(code);
  if (code >= kFirstClusterErrorCode && code <= kLastClusterErrorCode) {
    return kRelayErrorSlots + static_cast<size_t>(code - kFirstClusterErrorCode);
  }
  return kErrorOtherSlot;
}

// The code a slot stands for; -1 for the "other" slot.
constexpr int errorCodeOfSlot(size_t slot) {
  if (slot < kRelayErrorSlots) return static_cast<int>(slot);
  if (slot < kErrorOtherSlot) return kFirstClusterErrorCode + static_cast<int>(slot - kRelayErrorSlots);
  return -1;
}

// The label of a row: the wire command ("U", "VF", ...) or "unparsed".
std::string_view tallyRowName(size_t row);
std::string_view commandResultName(CommandResult result);

// The error code of an answer body ("E72" -> 72), or -1 when it is not an
// error answer. Only the main result counts: "E5" but not "1234 127.0.0.1 && E3".
constexpr int answerErrorCode(std::string_view body) {
  if (body.size() < 2 || body[0] != 'E') return -1;
  int code = 0;
  size_t i = 1;
  for (; i < body.size() && body[i] >= '0' && body[i] <= '9'; ++i) {
    if (code < 1000000) code = code * 10 + (body[i] - '0');  // saturates: any huge code is "other"
  }
  if (i == 1) return -1;
  if (i < body.size() && body[i] != ' ' && body[i] != '\n') return -1;
  return code;
}

struct CommandTally {
  std::array<std::array<uint64_t, kCommandResultCount>, kTallyRows> by_type{};
  std::array<uint64_t, kErrorSlots> by_error{};

  // `row` is a CommandType value or kTallyUnparsedRow.
  void count(size_t row, std::string_view answer) {
    const int code = answerErrorCode(answer);
    if (code < 0) {
      ++by_type[row][static_cast<size_t>(CommandResult::kOk)];
    } else {
      ++by_type[row][static_cast<size_t>(CommandResult::kError)];
      ++by_error[errorCodeSlot(code)];
    }
  }
};

}  // namespace rtpc
