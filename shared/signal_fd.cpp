#include "shared/signal_fd.h"

#include <sys/signalfd.h>

#include <cerrno>
#include <cstring>

namespace rtpc {

int openSignalFd(const sigset_t& mask, int how, std::string& error) {
  if (sigprocmask(how, &mask, nullptr) != 0) {
    error = std::string("signalfd: sigprocmask: ") + std::strerror(errno);
    return -1;
  }
  const int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) error = std::string("signalfd: ") + std::strerror(errno);
  return fd;
}

}  // namespace rtpc
