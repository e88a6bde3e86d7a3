// planReload: what a reload does to each cluster, from the two configs alone.

#include "supervisor/reload_plan.h"

#include <gtest/gtest.h>

#include "shared/config_loader.h"

namespace rtpc {
namespace {

std::string member(const std::string& name, const std::string& status = "ACTIVE", int weight = 100) {
  return "<rtpproxy><name>" + name + "</name><protocol>udp</protocol><address>127.0.0.1:4000</address><weight>" +
         std::to_string(weight) + "</weight><capacity>10</capacity><status>" + status + "</status></rtpproxy>";
}

std::string cluster(const std::string& name, const std::string& address, const std::string& members,
                    const std::string& extra = "") {
  return "<rtp_cluster><name>" + name + "</name><protocol>udp</protocol><address>" + address + "</address>" + extra +
         members + "</rtp_cluster>";
}

Config load(const std::string& clusters) {
  LoadResult r = loadConfigText("<rtp_cluster_config>" + clusters + "</rtp_cluster_config>", "test.xml");
  EXPECT_TRUE(r.ok()) << r.error;
  return r.ok() ? *r.config : Config{};
}

using Names = std::vector<std::string>;

TEST(ReloadPlan, SortsEveryClusterIntoExactlyOneAction) {
  const Config running = load(cluster("same", "127.0.0.1:1", member("m1")) +
                              cluster("gone", "127.0.0.1:2", member("m1")) +
                              cluster("members", "127.0.0.1:3", member("m1")) +
                              cluster("moved", "127.0.0.1:4", member("m1")) +
                              cluster("tuned", "127.0.0.1:5", member("m1")) +
                              cluster("limit", "127.0.0.1:6", member("m1")));
  const Config next = load(cluster("same", "127.0.0.1:1", member("m1")) +
                           cluster("members", "127.0.0.1:3", member("m1") + member("m2")) +
                           cluster("moved", "127.0.0.1:14", member("m1")) +
                           cluster("tuned", "127.0.0.1:5", member("m1"),
                                   "<tuning><session_table_size>2048</session_table_size></tuning>") +
                           cluster("limit", "127.0.0.1:6", member("m1"), "<capacity_limit type=\"hard\"/>") +
                           cluster("new", "127.0.0.1:7", member("m1")));
  const ReloadPlan plan = planReload(running, next);
  EXPECT_EQ(plan.added, Names{"new"});
  EXPECT_EQ(plan.removed, Names{"gone"});
  EXPECT_EQ(plan.restarted, (Names{"moved", "tuned", "limit"}));
  EXPECT_EQ(plan.members_changed, Names{"members"});
  EXPECT_EQ(plan.unchanged, Names{"same"});
}

TEST(ReloadPlan, AMemberChangeAloneIsPushedNotRestarted) {
  const Config running = load(cluster("c", "127.0.0.1:1", member("m1") + member("m2")));
  for (const std::string& members : {member("m1"), member("m1") + member("m2", "SUSPENDED"),
                                     member("m1") + member("m2", "ACTIVE", 5), member("m2") + member("m1")}) {
    const ReloadPlan plan = planReload(running, load(cluster("c", "127.0.0.1:1", members)));
    EXPECT_EQ(plan.members_changed, Names{"c"}) << members;
    EXPECT_TRUE(plan.restarted.empty());
  }
}

TEST(ReloadPlan, AnIdenticalFileChangesNothing) {
  const Config running = load(cluster("a", "127.0.0.1:1", member("m1")) + cluster("b", "127.0.0.1:2", member("m1")));
  const ReloadPlan plan = planReload(running, running);
  EXPECT_EQ(plan.unchanged, (Names{"a", "b"}));
  EXPECT_TRUE(plan.added.empty() && plan.removed.empty() && plan.restarted.empty() && plan.members_changed.empty());
}

}  // namespace
}  // namespace rtpc
