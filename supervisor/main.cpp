// rtp_cluster: the daemon (supervisor + one worker process per cluster), or
// with -d the configuration check.

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "shared/config_loader.h"
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

int fail(const std::string& message) {
  std::cerr << kProgram << ": " << message << '\n';
  return 1;
}

// Everything logs to stderr: the terminal with -f, the log file otherwise
// (Daemon::detach puts it on fd 2), in the supervisor and every worker.
void setUpLogging(rtpc::LogLevel level) {
  auto logger = spdlog::stderr_logger_st("rtp_cluster");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e [%P] %l %v");
  logger->set_level(static_cast<spdlog::level::level_enum>(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
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

  rtpc::LoadResult loaded = rtpc::loadConfigFile(o.config_file);
  if (!loaded.ok()) return fail(loaded.error);
  std::string error;
  if (!rtpc::resolveSocketOwner(o.owner_user, o.owner_group, settings.owner, error)) return fail(error);

  // Locked before detaching, so that a second instance says why on the terminal.
  std::unique_ptr<rtpc::PidFile> pid_file = rtpc::PidFile::acquire(o.pid_file, error);
  if (!pid_file) return fail(error);
  if (!o.foreground && !rtpc::Daemon::detach(o.log_file, error)) return fail(error);
  setUpLogging(o.log_level);
  if (!pid_file->write(getpid(), error)) {
    pid_file.reset();
    rtpc::Daemon::reportFailure(error);
    return fail(error);
  }

  std::unique_ptr<rtpc::Supervisor> supervisor =
      rtpc::Supervisor::create(settings, std::move(*loaded.config), error);
  if (!supervisor) {
    spdlog::error("STARTUP_FAILED error=\"{}\"", error);
    // Cleaned up before the waiting parent exits: nothing is left behind
    // once `rtp_cluster` has returned.
    pid_file.reset();
    rtpc::Daemon::reportFailure(error);
    return o.foreground ? fail(error) : 1;
  }
  rtpc::Daemon::reportReady();
  if (o.foreground) std::cout << "READY pid=" << getpid() << std::endl;
  const int code = supervisor->run();
  supervisor.reset();
  return code;
}
