// The Prometheus text of a StatusSnapshot: exact sample lines for a small
// snapshot, label value escaping, non-finite values, an absent sample for an
// unknown value, and the format's grouping rule (one HELP/TYPE per family,
// its samples right after it).

#include "shared/metrics_render.h"

#include <gtest/gtest.h>

#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace rtpc {
namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool hasLine(const std::string& text, const std::string& line) {
  for (const std::string& l : lines(text)) {
    if (l == line) return true;
  }
  return false;
}

StatusSnapshot small() {
  StatusSnapshot s;
  ClusterSnapshot c;
  c.name = "c1";
  c.worker_pid = 1234;
  c.worker_restarts = 2;
  c.commands = 10;
  c.created = 3;
  c.broadcasts = 1;
  c.routed = 5;
  c.answered_locally = 1;
  c.cluster_errors = 4;
  c.parse_errors = 6;
  c.failovers = 7;
  c.tracked_calls = 3;
  c.tally.count(static_cast<size_t>(CommandType::kUpdate), "1234 127.0.0.1");
  c.tally.count(static_cast<size_t>(CommandType::kUpdate), "40000 127.0.0.1 && 0");
  c.tally.count(static_cast<size_t>(CommandType::kUpdate), "E72");
  c.tally.count(static_cast<size_t>(CommandType::kLookup), "0");
  c.tally.count(kTallyUnparsedRow, "E1");
  c.tally.count(static_cast<size_t>(CommandType::kDelete), "E999");
  c.tally.count(static_cast<size_t>(CommandType::kDelete), "E1234567");
  MemberSnapshot m;
  m.name = "r1";
  m.online = true;
  m.status = AdminStatus::kSuspended;
  m.weight = 100;
  m.capacity = 2500;
  m.active_sessions = 12.5;
  m.bound_sessions = 3;
  m.utilisation = 0.25;
  m.rtt_seconds = 0.0015;
  m.commands = 9;
  m.timeouts = 1;
  m.failovers = 2;
  m.rtt_histogram.observe(30);
  m.rtt_histogram.observe(30);
  m.rtt_histogram.observe(2000);     // <= 2.5 ms
  m.rtt_histogram.observe(12000000);  // over every bound (10 s): +Inf only
  c.members.push_back(m);
  MemberSnapshot unknown;
  unknown.name = "r2";
  c.members.push_back(unknown);
  s.clusters.push_back(c);
  return s;
}

TEST(MetricsRenderTest, SmallSnapshotHasTheExactSampleLines) {
  const std::string text = renderPrometheus(small());
  for (const char* expected : {
           "# HELP rtp_cluster_member_online 1 if the member answers its heartbeats.",
           "# TYPE rtp_cluster_member_online gauge",
           "rtp_cluster_member_online{cluster=\"c1\",member=\"r1\"} 1",
           "rtp_cluster_member_online{cluster=\"c1\",member=\"r2\"} 0",
           "rtp_cluster_member_admin_status{cluster=\"c1\",member=\"r1\",status=\"ACTIVE\"} 0",
           "rtp_cluster_member_admin_status{cluster=\"c1\",member=\"r1\",status=\"SUSPENDED\"} 1",
           "rtp_cluster_member_admin_status{cluster=\"c1\",member=\"r1\",status=\"DRAINING\"} 0",
           "rtp_cluster_member_admin_status{cluster=\"c1\",member=\"r2\",status=\"ACTIVE\"} 1",
           "rtp_cluster_member_active_sessions{cluster=\"c1\",member=\"r1\"} 12.5",
           "rtp_cluster_member_bound_sessions{cluster=\"c1\",member=\"r1\"} 3",
           "rtp_cluster_member_utilization_ratio{cluster=\"c1\",member=\"r1\"} 0.25",
           "rtp_cluster_member_rtt_seconds{cluster=\"c1\",member=\"r1\"} 0.0015",
           "# TYPE rtp_cluster_member_commands_total counter",
           "rtp_cluster_member_commands_total{cluster=\"c1\",member=\"r1\"} 9",
           "rtp_cluster_member_timeouts_total{cluster=\"c1\",member=\"r1\"} 1",
           "rtp_cluster_member_failovers_total{cluster=\"c1\",member=\"r1\"} 2",
           "rtp_cluster_member_weight{cluster=\"c1\",member=\"r1\"} 100",
           "rtp_cluster_member_capacity{cluster=\"c1\",member=\"r1\"} 2500",
           "rtp_cluster_worker_up{cluster=\"c1\"} 1",
           "rtp_cluster_worker_restarts_total{cluster=\"c1\"} 2",
           "rtp_cluster_commands_received_total{cluster=\"c1\"} 10",
           "rtp_cluster_commands_total{cluster=\"c1\",kind=\"created\"} 3",
           "rtp_cluster_commands_total{cluster=\"c1\",kind=\"broadcast\"} 1",
           "rtp_cluster_commands_total{cluster=\"c1\",kind=\"routed\"} 5",
           "rtp_cluster_commands_total{cluster=\"c1\",kind=\"local\"} 1",
           "rtp_cluster_errors_total{cluster=\"c1\",type=\"cluster\"} 4",
           "rtp_cluster_errors_total{cluster=\"c1\",type=\"parse\"} 6",
           "rtp_cluster_failovers_total{cluster=\"c1\"} 7",
           "rtp_cluster_tracked_calls{cluster=\"c1\"} 3",
       }) {
    EXPECT_TRUE(hasLine(text, expected)) << "missing: " << expected << "\nin:\n" << text;
  }
}

