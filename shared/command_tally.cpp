#include "shared/command_tally.h"

namespace rtpc {

std::string_view tallyRowName(size_t row) {
  if (row >= kCommandTypeCount) return "unparsed";
  switch (static_cast<CommandType>(row)) {
    case CommandType::kUpdate: return "U";
    case CommandType::kLookup: return "L";
    case CommandType::kDelete: return "D";
    case CommandType::kPlay: return "P";
    case CommandType::kNoPlay: return "S";
    case CommandType::kRecord: return "R";
    case CommandType::kCopy: return "C";
    case CommandType::kNoRecord: return "N";
    case CommandType::kQuery: return "Q";
    case CommandType::kVersion: return "V";
    case CommandType::kVersionFeature: return "VF";
    case CommandType::kInfo: return "I";
    case CommandType::kStats: return "G";
    case CommandType::kDeleteAll: return "X";
  }
  return "unparsed";
}

std::string_view commandResultName(CommandResult result) {
  return result == CommandResult::kOk ? "ok" : "error";
}

}  // namespace rtpc
