#include "shared/admin_render.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <optional>
#include <vector>

#include "shared/quote.h"
#include "shared/utf8.h"

namespace rtpc {
namespace {

const ClusterSnapshot* findCluster(const StatusSnapshot& snapshot, std::string_view name) {
  for (const ClusterSnapshot& c : snapshot.clusters) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string clusterNotFound(std::string_view name) {
  std::string answer = "ERROR: ";
  answer += nameForMessage(name);
  answer += ": cluster not found\n";
  return answer;
}

// printf's %f, as the reference formats its floats (6 decimals).
void appendFixed(std::string& out, double value) {
  char buf[64];
  const int n = std::snprintf(buf, sizeof(buf), "%f", value);
  if (n > 0) out.append(buf, std::min(static_cast<size_t>(n), sizeof(buf) - 1));
}

// The reference prints the session count with %d: the integer part.
std::optional<int64_t> wholeSessions(const std::optional<double>& sessions) {
  if (!sessions || !std::isfinite(*sessions)) return std::nullopt;
  if (*sessions <= 0) return 0;
  if (*sessions >= 9.0e15) return static_cast<int64_t>(9.0e15);
  return static_cast<int64_t>(*sessions);
}

struct MemberCounts {
  uint32_t online = 0;
  uint32_t active = 0;  // online and ACTIVE
  uint32_t suspended = 0;
  uint32_t draining = 0;
  uint32_t offline = 0;
};

MemberCounts countMembers(const ClusterSnapshot& cluster) {
  MemberCounts n;
  for (const MemberSnapshot& m : cluster.members) {
    if (!m.online) {
      ++n.offline;
      continue;
    }
    ++n.online;
    switch (m.status) {
      case AdminStatus::kActive:
        ++n.active;
        break;
      case AdminStatus::kSuspended:
        ++n.suspended;
        break;
      case AdminStatus::kDraining:
        ++n.draining;
        break;
    }
  }
  return n;
}

// The order of `ls <cluster>`: online members by name (byte order, as the
// reference sorts), then offline members in slot order.
std::vector<const MemberSnapshot*> displayOrder(const ClusterSnapshot& cluster) {
  std::vector<const MemberSnapshot*> order;
  order.reserve(cluster.members.size());
  for (const MemberSnapshot& m : cluster.members) {
    if (m.online) order.push_back(&m);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const MemberSnapshot* a, const MemberSnapshot* b) { return a->name < b->name; });
  for (const MemberSnapshot& m : cluster.members) {
    if (!m.online) order.push_back(&m);
  }
  return order;
}

void appendLine(std::string& out, std::string_view indent, std::string_view key, std::string_view value) {
  out += indent;
  out += key;
  out += " = ";
  out += value;
  out += '\n';
}

// Each item appended by `append(out, item)`, `separator` between two.
template <typename Items, typename Append>
void appendJoined(std::string& out, const Items& items, char separator, Append append) {
  bool first = true;
  for (const auto& item : items) {
    if (!first) out += separator;
    first = false;
    append(out, item);
  }
}

void appendMemberText(std::string& out, const MemberSnapshot& m, size_t position) {
  constexpr std::string_view kIn = "        ";
  out += "    RTPproxy: #";
  out += std::to_string(position);
  out += '\n';
  appendLine(out, kIn, "name", m.name);
  appendLine(out, kIn, "address", m.address.display());
  if (!m.wan_address.empty()) appendLine(out, kIn, "wan_address", m.wan_address);
  if (!m.lan_address.empty()) appendLine(out, kIn, "lan_address", m.lan_address);
  if (!m.cmd_out_address.empty()) appendLine(out, kIn, "cmd_out_address", m.cmd_out_address);
  appendLine(out, kIn, "weight", std::to_string(m.weight));
  appendLine(out, kIn, "capacity", std::to_string(m.capacity));
  if (!m.online) {
    appendLine(out, kIn, "state", "offline");
    return;
  }
  appendLine(out, kIn, "state", "online");
  const std::optional<int64_t> sessions = wholeSessions(m.active_sessions);
  appendLine(out, kIn, "active sessions", sessions ? std::to_string(*sessions) : "UNKNOWN");
  out += kIn;
  out += "capacity utilization = ";
  appendFixed(out, m.utilisation * 100.0);
  out += "%\n";
  out += kIn;
  out += "average rtpc delay = ";
  appendFixed(out, m.rtt_seconds);
  out += " sec\n";
  appendLine(out, kIn, "status", adminStatusName(m.status));
}

// --- JSON -----------------------------------------------------------------

class JsonObject {
 public:
  explicit JsonObject(std::string& out) : out_(out) { out_ += '{'; }
  ~JsonObject() { out_ += '}'; }
  JsonObject(const JsonObject&) = delete;
  JsonObject& operator=(const JsonObject&) = delete;

