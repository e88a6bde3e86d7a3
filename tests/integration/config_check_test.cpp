// Runs the built rtp_cluster binary: `-d` on the packaged example and on a
// broken file, plus the command-line paths main() owns (help, version, usage
// errors, the not-yet-implemented daemon).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

struct ProcessResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ConfigCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = env("RTP_CLUSTER_BIN");
    root_ = env("RTPC_SOURCE_ROOT");
    ASSERT_FALSE(bin_.empty()) << "RTP_CLUSTER_BIN not set (run through meson test)";
    ASSERT_FALSE(root_.empty()) << "RTPC_SOURCE_ROOT not set (run through meson test)";
    char tmpl[] = "/tmp/rtpc_config_check.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const std::string& f : files_) unlink(f.c_str());
    unlink((dir_ + "/stdout").c_str());
    unlink((dir_ + "/stderr").c_str());
    rmdir(dir_.c_str());
  }

  std::string writeFile(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }

  // Runs the binary with its output in files (no pipes to drain), so a
  // hanging child shows up as the test's timeout rather than a deadlock.
  ProcessResult run(const std::vector<std::string>& args) {
    const std::string out_path = dir_ + "/stdout";
    const std::string err_path = dir_ + "/stderr";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(bin_.c_str()));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    ProcessResult result;
    const int rc = posix_spawn(&pid, bin_.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0) << "posix_spawn " << bin_;
    if (rc != 0) return result;
    // A child that hangs is killed after the limit and fails the test
    // (instead of hanging it).
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    pid_t waited = 0;
    while ((waited = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
      usleep(10000);
    }
    if (waited == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "the child hung (killed after 20 s)";
    }
    EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = slurp(out_path);
    result.err = slurp(err_path);
    return result;
  }

  std::string bin_;
  std::string root_;
  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(ConfigCheckTest, PackagedExampleChecksOk) {
  const std::string path = root_ + "/packaging/rtp_cluster.xml";
  const ProcessResult r = run({"-d", "-c", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, path + ": configuration OK: 2 clusters, 3 RTP proxies\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(ConfigCheckTest, LongFormChecksOkToo) {
  const std::string path = root_ + "/packaging/rtp_cluster.xml";
  const ProcessResult r = run({"--check-config", "--config=" + path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, path + ": configuration OK: 2 clusters, 3 RTP proxies\n");
}

TEST_F(ConfigCheckTest, BrokenFileFailsWithTheErrorLine) {
  const std::string path = writeFile("rtp_cluster.xml",
                                     "<rtp_cluster_config>\n"
                                     "  <rtp_cluster>\n"
                                     "    <name>c1</name><protocol>udp</protocol><address>127.0.0.1</address>\n"
                                     "    <rtpproxy>\n"
                                     "      <name>R1</name><protocol>udp</protocol><address>127.0.0.1:1</address>\n"
                                     "      <weight>abc</weight><capacity>1</capacity>\n"
                                     "    </rtpproxy>\n"
                                     "  </rtp_cluster>\n"
                                     "</rtp_cluster_config>\n");
  const ProcessResult r = run({"-d", "-c", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, path + ":6: rtpproxy \"R1\" in cluster \"c1\": <weight> must be an integer >= 0, got \"abc\"\n");
}

TEST_F(ConfigCheckTest, MalformedXmlFails) {
  const std::string path = writeFile("bad.xml", "<rtp_cluster_config>\n<rtp_cluster>\n</rtp_cluster_config>\n");
  const ProcessResult r = run({"-fd", "-c" + path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, path + ":3: malformed XML: Start-end tags mismatch\n");
}

TEST_F(ConfigCheckTest, MissingFileFails) {
  const std::string path = dir_ + "/absent.xml";
  const ProcessResult r = run({"-d", "-c", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, path + ": cannot open: No such file or directory\n");
}

TEST_F(ConfigCheckTest, UsageErrorExitsOneWithAHint) {
  const ProcessResult r = run({"-x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "rtp_cluster: unknown option \"-x\"\nTry 'rtp_cluster --help' for more information.\n");
}

TEST_F(ConfigCheckTest, HelpAndVersionExitZero) {
  const ProcessResult help = run({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_EQ(help.out.rfind("usage: rtp_cluster [-fd]", 0), 0u) << help.out;
  const ProcessResult version = run({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("rtp_cluster ", 0), 0u) << version.out;
  EXPECT_EQ(version.out.back(), '\n');
}

// Without -d the daemon starts (tests/integration/daemon_test.cpp); here only
// that a start that cannot happen fails at once with the reason, touching no
// system path.
TEST_F(ConfigCheckTest, DaemonStartFailsAtOnceWithTheReason) {
  const ProcessResult r = run({"-f", "-c", root_ + "/packaging/rtp_cluster.xml", "-P", "/nonexistent/dir/rtp_cluster.pid"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot open the pid file /nonexistent/dir/rtp_cluster.pid"), std::string::npos) << r.err;
}

}  // namespace

namespace {

// A FIFO (or any non-regular file) at the config path is refused at once:
// opening a FIFO for reading used to wait for a writer for ever.
TEST_F(ConfigCheckTest, AFifoAsTheConfigIsRefusedWithoutBlocking) {
  const std::string path = dir_ + "/fifo.xml";
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  files_.push_back(path);
  const auto start = std::chrono::steady_clock::now();
  const ProcessResult r = run({"-d", "-c", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, path + ": not a regular file\n");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  const ProcessResult dir = run({"-d", "-c", dir_});
  EXPECT_EQ(dir.exit_code, 1);
  EXPECT_EQ(dir.err, dir_ + ": not a regular file\n");
}

// The reference accepts a symlinked config; so do we (its target is checked).
TEST_F(ConfigCheckTest, ASymlinkedConfigIsFollowed) {
  const std::string link = dir_ + "/link.xml";
  ASSERT_EQ(symlink((root_ + "/packaging/rtp_cluster.xml").c_str(), link.c_str()), 0);
  files_.push_back(link);
  const ProcessResult r = run({"-d", "-c", link});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, link + ": configuration OK: 2 clusters, 3 RTP proxies\n");
}

// -P and -L never follow a symlink: opening one for writing would truncate
// or append to whatever it points at.
TEST_F(ConfigCheckTest, APidFileOrLogFileThatIsASymlinkIsRefusedAndItsTargetUntouched) {
  const std::string target = writeFile("precious", "keep me\n");
  const std::string pid_link = dir_ + "/pid.link";
  const std::string log_link = dir_ + "/log.link";
  ASSERT_EQ(symlink(target.c_str(), pid_link.c_str()), 0);
  ASSERT_EQ(symlink(target.c_str(), log_link.c_str()), 0);
  files_.push_back(pid_link);
  files_.push_back(log_link);
  const std::string config = root_ + "/packaging/rtp_cluster.xml";
  const ProcessResult pid = run({"-f", "-c", config, "-P", pid_link});
  EXPECT_EQ(pid.exit_code, 1);
  EXPECT_NE(pid.err.find("rtp_cluster: cannot open the pid file " + pid_link +
                         ": it is a symbolic link (refusing to follow it)\n"),
            std::string::npos)
      << pid.err;
  const ProcessResult log = run({"-c", config, "-P", dir_ + "/rtp_cluster.pid", "-L", log_link});
  files_.push_back(dir_ + "/rtp_cluster.pid");
  EXPECT_EQ(log.exit_code, 1);
  EXPECT_NE(log.err.find("rtp_cluster: cannot open the log file " + log_link +
                         ": it is a symbolic link (refusing to follow it)\n"),
            std::string::npos)
      << log.err;
  EXPECT_EQ(slurp(target), "keep me\n");
}

}  // namespace
