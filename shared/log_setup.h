#pragma once
// The log of every rtp_cluster process: one line per event on stderr,
//   2026-11-26T03:48:36.702 [19823] warning MEMBER_OFFLINE cluster=c1 ...
// stderr being the terminal (-f), the log file (daemon mode, dup'ed onto
// fd 2) or the journal (systemd). Forked workers inherit the logger.
//
// When stderr is the journal, each line starts with the sd-daemon priority
// "<N>" (sd-daemon.h: SD_ERR "<3>", SD_WARNING "<4>", SD_INFO "<6>",
// SD_DEBUG "<7>"), which journald strips and stores as the line's priority
// (SyslogLevelPrefix=yes), so that `journalctl -p warning` filters. Anywhere
// else the prefix would be noise in a file, so it is only written then.

#include <spdlog/common.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rtpc {

struct JournalStream {
  uint64_t device = 0;
  uint64_t inode = 0;
};

// $JOURNAL_STREAM as systemd sets it: "DEVICE:INODE", both decimal.
// nullopt for anything else.
std::optional<JournalStream> parseJournalStream(std::string_view text);

// True when $JOURNAL_STREAM names the file that fd 2 is now. systemd sets it
// for a service whose stderr is connected to the journal; a child whose
// stderr was redirected inherits the variable, which then no longer matches.
bool stderrIsJournal();

// The syslog priority digit of a level: '3' error, '4' warning, '6' info,
// '7' debug and trace, '2' critical.
char journalPriority(spdlog::level::level_enum level);

// Installs the default logger writing to stderr at `level`, with the "<N>"
// prefix when `journal`. Called again after stderr changed (detaching) to
// decide the prefix anew.
void setUpLogging(spdlog::level::level_enum level, bool journal);

// Opens the log file for appending (creating it 0640), never through a
// symbolic link (a link planted at the path would make the daemon append to,
// or create, whatever it points at) and never blocking (a FIFO without a
// reader is refused instead of hanging the open). The descriptor is blocking
// and close-on-exec. -1 and a one-line error ("cannot open the log file PATH:
// ...") on failure.
int openLogFile(const std::string& path, std::string& error);

// "it is a symbolic link (refusing to follow it)" for ELOOP from an
// O_NOFOLLOW open, else strerror(err).
std::string openErrorText(int err);

}  // namespace rtpc
