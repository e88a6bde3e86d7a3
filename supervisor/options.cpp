#include "supervisor/options.h"

#include <algorithm>
#include <array>

#include "shared/quote.h"

namespace rtpc {
namespace {

constexpr std::array<std::string_view, 7> kLogLevelNames = {"trace", "debug", "info", "warn",
                                                            "error", "critical", "off"};

enum class Id : uint8_t {
  kForeground,
  kCheckConfig,
  kPidFile,
  kConfig,
  kLogFile,
  kAdminSocket,
  kOwner,
  kLogLevel,
  kRestartBackoff,
  kHelp,
  kVersion,
};

struct Spec {
  char short_name;  // '\0' = long form only
  std::string_view long_name;
  bool takes_value;
  Id id;
};

constexpr std::array<Spec, 11> kSpecs{{
    {'f', "foreground", false, Id::kForeground},
    {'d', "check-config", false, Id::kCheckConfig},
    {'P', "pidfile", true, Id::kPidFile},
    {'c', "config", true, Id::kConfig},
    {'L', "logfile", true, Id::kLogFile},
    {'s', "admin-socket", true, Id::kAdminSocket},
    {'o', "owner", true, Id::kOwner},
    {'\0', "log-level", true, Id::kLogLevel},
    {'\0', "restart-backoff", true, Id::kRestartBackoff},
    {'h', "help", false, Id::kHelp},
    {'\0', "version", false, Id::kVersion},
}};

const Spec* findShort(char c) {
  for (const Spec& s : kSpecs) {
    if (s.short_name != '\0' && s.short_name == c) return &s;
  }
  return nullptr;
}

const Spec* findLong(std::string_view name) {
  for (const Spec& s : kSpecs) {
    if (s.long_name == name) return &s;
  }
  return nullptr;
}

// Applies one option; returns an error line or "".
std::string apply(const Spec& spec, std::string_view shown, std::string_view value, OptionsResult& result) {
  Options& o = result.options;
  if (spec.takes_value && value.empty()) return std::string(shown) + " must not be empty";
  switch (spec.id) {
    case Id::kForeground:
      o.foreground = true;
      break;
    case Id::kCheckConfig:
      o.check_config = true;
      o.foreground = true;
      break;
    case Id::kPidFile:
      o.pid_file = std::string(value);
      break;
    case Id::kConfig:
      o.config_file = std::string(value);
      break;
    case Id::kLogFile:
      o.log_file = std::string(value);
      break;
    case Id::kAdminSocket: {
      AddressResult r = parseAddressUri(value, Transport::kUnix, kDefaultAdminPort);
      if (!r.address) return std::string(shown) + " " + quoteForMessage(value) + ": " + r.error;
      const Transport t = r.address->transport;
      if (t != Transport::kUnix && t != Transport::kTcp && t != Transport::kTcp6) {
        return std::string(shown) + " must be /path, unix:/path or tcp:host[:port], got " + quoteForMessage(value);
      }
      o.admin_socket = std::string(value);
      o.admin_address = std::move(*r.address);
      break;
    }
    case Id::kOwner: {
      const size_t colon = value.find(':');
      const std::string_view user = value.substr(0, colon);
      const std::string_view group = colon == std::string_view::npos ? std::string_view() : value.substr(colon + 1);
      if ((user.empty() && group.empty()) || group.find(':') != std::string_view::npos) {
        return std::string(shown) + " must be user:group, user or :group, got " + quoteForMessage(value);
      }
      o.owner_user = std::string(user);
      o.owner_group = std::string(group);
      break;
    }
    case Id::kLogLevel: {
      const std::optional<LogLevel> level = parseLogLevel(value);
      if (!level) {
        return std::string(shown) + " must be one of trace, debug, info, warn, error, critical, off, got " +
               quoteForMessage(value);
      }
      o.log_level = *level;
      break;
    }
    case Id::kRestartBackoff: {
      // MIN_MS[:MAX_MS]; tests shorten the schedule, operators rarely need to.
      const size_t colon = value.find(':');
      const auto number = [](std::string_view text, uint32_t& out) {
        if (text.empty() || text.size() > 6) return false;
        uint32_t v = 0;
        for (const char ch : text) {
          if (ch < '0' || ch > '9') return false;
          v = v * 10 + static_cast<uint32_t>(ch - '0');
        }
        out = v;
        return true;
      };
      uint32_t min_ms = 0;
      uint32_t max_ms = 0;
      const bool ok = number(value.substr(0, colon), min_ms) &&
                      (colon == std::string_view::npos ? (max_ms = std::max<uint32_t>(min_ms, 5000), true)
                                                       : number(value.substr(colon + 1), max_ms));
      if (!ok || min_ms < 1 || max_ms < min_ms || max_ms > 600000) {
        return std::string(shown) + " must be MIN_MS[:MAX_MS] with 1 <= MIN <= MAX <= 600000, got " +
               quoteForMessage(value);
      }
      o.restart_backoff_min_ms = min_ms;
      o.restart_backoff_max_ms = max_ms;
      break;
    }
    case Id::kHelp:
      result.action = OptionsAction::kHelp;
      break;
    case Id::kVersion:
      result.action = OptionsAction::kVersion;
      break;
  }
  return {};
}

OptionsResult failure(std::string error) {
  OptionsResult r;
  r.action = OptionsAction::kError;
  r.error = std::move(error);
  return r;
}

}  // namespace

std::optional<LogLevel> parseLogLevel(std::string_view text) {
  for (size_t i = 0; i < kLogLevelNames.size(); ++i) {
    if (kLogLevelNames[i] == text) return static_cast<LogLevel>(i);
  }
  if (text == "warning") return LogLevel::kWarn;
  return std::nullopt;
}

std::string_view logLevelName(LogLevel level) {
  const auto i = static_cast<size_t>(level);
  return i < kLogLevelNames.size() ? kLogLevelNames[i] : "?";
}

OptionsResult parseOptions(int argc, const char* const* argv) {
  OptionsResult result;
  // --help / --version win over the options around them, but not over an
  // earlier error.
  const auto done = [&result] { return result.action != OptionsAction::kRun; };
  for (int i = 1; i < argc && !done(); ++i) {
    const std::string_view arg = argv[i] != nullptr ? argv[i] : "";
    if (arg == "--") {
      if (i + 1 < argc) return failure("unexpected argument " + quoteForMessage(argv[i + 1]));
      break;
    }
    if (arg.size() > 2 && arg.substr(0, 2) == "--") {
      const std::string_view body = arg.substr(2);
      const size_t eq = body.find('=');
      const std::string_view name = body.substr(0, eq);
      const Spec* spec = findLong(name);
      const std::string shown = "--" + std::string(name);
      if (spec == nullptr) return failure("unknown option " + quoteForMessage(arg));
      std::string_view value;
      if (eq != std::string_view::npos) {
        if (!spec->takes_value) return failure(shown + " takes no value");
        value = body.substr(eq + 1);
      } else if (spec->takes_value) {
        if (i + 1 >= argc) return failure(shown + " needs a value");
        value = argv[++i];
      }
      if (std::string e = apply(*spec, shown, value, result); !e.empty()) return failure(std::move(e));
      continue;
    }
    if (arg.size() < 2 || arg.front() != '-') return failure("unexpected argument " + quoteForMessage(arg));
    // A cluster of short flags; one that takes a value ends the cluster.
    for (size_t k = 1; k < arg.size() && !done(); ++k) {
      const Spec* spec = findShort(arg[k]);
      if (spec == nullptr) return failure("unknown option " + quoteForMessage("-" + std::string(1, arg[k])));
      const std::string shown = "-" + std::string(1, arg[k]);
      std::string_view value;
      if (spec->takes_value) {
        if (k + 1 < arg.size()) {
          value = arg.substr(k + 1);
        } else if (i + 1 < argc) {
          value = argv[++i];
        } else {
          return failure(shown + " needs a value");
        }
        k = arg.size();
      }
      if (std::string e = apply(*spec, shown, value, result); !e.empty()) return failure(std::move(e));
    }
  }
  return result;
}

#ifndef RTPC_SYSCONFDIR
#define RTPC_SYSCONFDIR "/usr/local/etc"
#endif

std::string defaultConfigFile() { return RTPC_SYSCONFDIR "/rtp_cluster.xml"; }

std::string usageText(std::string_view program) {
  std::string p(program);
  return "usage: " + p +
         " [-fd] [-P pidfile] [-c conffile] [-L logfile] [-s cmd_socket] [-o uname:gname]\n"
         "       " + std::string(p.size(), ' ') +
         " [--log-level LEVEL] [--restart-backoff MIN[:MAX]]\n"
         "\n"
         "  -f, --foreground           stay in the foreground (default: daemonize)\n"
         "  -d, --check-config         check the configuration file and exit (implies -f)\n"
         "  -P, --pidfile FILE         pid file (default /var/run/rtp_cluster.pid)\n"
         "  -c, --config FILE          configuration file (default " + defaultConfigFile() + ")\n"
         "  -L, --logfile FILE         log file (default /var/log/rtp_cluster.log)\n"
         "  -s, --admin-socket ADDR    admin socket: /path, unix:/path or tcp:host[:port]\n"
         "                             (default /var/run/rtp_cluster.sock; tcp port 12345)\n"
         "  -o, --owner USER:GROUP     owner of the unix sockets it creates (default unchanged)\n"
         "      --log-level LEVEL      trace, debug, info, warn, error, critical or off (default info)\n"
         "      --restart-backoff MIN[:MAX]  delay before restarting a dead worker, in ms; doubles\n"
         "                             per restart up to MAX (default 100:5000)\n"
         "  -h, --help                 show this help and exit\n"
         "      --version              show the version and exit\n";
}

}  // namespace rtpc
