#pragma once
// Daemon: the process-level chores of rtp_cluster. Detaching from the
// terminal (with the parent waiting until the daemon is ready, so that
// `rtp_cluster` exits 1 with the reason when startup fails instead of
// dying silently in the background), logging through stderr (the log file
// is dup'ed onto fd 2, so the supervisor and every forked worker log the same
// way and SIGUSR1 just re-dups it), and readiness for service managers
// (sd_notify).

#include <string>
#include <string_view>

namespace rtpc {

class Daemon {
 public:
  // Forks. The parent waits for reportReady()/reportFailure() of the child
  // and _exit()s 0 or 1 (printing the failure to its stderr); only the child
  // returns: a new session, stdin/stdout on /dev/null, stderr on log_file.
  // false (still in the original process) when the log file cannot be opened
  // or fork fails.
  static bool detach(const std::string& log_file, std::string& error);

  // The startup outcome, to the waiting parent (no-op in the foreground) and
  // the service manager.
  static void reportReady();
  static void reportFailure(const std::string& message);

  // Opens log_file for appending onto stderr (SIGUSR1 after logrotate).
  static bool reopenLog(const std::string& log_file, std::string& error);

  // Service-manager state changes ("READY=1", "RELOADING=1", "STOPPING=1")
  // to $NOTIFY_SOCKET (systemd Type=notify); nothing when it is unset.
  static void notify(std::string_view state);

  // The shared-memory segment name of the instance that uses this pid file,
  // so that two instances with different pid files never share a segment:
  // "rtp_cluster.<16 hex digits of a hash of the absolute path>".
  static std::string shmNameFor(const std::string& absolute_pid_file);

  // `path` made absolute against the current directory (the daemon changes
  // to "/"); unchanged when already absolute.
  static std::string absolutePath(const std::string& path);
};

}  // namespace rtpc
