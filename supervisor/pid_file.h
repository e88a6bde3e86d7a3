#pragma once
// PidFile: the daemon's pid file, locked for as long as it runs, so that a
// second instance with the same pid file refuses to start instead of
// fighting over sockets and shared memory.
//
// flock(), not fcntl() locks: an flock lock belongs to the open file
// description, so it survives the daemonizing fork (the parent takes it
// while it can still print an error to the terminal; the daemon child keeps
// it) and workers closing their inherited copy do not release it.

#include <sys/types.h>

#include <memory>
#include <string>

namespace rtpc {

class PidFile {
 public:
  // Opens (creating) and locks `path`. On failure nullptr and a one-line
  // error; when another process holds it: "another rtp_cluster is running
  // (pid N, pid file PATH)".
  static std::unique_ptr<PidFile> acquire(const std::string& path, std::string& error);
  // Removes the file (only while locked by us) and releases the lock.
  ~PidFile();
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

  // Writes "<pid>\n" (after daemonizing: the daemon's pid).
  bool write(pid_t pid, std::string& error);
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  PidFile() = default;
  std::string path_;
  int fd_ = -1;
  pid_t owner_ = 0;  // the process that removes it
};

}  // namespace rtpc
