// libFuzzer target: any bytes through the config loader. It must never crash,
// and must return either a config that satisfies the loader's own limits or
// exactly one error line naming the file.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "shared/config_loader.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void checkConfig(const rtpc::Config& config) {
  check(config.source_path == "fuzz.xml");
  for (const rtpc::ClusterConfig& c : config.clusters) {
    check(!c.name.empty() && c.name.size() <= rtpc::kMaxNameBytes);
    check(!c.members.empty() && c.members.size() <= rtpc::kMaxMembersPerCluster);
    check(c.tuning.command_timeout_ms < c.tuning.heartbeat_interval_ms);
    check(rtpc::isUnixPath(c.control.transport) ? !c.control.path.empty() : c.control.port != 0);
    for (const rtpc::MemberConfig& m : c.members) {
      check(!m.name.empty() && m.name.size() <= rtpc::kMaxNameBytes);
      check(m.weight <= rtpc::kMaxWeight);
      check(m.capacity >= 1 && m.capacity <= rtpc::kMaxCapacity);
      check(m.status != rtpc::AdminStatus::kDraining);
      check(c.findMember(m.name) == &m);  // names unique in the cluster
    }
    check(config.findCluster(c.name) == &c);  // names unique overall
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const rtpc::LoadResult result = rtpc::loadConfigText(text, "fuzz.xml");
  if (result.ok()) {
    check(result.error.empty());
    checkConfig(*result.config);
  } else {
    check(result.error.rfind("fuzz.xml:", 0) == 0);
    check(result.error.find('\n') == std::string::npos);
    check(result.error.find('\r') == std::string::npos);
  }
  return 0;
}
