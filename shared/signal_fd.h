#pragma once
// Signals taken as readable events on a process's own loop, instead of by
// handlers that could interrupt it anywhere.

#include <signal.h>

#include <string>

namespace rtpc {

// Changes the signal mask with `how` (SIG_BLOCK adds `mask` to the current
// one, SIG_SETMASK replaces it) and opens a non-blocking, close-on-exec
// signalfd for `mask`. Returns the fd, or -1 with error "signalfd: <reason>".
// The signals must stay blocked while the fd is read: an unblocked one would
// go to its default action instead.
int openSignalFd(const sigset_t& mask, int how, std::string& error);

}  // namespace rtpc
