#include "shared/log_setup.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <charconv>
#include <cstdlib>
#include <memory>

namespace rtpc {
namespace {

constexpr char kLoggerName[] = "rtp_cluster";
constexpr char kPattern[] = "%Y-%m-%dT%H:%M:%S.%e [%P] %l %v";
// '*' is no built-in spdlog flag.
constexpr char kJournalPattern[] = "%*%Y-%m-%dT%H:%M:%S.%e [%P] %l %v";

// "<N>" from the message's level: three bytes, no lookup beyond the switch.
class JournalPriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const char prefix[3] = {'<', journalPriority(msg.level), '>'};
    dest.append(prefix, prefix + sizeof prefix);
  }
  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<JournalPriorityFlag>();
  }
};

std::optional<uint64_t> parseDecimal(std::string_view text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

}  // namespace

std::optional<JournalStream> parseJournalStream(std::string_view text) {
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::optional<uint64_t> device = parseDecimal(text.substr(0, colon));
  const std::optional<uint64_t> inode = parseDecimal(text.substr(colon + 1));
  if (!device || !inode) return std::nullopt;
  return JournalStream{*device, *inode};
}

bool stderrIsJournal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  const std::optional<JournalStream> stream = parseJournalStream(env);
  struct stat st {};
  if (!stream || fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<uint64_t>(st.st_dev) == stream->device && static_cast<uint64_t>(st.st_ino) == stream->inode;
}

char journalPriority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical:
      return '2';
    case spdlog::level::err:
      return '3';
    case spdlog::level::warn:
      return '4';
    case spdlog::level::info:
      return '6';
    default:  // debug, trace
      return '7';
  }
}

std::string openErrorText(int err) {
  // O_NOFOLLOW reports a symlink as ELOOP ("Too many levels of symbolic
  // links"), which reads like a loop rather than a refusal.
  if (err == ELOOP) return "it is a symbolic link (refusing to follow it)";
  return std::strerror(err);
}

int openLogFile(const std::string& path, std::string& error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0640);
  if (fd < 0) {
    error = "cannot open the log file " + path + ": " + openErrorText(errno);
    return -1;
  }
  // Writes block as usual (a slow disk or a full pipe must not lose lines).
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

void setUpLogging(spdlog::level::level_enum level, bool journal) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (journal) {
    formatter->add_flag<JournalPriorityFlag>('*').set_pattern(kJournalPattern);
  } else {
    formatter->set_pattern(kPattern);
  }
  auto logger = std::make_shared<spdlog::logger>(kLoggerName, std::make_shared<spdlog::sinks::stderr_sink_st>());
  logger->set_formatter(std::move(formatter));
  logger->set_level(level);
  // Every line at once: a worker may be killed, and the supervisor forks.
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace rtpc
