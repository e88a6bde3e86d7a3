// Command line of rtp_cluster: the reference's flags and defaults
// (REFERENCE.md section 1), the long forms, and one-line errors.

#include "supervisor/options.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "supervisor/config_check.h"

namespace rtpc {
namespace {

OptionsResult parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"rtp_cluster"};
  argv.insert(argv.end(), args.begin(), args.end());
  return parseOptions(static_cast<int>(argv.size()), argv.data());
}

TEST(OptionsTest, DefaultsAreTheReferences) {
  const OptionsResult r = parse({});
  ASSERT_EQ(r.action, OptionsAction::kRun);
  const Options& o = r.options;
  EXPECT_FALSE(o.foreground);
  EXPECT_FALSE(o.check_config);
  EXPECT_EQ(o.pid_file, "/var/run/rtp_cluster.pid");
  // The build's sysconfdir (packaging_test.sh checks it against meson's).
  EXPECT_EQ(o.config_file, defaultConfigFile());
  EXPECT_EQ(o.config_file.front(), '/');
  EXPECT_TRUE(o.config_file.ends_with("/rtp_cluster.xml")) << o.config_file;
  EXPECT_EQ(o.log_file, "/var/log/rtp_cluster.log");
  EXPECT_EQ(o.admin_socket, "/var/run/rtp_cluster.sock");
  EXPECT_EQ(o.admin_address.uri(), "unix:/var/run/rtp_cluster.sock");
  EXPECT_EQ(o.owner_user, "");
  EXPECT_EQ(o.owner_group, "");
  EXPECT_EQ(o.log_level, LogLevel::kInfo);
}

TEST(OptionsTest, ShortFlagsCombinedAttachedAndSeparate) {
  const OptionsResult r =
      parse({"-fd", "-P", "/tmp/p.pid", "-c/etc/rc.xml", "-L", "/tmp/l.log", "-s", "unix:/tmp/a.sock", "-orunner:wheel"});
  ASSERT_EQ(r.action, OptionsAction::kRun) << r.error;
  const Options& o = r.options;
  EXPECT_TRUE(o.foreground);
  EXPECT_TRUE(o.check_config);
  EXPECT_EQ(o.pid_file, "/tmp/p.pid");
  EXPECT_EQ(o.config_file, "/etc/rc.xml");
  EXPECT_EQ(o.log_file, "/tmp/l.log");
  EXPECT_EQ(o.admin_socket, "unix:/tmp/a.sock");
  EXPECT_EQ(o.admin_address.uri(), "unix:/tmp/a.sock");
  EXPECT_EQ(o.owner_user, "runner");
  EXPECT_EQ(o.owner_group, "wheel");
}

TEST(OptionsTest, ValueTakingFlagEndsACluster) {
  const OptionsResult r = parse({"-fc", "x.xml"});
  ASSERT_EQ(r.action, OptionsAction::kRun) << r.error;
  EXPECT_TRUE(r.options.foreground);
  EXPECT_EQ(r.options.config_file, "x.xml");
  const OptionsResult attached = parse({"-dcx.xml"});
  ASSERT_EQ(attached.action, OptionsAction::kRun) << attached.error;
  EXPECT_TRUE(attached.options.check_config);
  EXPECT_EQ(attached.options.config_file, "x.xml");
}

TEST(OptionsTest, CheckConfigImpliesForeground) {
  const OptionsResult r = parse({"-d"});
  EXPECT_TRUE(r.options.check_config);
  EXPECT_TRUE(r.options.foreground);
  EXPECT_TRUE(parse({"--check-config"}).options.foreground);
  EXPECT_FALSE(parse({"-f"}).options.check_config);
}