  std::string& key(std::string_view name) {
    if (!first_) out_ += ',';
    first_ = false;
    out_ += jsonString(name);
    out_ += ':';
    return out_;
  }
  void field(std::string_view name, std::string_view value) { key(name) += jsonString(value); }
  void field(std::string_view name, uint64_t value) { key(name) += std::to_string(value); }
  void field(std::string_view name, int64_t value) { key(name) += std::to_string(value); }
  void field(std::string_view name, bool value) { key(name) += value ? "true" : "false"; }
  void number(std::string_view name, double value) {
    std::string& out = key(name);
    if (std::isfinite(value)) {
      appendFixed(out, value);
    } else {
      out += "null";  // JSON has no NaN or infinity
    }
  }
  void optionalString(std::string_view name, const std::string& value) {
    if (value.empty()) {
      key(name) += "null";
    } else {
      field(name, std::string_view(value));
    }
  }

 private:
  std::string& out_;
  bool first_ = true;
};

void appendClusterFields(JsonObject& o, const ClusterSnapshot& c) {
  const MemberCounts n = countMembers(c);
  o.field("index", uint64_t{c.index});
  o.field("name", std::string_view(c.name));
  o.field("protocol", transportName(c.address.transport));
  o.field("address", std::string_view(c.address.display()));
  o.field("online_members", uint64_t{n.online});
  o.field("online_active", uint64_t{n.active});
  o.field("online_suspended", uint64_t{n.suspended});
  o.field("online_draining", uint64_t{n.draining});
  o.field("offline_members", uint64_t{n.offline});
  o.field("tracked_calls", uint64_t{c.tracked_calls});
  o.field("commands", c.commands);
  o.field("created", c.created);
  o.field("broadcasts", c.broadcasts);
  o.field("failovers", c.failovers);
  o.field("cluster_errors", c.cluster_errors);
  o.field("parse_errors", c.parse_errors);
}

void appendMemberJson(std::string& out, const MemberSnapshot& m) {
  JsonObject o(out);
  o.field("index", uint64_t{m.index});
  o.field("name", std::string_view(m.name));
  o.field("protocol", transportName(m.address.transport));
  o.field("address", std::string_view(m.address.display()));
  o.optionalString("wan_address", m.wan_address);
  o.optionalString("lan_address", m.lan_address);
  o.optionalString("cmd_out_address", m.cmd_out_address);
  o.field("weight", uint64_t{m.weight});
  o.field("capacity", uint64_t{m.capacity});
  o.field("state", std::string_view(m.online ? "online" : "offline"));
  o.field("status", adminStatusName(m.status));
  if (const std::optional<int64_t> sessions = wholeSessions(m.active_sessions)) {
    o.field("active_sessions", *sessions);
  } else {
    o.key("active_sessions") += "null";
  }
  o.field("bound_sessions", uint64_t{m.bound_sessions});
  o.number("capacity_utilization_percent", m.utilisation * 100.0);
  o.number("average_rtpc_delay_sec", m.rtt_seconds);
  o.field("capabilities", uint64_t{m.capabilities});
  o.field("stats_unsupported", m.stats_unsupported);
  o.field("commands", m.commands);
  o.field("timeouts", m.timeouts);
  o.field("failovers", m.failovers);
}

void appendOk(std::string& out) { out += "\nOK\n"; }

bool workerRunning(const ClusterSnapshot& c) { return c.worker_pid > 0; }

std::optional<uint64_t> uptimeMs(const StatusSnapshot& s, const ClusterSnapshot& c) {
  if (!workerRunning(c) || c.worker_started_unix_ms == 0 || s.taken_unix_ms < c.worker_started_unix_ms) {
    return std::nullopt;
  }
  return s.taken_unix_ms - c.worker_started_unix_ms;
}

}  // namespace

std::string jsonString(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      // UTF-8 goes as it is (JSON text is UTF-8); a byte that is not part of
      // a well-formed sequence becomes U+FFFD so that the answer stays valid.
      const size_t n = utf8SequenceLength(text, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(text.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
  return out;
}

std::string renderClusterList(const StatusSnapshot& snapshot) {
  std::string out;
  appendJoined(out, snapshot.clusters, '\n', [](std::string& out, const ClusterSnapshot& c) {
    const MemberCounts n = countMembers(c);
    out += "Cluster: #";
    out += std::to_string(c.index);
    out += '\n';
    appendLine(out, "    ", "name", c.name);
    appendLine(out, "    ", "address", c.address.display());
    out += "    online members = " + std::to_string(n.online) + " (" + std::to_string(n.active) + " active, " +
           std::to_string(n.suspended) + " suspended, " + std::to_string(n.draining) + " draining)\n";
    appendLine(out, "    ", "offline members", std::to_string(n.offline));
  });
  out += "OK\n";
  return out;
}

std::string renderClusterMembers(const StatusSnapshot& snapshot, std::string_view cluster_name) {
  const ClusterSnapshot* cluster = findCluster(snapshot, cluster_name);
  if (cluster == nullptr) return clusterNotFound(cluster_name);
  const std::string index = std::to_string(cluster->index);
  std::string out = "Online members of the cluster #" + index + ":\n";
  size_t position = 0;
  bool offline_started = false;
  for (const MemberSnapshot* m : displayOrder(*cluster)) {
    if (!m->online && !offline_started) {
      offline_started = true;
      position = 0;
      out += "\nOffline members of the cluster #" + index + ":\n";
    }
    if (position > 0) out += '\n';
    appendMemberText(out, *m, position++);
  }
  if (!offline_started) {
    // As the reference: an empty offline section still gets its blank line.
    out += "\nOffline members of the cluster #" + index + ":\n\n";
  }
  out += "OK\n";
  return out;
}

std::string renderWorkers(const StatusSnapshot& snapshot) {
  std::string out;
  appendJoined(out, snapshot.clusters, '\n', [&snapshot](std::string& out, const ClusterSnapshot& c) {
    out += "Worker: #";
    out += std::to_string(c.index);
    out += '\n';
    appendLine(out, "    ", "cluster", c.name);
    appendLine(out, "    ", "pid", workerRunning(c) ? std::to_string(c.worker_pid) : "none");
    appendLine(out, "    ", "restarts", std::to_string(c.worker_restarts));
    const std::optional<uint64_t> up = uptimeMs(snapshot, c);
    appendLine(out, "    ", "uptime", up ? std::to_string(*up / 1000) + " sec" : "UNKNOWN");
  });
  out += "OK\n";
  return out;
}

std::string renderClusterListJson(const StatusSnapshot& snapshot) {
  std::string out;
  {
    JsonObject root(out);
    root.field("taken_unix_ms", snapshot.taken_unix_ms);
    std::string& list = root.key("clusters");
    list += '[';
    appendJoined(list, snapshot.clusters, ',', [](std::string& out, const ClusterSnapshot& c) {
      JsonObject o(out);
      appendClusterFields(o, c);
    });
    list += ']';
  }
  appendOk(out);
  return out;
}

std::string renderClusterMembersJson(const StatusSnapshot& snapshot, std::string_view cluster_name) {
  const ClusterSnapshot* cluster = findCluster(snapshot, cluster_name);
  if (cluster == nullptr) return clusterNotFound(cluster_name);
  std::string out;
  {
    JsonObject root(out);
    root.field("taken_unix_ms", snapshot.taken_unix_ms);
    std::string& body = root.key("cluster");
    JsonObject o(body);
    appendClusterFields(o, *cluster);
    std::string& list = o.key("members");
    list += '[';
    appendJoined(list, displayOrder(*cluster), ',',
                 [](std::string& out, const MemberSnapshot* m) { appendMemberJson(out, *m); });
    list += ']';
  }
  appendOk(out);
  return out;
}

std::string renderWorkersJson(const StatusSnapshot& snapshot) {
  std::string out;
  {
    JsonObject root(out);
    root.field("taken_unix_ms", snapshot.taken_unix_ms);
    std::string& list = root.key("workers");
    list += '[';
    appendJoined(list, snapshot.clusters, ',', [&snapshot](std::string& out, const ClusterSnapshot& c) {
      JsonObject o(out);
      o.field("index", uint64_t{c.index});
      o.field("cluster", std::string_view(c.name));
      if (workerRunning(c)) {
        o.field("pid", int64_t{c.worker_pid});
      } else {
        o.key("pid") += "null";
      }
      o.field("restarts", uint64_t{c.worker_restarts});
      if (c.worker_started_unix_ms != 0) {
        o.field("started_unix_ms", c.worker_started_unix_ms);
      } else {
        o.key("started_unix_ms") += "null";
      }
      if (const std::optional<uint64_t> up = uptimeMs(snapshot, c)) {
        o.field("uptime_sec", *up / 1000);
      } else {
        o.key("uptime_sec") += "null";
      }
    });
    list += ']';
  }
  appendOk(out);
  return out;
}

}  // namespace rtpc