TEST(MetricsRenderTest, UnknownActiveSessionsIsLeftOutNotZero) {
  const std::string text = renderPrometheus(small());
  EXPECT_EQ(text.find("rtp_cluster_member_active_sessions{cluster=\"c1\",member=\"r2\"}"), std::string::npos);
}

TEST(MetricsRenderTest, EveryFamilyIsDeclaredOnceAndItsSamplesFollowIt) {
  StatusSnapshot s = small();
  s.clusters.push_back(s.clusters.front());
  s.clusters.back().name = "c2";
  std::set<std::string> declared;
  std::string current;
  size_t samples = 0;
  for (const std::string& line : lines(renderPrometheus(s))) {
    ASSERT_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream in(line.substr(7));
      std::string type;
      in >> current >> type;
      EXPECT_TRUE(type == "gauge" || type == "counter" || type == "histogram") << line;
      EXPECT_TRUE(declared.insert(current).second) << "declared twice: " << current;
      EXPECT_EQ(current.rfind("rtp_cluster_", 0), 0U) << current;
      continue;
    }
    std::string family = line.substr(0, line.find('{'));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string sfx = suffix;
      if (family.size() > sfx.size() && family.compare(family.size() - sfx.size(), sfx.size(), sfx) == 0 &&
          family.substr(0, family.size() - sfx.size()) == current) {
        family = current;
      }
    }
    EXPECT_EQ(family, current) << line;
    ++samples;
  }
  EXPECT_GT(samples, 40U);
}

TEST(MetricsRenderTest, AnswersAreCountedByCommandAndResult) {
  const std::string text = renderPrometheus(small());
  for (const char* line : {
           "rtp_cluster_answers_total{cluster=\"c1\",command=\"U\",result=\"ok\"} 2",
           "rtp_cluster_answers_total{cluster=\"c1\",command=\"U\",result=\"error\"} 1",
           "rtp_cluster_answers_total{cluster=\"c1\",command=\"L\",result=\"ok\"} 1",
           "rtp_cluster_answers_total{cluster=\"c1\",command=\"unparsed\",result=\"error\"} 1",
           "rtp_cluster_answers_total{cluster=\"c1\",command=\"VF\",result=\"ok\"} 0",
           "rtp_cluster_answers_total{cluster=\"c1\",command=\"D\",result=\"error\"} 2",
       }) {
    EXPECT_TRUE(hasLine(text, line)) << line << "\n" << text;
  }
}

TEST(MetricsRenderTest, ErrorAnswersByCodeShowSentCodesAndAlwaysTheClusterOnes) {
  const std::string text = renderPrometheus(small());
  for (const char* line : {
           "rtp_cluster_error_answers_total{cluster=\"c1\",code=\"E72\"} 1",
           "rtp_cluster_error_answers_total{cluster=\"c1\",code=\"E1\"} 1",
           "rtp_cluster_error_answers_total{cluster=\"c1\",code=\"E999\"} 1",
           "rtp_cluster_error_answers_total{cluster=\"c1\",code=\"E993\"} 0",
           "rtp_cluster_error_answers_total{cluster=\"c1\",code=\"E998\"} 0",
           "rtp_cluster_error_answers_total{cluster=\"c1\",code=\"other\"} 1",
       }) {
    EXPECT_TRUE(hasLine(text, line)) << line << "\n" << text;
  }
  // A relay code never sent has no series.
  EXPECT_EQ(text.find("code=\"E50\""), std::string::npos);
}