TEST(OptionsTest, LongFormsWithEqualsOrSeparateValue) {
  const OptionsResult r = parse({"--foreground", "--pidfile=/p", "--config", "/c", "--logfile=/l", "--admin-socket",
                                 "tcp:127.0.0.1", "--owner=:daemon", "--log-level", "debug"});
  ASSERT_EQ(r.action, OptionsAction::kRun) << r.error;
  const Options& o = r.options;
  EXPECT_TRUE(o.foreground);
  EXPECT_FALSE(o.check_config);
  EXPECT_EQ(o.pid_file, "/p");
  EXPECT_EQ(o.config_file, "/c");
  EXPECT_EQ(o.log_file, "/l");
  EXPECT_EQ(o.admin_address.uri(), "tcp:127.0.0.1:12345");
  EXPECT_EQ(o.owner_user, "");
  EXPECT_EQ(o.owner_group, "daemon");
  EXPECT_EQ(o.log_level, LogLevel::kDebug);
}

TEST(OptionsTest, AdminSocketForms) {
  struct Case {
    const char* arg;
    const char* uri;
  };
  const Case cases[] = {
      {"/run/rtpc.sock", "unix:/run/rtpc.sock"},
      {"unix:/run/rtpc.sock", "unix:/run/rtpc.sock"},
      {"tcp:127.0.0.1:4000", "tcp:127.0.0.1:4000"},
      {"tcp:localhost", "tcp:localhost:12345"},
      {"tcp6:[::1]:4000", "tcp6:[::1]:4000"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.arg);
    const OptionsResult r = parse({"-s", c.arg});
    ASSERT_EQ(r.action, OptionsAction::kRun) << r.error;
    EXPECT_EQ(r.options.admin_socket, c.arg);
    EXPECT_EQ(r.options.admin_address.uri(), c.uri);
  }
}

TEST(OptionsTest, EveryLogLevel) {
  struct Case {
    const char* arg;
    LogLevel level;
  };
  const Case cases[] = {{"trace", LogLevel::kTrace}, {"debug", LogLevel::kDebug},   {"info", LogLevel::kInfo},
                        {"warn", LogLevel::kWarn},   {"warning", LogLevel::kWarn}, {"error", LogLevel::kError},
                        {"critical", LogLevel::kCritical}, {"off", LogLevel::kOff}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.arg);
    const OptionsResult r = parse({"--log-level", c.arg});
    ASSERT_EQ(r.action, OptionsAction::kRun) << r.error;
    EXPECT_EQ(r.options.log_level, c.level);
  }
  EXPECT_EQ(logLevelName(LogLevel::kCritical), "critical");
  EXPECT_EQ(parseLogLevel(logLevelName(LogLevel::kTrace)), LogLevel::kTrace);
}

TEST(OptionsTest, HelpAndVersion) {
  EXPECT_EQ(parse({"--help"}).action, OptionsAction::kHelp);
  EXPECT_EQ(parse({"-h"}).action, OptionsAction::kHelp);
  EXPECT_EQ(parse({"-f", "--help", "--bogus"}).action, OptionsAction::kHelp);
  EXPECT_EQ(parse({"--version"}).action, OptionsAction::kVersion);
  // An error before --help is still an error.
  EXPECT_EQ(parse({"--bogus", "--help"}).action, OptionsAction::kError);
  const std::string usage = usageText("rtp_cluster");
  // Every option is in the usage lines, not only in the list below them.
  EXPECT_EQ(usage.rfind("usage: rtp_cluster [-fd] [-P pidfile] [-c conffile] [-L logfile] [-s cmd_socket] [-o uname:gname]\n"
                        "                   [--log-level LEVEL] [--restart-backoff MIN[:MAX]]\n", 0), 0u) << usage;
  EXPECT_NE(usage.find("(default " + defaultConfigFile() + ")"), std::string::npos) << usage;
  for (const char* flag : {"--foreground", "--check-config", "--pidfile", "--config", "--logfile", "--admin-socket",
                           "--owner", "--log-level", "--restart-backoff", "--help", "--version"}) {
    EXPECT_NE(usage.find(flag), std::string::npos) << flag;
  }
}

