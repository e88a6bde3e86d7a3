// rtp_cluster: the daemon (supervisor + one worker process per cluster), or
// with -d the configuration check.

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <string_view>

#include "shared/config_loader.h"
#include "shared/log_quote.h"
#include "shared/log_setup.h"
#include "supervisor/config_check.h"
#include "supervisor/control_socket.h"
#include "supervisor/daemon.h"
#include "supervisor/options.h"
#include "supervisor/pid_file.h"
#include "supervisor/supervisor.h"

#ifndef RTPC_VERSION
#define RTPC_VERSION "unknown"
#endif

namespace {

const std::string kProgram = "rtp_cluster";

// Everything logs to stderr: the terminal or the journal with -f, the log
// file once detached (Daemon::detach puts it on fd 2), in the supervisor and
// every worker. Asked again after detaching: stderr is another file then.
void setUpLogging(rtpc::LogLevel level) {
  rtpc::setUpLogging(static_cast<spdlog::level::level_enum>(level), rtpc::stderrIsJournal());
}

// Every failed start ends here, once: one STARTUP_FAILED line in the log
// (the log file once detached; stderr before that and with -f) and the
// reason on the terminal, through the waiting parent once detached. `reason`
// is the step that failed, for alerts; `error` the text for people.
int startupFailed(std::string_view reason, const std::string& error, bool detached) {
  spdlog::error("STARTUP_FAILED reason={} error={}", reason, rtpc::logQuoted(error));
  if (detached) {
    rtpc::Daemon::reportFailure(error);
  } else {
    // The journal files this line as an error too.
    std::cerr << (rtpc::stderrIsJournal() ? "<3>" : "") << kProgram << ": " << error << std::endl;
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const rtpc::OptionsResult parsed = rtpc::parseOptions(argc, argv);
  switch (parsed.action) {
    case rtpc::OptionsAction::kError:
      std::cerr << kProgram << ": " << parsed.error << '\n'
                << "Try '" << kProgram << " --help' for more information.\n";
      return 1;
    case rtpc::OptionsAction::kHelp:
      std::cout << rtpc::usageText(kProgram);
      return 0;
    case rtpc::OptionsAction::kVersion:
      std::cout << kProgram << " " << RTPC_VERSION << '\n';
      return 0;
    case rtpc::OptionsAction::kRun:
      break;
  }
  if (parsed.options.check_config) return rtpc::checkConfig(parsed.options.config_file, std::cout, std::cerr);

  rtpc::SupervisorSettings settings;
  settings.options = parsed.options;
  rtpc::Options& o = settings.options;
  // The daemon changes to "/"; a reload must still find the file.
  o.config_file = rtpc::Daemon::absolutePath(o.config_file);
  o.pid_file = rtpc::Daemon::absolutePath(o.pid_file);
  o.log_file = rtpc::Daemon::absolutePath(o.log_file);
  if (rtpc::isUnixPath(o.admin_address.transport)) o.admin_address.path = rtpc::Daemon::absolutePath(o.admin_address.path);
  settings.shm_name = rtpc::Daemon::shmNameFor(o.pid_file);
  settings.log_to_file = !o.foreground;
  setUpLogging(o.log_level);

  // Detached first, so that every later failure (the config, a second
  // instance) is logged to the log file as well; the waiting parent still
  // prints it on the terminal.
  const bool detached = !o.foreground;
  std::string error;
  if (detached) {
    if (!rtpc::Daemon::detach(o.log_file, error)) return startupFailed("detach", error, false);
    setUpLogging(o.log_level);
  }

  rtpc::LoadResult loaded = rtpc::loadConfigFile(o.config_file);
  if (!loaded.ok()) return startupFailed("config", loaded.error, detached);
  if (!rtpc::resolveSocketOwner(o.owner_user, o.owner_group, settings.owner, error)) {
    return startupFailed("socket_owner", error, detached);
  }

  std::unique_ptr<rtpc::PidFile> pid_file = rtpc::PidFile::acquire(o.pid_file, error);
  if (!pid_file) return startupFailed("pid_file", error, detached);
  if (!pid_file->write(getpid(), error)) {
    pid_file.reset();
    return startupFailed("pid_file", error, detached);
  }

  std::unique_ptr<rtpc::Supervisor> supervisor =
      rtpc::Supervisor::create(settings, std::move(*loaded.config), error);
  if (!supervisor) {
    // Removed before the waiting parent exits: nothing is left behind once
    // `rtp_cluster` has returned.
    pid_file.reset();
    return startupFailed("setup", error, detached);
  }
  // READY (service manager, waiting parent, `READY pid=` with -f) is
  // reported by the supervisor once every worker serves.
  const int code = supervisor->run();
  supervisor.reset();
  return code;
}