TEST(MetricsRenderTest, RttHistogramBucketsAreCumulativeWithSumAndCount) {
  const std::string text = renderPrometheus(small());
  const std::string l = "{cluster=\"c1\",member=\"r1\"";
  for (const std::string& line : {
           "rtp_cluster_member_command_rtt_seconds_bucket" + l + ",le=\"0.0001\"} 2",
           "rtp_cluster_member_command_rtt_seconds_bucket" + l + ",le=\"0.001\"} 2",
           "rtp_cluster_member_command_rtt_seconds_bucket" + l + ",le=\"0.0025\"} 3",
           "rtp_cluster_member_command_rtt_seconds_bucket" + l + ",le=\"1\"} 3",
           // Buckets reach the longest <command_timeout> (10 s).
           "rtp_cluster_member_command_rtt_seconds_bucket" + l + ",le=\"2.5\"} 3",
           "rtp_cluster_member_command_rtt_seconds_bucket" + l + ",le=\"10\"} 3",
           "rtp_cluster_member_command_rtt_seconds_bucket" + l + ",le=\"+Inf\"} 4",
           "rtp_cluster_member_command_rtt_seconds_sum" + l + "} 12.00206",
           "rtp_cluster_member_command_rtt_seconds_count" + l + "} 4",
           // A member without samples still has its (empty) histogram.
           std::string("rtp_cluster_member_command_rtt_seconds_count{cluster=\"c1\",member=\"r2\"} 0"),
       }) {
    EXPECT_TRUE(hasLine(text, line)) << line;
  }
}

TEST(MetricsRenderTest, RttOfAMemberNeverMeasuredIsAbsentNotZero) {
  StatusSnapshot s = small();
  MemberSnapshot& never = s.clusters[0].members[1];
  never.online = false;
  never.rtt_seconds = 0;
  never.rtt_histogram = RttHistogram{};
  const std::string text = renderPrometheus(s);
  EXPECT_EQ(text.find("rtp_cluster_member_rtt_seconds{cluster=\"c1\",member=\"" + never.name + "\"}"),
            std::string::npos)
      << text;
  EXPECT_TRUE(hasLine(text, "rtp_cluster_member_rtt_seconds{cluster=\"c1\",member=\"r1\"} 0.0015"));
  // Measured once, it stays (the last value) when the member goes offline.
  never.rtt_histogram.observe(300);
  never.rtt_seconds = 0.0003;
  EXPECT_TRUE(hasLine(renderPrometheus(s), "rtp_cluster_member_rtt_seconds{cluster=\"c1\",member=\"" + never.name +
                                               "\"} 0.0003"));
}

TEST(MetricsRenderTest, Utf8AndSpacedNamesAreLabelValuesAsTheyAre) {
  StatusSnapshot s = small();
  s.clusters[0].name = "Core 1 caf\xc3\xa9";
  s.clusters[0].members[0].name = "relay \"2\"\n\\x";
  EXPECT_TRUE(hasLine(renderPrometheus(s), "rtp_cluster_member_online{cluster=\"Core 1 caf\xc3\xa9\",member=\"relay "
                                           "\\\"2\\\"\\n\\\\x\"} 1"));
}

TEST(MetricsRenderTest, EmptySnapshotHasOnlyDeclarations) {
  for (const std::string& line : lines(renderPrometheus(StatusSnapshot{}))) {
    EXPECT_EQ(line.rfind("# ", 0), 0U) << line;
  }
}

TEST(MetricsRenderTest, LabelValuesAreEscaped) {
  struct Case {
    std::string raw;
    std::string escaped;
  };
  const Case cases[] = {
      {"plain", "plain"},
      {"a\"b", "a\\\"b"},
      {"a\\b", "a\\\\b"},
      {"a\nb", "a\\nb"},
      {"\\\"\n", "\\\\\\\"\\n"},
      {"", ""},
  };
  for (const Case& c : cases) EXPECT_EQ(escapeLabelValue(c.raw), c.escaped) << c.raw;

  StatusSnapshot s = small();
  s.clusters[0].name = "c\"1";
  s.clusters[0].members[0].name = "r\\1";
  EXPECT_TRUE(hasLine(renderPrometheus(s), "rtp_cluster_member_online{cluster=\"c\\\"1\",member=\"r\\\\1\"} 1"));
}

TEST(MetricsRenderTest, NonFiniteValuesUsePrometheusSpelling) {
  StatusSnapshot s = small();
  s.clusters[0].members[0].utilisation = std::numeric_limits<double>::quiet_NaN();
  s.clusters[0].members[0].rtt_seconds = std::numeric_limits<double>::infinity();
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(hasLine(text, "rtp_cluster_member_utilization_ratio{cluster=\"c1\",member=\"r1\"} NaN"));
  EXPECT_TRUE(hasLine(text, "rtp_cluster_member_rtt_seconds{cluster=\"c1\",member=\"r1\"} +Inf"));
}

}  // namespace
}  // namespace rtpc
