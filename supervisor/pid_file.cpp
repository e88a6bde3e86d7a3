#include "supervisor/pid_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "shared/log_setup.h"

namespace rtpc {

std::unique_ptr<PidFile> PidFile::acquire(const std::string& path, std::string& error) {
  std::unique_ptr<PidFile> p(new PidFile());
  p->path_ = path;
  // Never through a symlink: ftruncate would empty whatever it points at.
  p->fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
  if (p->fd_ < 0) {
    error = "cannot open the pid file " + path + ": " + openErrorText(errno);
    return nullptr;
  }
  struct stat st {};
  if (fstat(p->fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    error = "cannot open the pid file " + path + ": not a regular file";
    close(p->fd_);
    p->fd_ = -1;
    return nullptr;
  }
  if (flock(p->fd_, LOCK_EX | LOCK_NB) != 0) {
    const int saved = errno;
    if (saved == EWOULDBLOCK) {
      char text[32] = {};
      const ssize_t n = pread(p->fd_, text, sizeof text - 1, 0);
      std::string pid = n > 0 ? std::string(text, static_cast<size_t>(n)) : std::string("unknown");
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      error = "another rtp_cluster is running (pid " + pid + ", pid file " + path + ")";
    } else {
      error = "cannot lock the pid file " + path + ": " + std::strerror(saved);
    }
    close(p->fd_);
    p->fd_ = -1;
    return nullptr;
  }
  p->owner_ = getpid();
  return p;
}

bool PidFile::write(pid_t pid, std::string& error) {
  const std::string text = std::to_string(pid) + "\n";
  if (ftruncate(fd_, 0) != 0 || pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    error = "cannot write the pid file " + path_ + ": " + std::strerror(errno);
    return false;
  }
  owner_ = pid;
  return true;
}

PidFile::~PidFile() {
  if (fd_ < 0) return;
  if (owner_ == getpid()) unlink(path_.c_str());
  close(fd_);
}

}  // namespace rtpc
