#pragma once
// Command line of the rtp_cluster daemon: the reference's short flags
// (REFERENCE.md section 1, same defaults) plus long forms. Pure: no output,
// no exit; main() decides what to print from the result.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shared/address.h"

namespace rtpc {

enum class LogLevel : uint8_t { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };
std::optional<LogLevel> parseLogLevel(std::string_view text);  // "trace" .. "off"
std::string_view logLevelName(LogLevel level);

// `-c`'s default: rtp_cluster.xml in the build's sysconfdir (meson's prefix
// and sysconfdir: /usr/local/etc for a default build, /etc for the Debian
// package), where `meson install` puts the example.
std::string defaultConfigFile();

struct Options {
  bool foreground = false;    // -f; implied by -d
  bool check_config = false;  // -d
  std::string pid_file = "/var/run/rtp_cluster.pid";
  std::string config_file = defaultConfigFile();
  std::string log_file = "/var/log/rtp_cluster.log";
  std::string admin_socket = "/var/run/rtp_cluster.sock";  // as given
  SocketAddress admin_address{Transport::kUnix, {}, 0, "/var/run/rtp_cluster.sock"};
  // -o user:group; empty = leave the owner of created sockets unchanged.
  std::string owner_user;
  std::string owner_group;
  LogLevel log_level = LogLevel::kInfo;
  // --restart-backoff: a dead worker is restarted after min, doubling per
  // restart up to max; reset once a worker stayed up 30 s.
  uint32_t restart_backoff_min_ms = 100;
  uint32_t restart_backoff_max_ms = 5000;
};

enum class OptionsAction : uint8_t {
  kRun,      // start (or, with check_config, check the config)
  kHelp,     // print usageText() to stdout, exit 0
  kVersion,  // print the version, exit 0
  kError,    // print error and the --help hint to stderr, exit 1
};

struct OptionsResult {
  OptionsAction action = OptionsAction::kRun;
  Options options;
  std::string error;  // kError: one line, without the program name
};

// argv[0] is the program name and is skipped. Short flags may be combined
// ("-fd") and take their value attached or as the next word ("-Pfile",
// "-P file"); long ones as "--pidfile=file" or "--pidfile file". "--" ends
// the options; no positional arguments are accepted.
OptionsResult parseOptions(int argc, const char* const* argv);

std::string usageText(std::string_view program);

}  // namespace rtpc
