// openSignalFd: the signals of the mask are blocked (or the mask replaced)
// and then arrive as signalfd_siginfo records on a non-blocking fd.

#include "shared/signal_fd.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <initializer_list>
#include <string>

namespace rtpc {
namespace {

volatile sig_atomic_t g_handled = 0;

sigset_t only(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : signals) sigaddset(&set, sig);
  return set;
}

sigset_t currentMask() {
  sigset_t set;
  sigemptyset(&set);
  sigprocmask(SIG_BLOCK, nullptr, &set);
  return set;
}

// Saves the mask and the SIGUSR1/SIGUSR2 dispositions, and puts them back
// after the test. A handler (instead of the default action, which ends the
// process) makes a signal the helper failed to block a plain test failure.
class SignalFdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sigprocmask(SIG_BLOCK, nullptr, &saved_mask_);
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_handled = 1; };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, &saved_usr1_);
    sigaction(SIGUSR2, &sa, &saved_usr2_);
    const sigset_t both = only({SIGUSR1, SIGUSR2});
    sigprocmask(SIG_UNBLOCK, &both, nullptr);
    g_handled = 0;
  }
  void TearDown() override {
    if (fd_ >= 0) close(fd_);
    // Drop anything still pending before the default actions come back.
    const sigset_t both = only({SIGUSR1, SIGUSR2});
    sigprocmask(SIG_UNBLOCK, &both, nullptr);
    sigprocmask(SIG_SETMASK, &saved_mask_, nullptr);
    sigaction(SIGUSR1, &saved_usr1_, nullptr);
    sigaction(SIGUSR2, &saved_usr2_, nullptr);
  }

  int fd_ = -1;
  sigset_t saved_mask_;
  struct sigaction saved_usr1_ {};
  struct sigaction saved_usr2_ {};
};

TEST_F(SignalFdTest, BlockedSignalIsReadFromTheFdInsteadOfRunningItsHandler) {
  std::string error;
  fd_ = openSignalFd(only({SIGUSR2}), SIG_BLOCK, error);
  ASSERT_GE(fd_, 0) << error;
  const sigset_t mask = currentMask();
  EXPECT_TRUE(sigismember(&mask, SIGUSR2));

  ASSERT_EQ(raise(SIGUSR2), 0);
  EXPECT_EQ(g_handled, 0) << "SIGUSR2 was not blocked";
  signalfd_siginfo info{};
  ASSERT_EQ(read(fd_, &info, sizeof info), static_cast<ssize_t>(sizeof info));
  EXPECT_EQ(info.ssi_signo, static_cast<uint32_t>(SIGUSR2));
  EXPECT_EQ(info.ssi_pid, static_cast<uint32_t>(getpid()));
}

TEST_F(SignalFdTest, FdIsNonBlockingAndCloseOnExec) {
  std::string error;
  fd_ = openSignalFd(only({SIGUSR2}), SIG_BLOCK, error);
  ASSERT_GE(fd_, 0) << error;
  EXPECT_NE(fcntl(fd_, F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(fd_, F_GETFD) & FD_CLOEXEC, 0);
  // Nothing pending: an event loop's read must not hang.
  signalfd_siginfo info{};
  EXPECT_EQ(read(fd_, &info, sizeof info), -1);
  EXPECT_EQ(errno, EAGAIN);
}

TEST_F(SignalFdTest, BlockAddsToTheInheritedMaskAndSetMaskReplacesIt) {
  const sigset_t usr1 = only({SIGUSR1});
  sigprocmask(SIG_BLOCK, &usr1, nullptr);  // what a child inherits across fork
  std::string error;
  fd_ = openSignalFd(only({SIGUSR2}), SIG_BLOCK, error);
  ASSERT_GE(fd_, 0) << error;
  sigset_t mask = currentMask();
  EXPECT_TRUE(sigismember(&mask, SIGUSR1));
  EXPECT_TRUE(sigismember(&mask, SIGUSR2));
  close(fd_);

  fd_ = openSignalFd(only({SIGUSR2}), SIG_SETMASK, error);
  ASSERT_GE(fd_, 0) << error;
  mask = currentMask();
  EXPECT_FALSE(sigismember(&mask, SIGUSR1));
  EXPECT_TRUE(sigismember(&mask, SIGUSR2));
}

TEST_F(SignalFdTest, FailureReturnsMinusOneWithASignalfdError) {
  std::string error;
  fd_ = openSignalFd(only({SIGUSR2}), -12345, error);  // no such `how`
  EXPECT_EQ(fd_, -1);
  EXPECT_EQ(error.rfind("signalfd: ", 0), 0u) << error;
  const sigset_t mask = currentMask();
  EXPECT_FALSE(sigismember(&mask, SIGUSR2));
}

}  // namespace
}  // namespace rtpc