TEST(OptionsTest, DoubleDashEndsOptions) {
  EXPECT_EQ(parse({"-f", "--"}).action, OptionsAction::kRun);
  const OptionsResult r = parse({"--", "-d"});
  EXPECT_EQ(r.action, OptionsAction::kError);
  EXPECT_EQ(r.error, "unexpected argument \"-d\"");
}

TEST(OptionsTest, ErrorsAreOneLineEach) {
  struct Case {
    std::vector<const char*> args;
    const char* error;
  };
  const std::vector<Case> cases = {
      {{"-x"}, "unknown option \"-x\""},
      {{"-fx"}, "unknown option \"-x\""},
      {{"--bogus"}, "unknown option \"--bogus\""},
      {{"--config-file=x"}, "unknown option \"--config-file=x\""},
      {{"-c"}, "-c needs a value"},
      {{"--config"}, "--config needs a value"},
      {{"-fP"}, "-P needs a value"},
      {{"-c", ""}, "-c must not be empty"},
      {{"--pidfile="}, "--pidfile must not be empty"},
      {{"--foreground=yes"}, "--foreground takes no value"},
      {{"config.xml"}, "unexpected argument \"config.xml\""},
      {{"-"}, "unexpected argument \"-\""},
      {{"--log-level", "loud"}, "--log-level must be one of trace, debug, info, warn, error, critical, off, got \"loud\""},
      {{"--log-level=INFO"}, "--log-level must be one of trace, debug, info, warn, error, critical, off, got \"INFO\""},
      {{"-o", ":"}, "-o must be user:group, user or :group, got \":\""},
      {{"-o", "a:b:c"}, "-o must be user:group, user or :group, got \"a:b:c\""},
      {{"-s", "udp:127.0.0.1:5"}, "-s must be /path, unix:/path or tcp:host[:port], got \"udp:127.0.0.1:5\""},
      {{"-s", "cunix:/tmp/a"}, "-s must be /path, unix:/path or tcp:host[:port], got \"cunix:/tmp/a\""},
      {{"--admin-socket", "tcp:127.0.0.1:99999"}, "--admin-socket \"tcp:127.0.0.1:99999\": port must be 1..65535, got \"99999\""},
      {{"-s", "unix:"}, "-s \"unix:\": address is empty"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.error);
    std::vector<const char*> argv{"rtp_cluster"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const OptionsResult r = parseOptions(static_cast<int>(argv.size()), argv.data());
    EXPECT_EQ(r.action, OptionsAction::kError);
    EXPECT_EQ(r.error, c.error);
  }
}

TEST(OptionsTest, OwnerForms) {
  OptionsResult r = parse({"-o", "rtpc"});
  EXPECT_EQ(r.options.owner_user, "rtpc");
  EXPECT_EQ(r.options.owner_group, "");
  r = parse({"--owner", "rtpc:rtpc"});
  EXPECT_EQ(r.options.owner_user, "rtpc");
  EXPECT_EQ(r.options.owner_group, "rtpc");
}

// checkConfig is what `rtp_cluster -d` runs.
TEST(ConfigCheckTest, SummaryCountsClustersAndProxiesWithSingulars) {
  Config config;
  config.source_path = "x.xml";
  EXPECT_EQ(configSummary(config), "x.xml: configuration OK: 0 clusters, 0 RTP proxies");
  config.clusters.resize(1);
  config.clusters[0].members.resize(1);
  EXPECT_EQ(configSummary(config), "x.xml: configuration OK: 1 cluster, 1 RTP proxy");
  config.clusters.resize(2);
  config.clusters[1].members.resize(2);
  EXPECT_EQ(configSummary(config), "x.xml: configuration OK: 2 clusters, 3 RTP proxies");
}

TEST(ConfigCheckTest, MissingFileGoesToErrAndReturnsOne) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(checkConfig("/nonexistent/rtp_cluster.xml", out, err), 1);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(err.str(), "/nonexistent/rtp_cluster.xml: cannot open: No such file or directory\n");
}

}  // namespace
}  // namespace rtpc
