#include "shared/metrics_render.h"

#include <fmt/format.h>

#include <cmath>
#include <iterator>
#include <optional>
#include <type_traits>
#include <utility>

namespace rtpc {
namespace {

using Out = std::back_insert_iterator<std::string>;

void family(Out out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(out, "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void appendEscaped(std::string& out, std::string_view value) {
  for (char ch : value) {
    switch (ch) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += ch;
    }
  }
}

// Go's ParseFloat spelling for the non-finite values; fmt's shortest
// round-trip form otherwise.
void appendDouble(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);
  }
}

void clusterLabels(std::string& out, const ClusterSnapshot& c) {
  out += "{cluster=\"";
  appendEscaped(out, c.name);
  out += '"';
}

void memberLabels(std::string& out, const ClusterSnapshot& c, const MemberSnapshot& m) {
  clusterLabels(out, c);
  out += ",member=\"";
  appendEscaped(out, m.name);
  out += '"';
}

template <typename Value>
void sampleEnd(std::string& out, Value v) {
  out += "} ";
  if constexpr (std::is_floating_point_v<Value>) {
    appendDouble(out, v);
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);
  }
  out += '\n';
}

template <typename Get>
void clusterFamily(std::string& out, const StatusSnapshot& s, std::string_view name, std::string_view type,
                   std::string_view help, Get get) {
  family(std::back_inserter(out), name, type, help);
  for (const ClusterSnapshot& c : s.clusters) {
    out += name;
    clusterLabels(out, c);
    sampleEnd(out, get(c));
  }
}

// `get` returns an optional-like value: members without one are left out.
template <typename Get>
void memberFamily(std::string& out, const StatusSnapshot& s, std::string_view name, std::string_view type,
                  std::string_view help, Get get) {
  family(std::back_inserter(out), name, type, help);
  for (const ClusterSnapshot& c : s.clusters) {
    for (const MemberSnapshot& m : c.members) {
      const auto v = get(m);
      if (!v) continue;
      out += name;
      memberLabels(out, c, m);
      sampleEnd(out, *v);
    }
  }
}

template <typename T>
std::optional<T> some(T v) {
  return v;
}

bool rttMeasured(const MemberSnapshot& m) { return m.rtt_histogram.total() > 0 || m.rtt_seconds > 0; }

}  // namespace

std::string escapeLabelValue(std::string_view value) {
  std::string out;
  appendEscaped(out, value);
  return out;
}

std::string renderPrometheus(const StatusSnapshot& s) {
  std::string out;
  out.reserve(1024 + s.clusters.size() * 2048);

  clusterFamily(out, s, "rtp_cluster_worker_up", "gauge", "1 if the cluster's worker process is running.",
                [](const ClusterSnapshot& c) { return c.worker_pid > 0 ? 1 : 0; });
  clusterFamily(out, s, "rtp_cluster_worker_restarts_total", "counter",
                "Times the supervisor restarted the cluster's worker.",
                [](const ClusterSnapshot& c) { return c.worker_restarts; });
  clusterFamily(out, s, "rtp_cluster_snapshot_consistent", "gauge",
                "0 if the worker's shared-memory record was caught mid-write (writer killed).",
                [](const ClusterSnapshot& c) { return c.consistent ? 1 : 0; });
  clusterFamily(out, s, "rtp_cluster_commands_received_total", "counter",
                "Control commands received from the signalling.",
                [](const ClusterSnapshot& c) { return c.commands; });

  // One family with a kind label: these are disjoint ways a command was handled.
  family(std::back_inserter(out), "rtp_cluster_commands_total", "counter",
         "Control commands by how the cluster handled them.");
  for (const ClusterSnapshot& c : s.clusters) {
    const std::pair<std::string_view, uint64_t> kinds[] = {
        {"created", c.created}, {"broadcast", c.broadcasts}, {"routed", c.routed}, {"local", c.answered_locally}};
    for (const auto& [kind, value] : kinds) {
      out += "rtp_cluster_commands_total";
      clusterLabels(out, c);
      fmt::format_to(std::back_inserter(out), ",kind=\"{}\"", kind);
      sampleEnd(out, value);
    }
  }
  family(std::back_inserter(out), "rtp_cluster_errors_total", "counter",
         "Commands answered with an error: by the cluster itself, or unparseable.");
  for (const ClusterSnapshot& c : s.clusters) {
    const std::pair<std::string_view, uint64_t> kinds[] = {{"cluster", c.cluster_errors}, {"parse", c.parse_errors}};
    for (const auto& [kind, value] : kinds) {
      out += "rtp_cluster_errors_total";
      clusterLabels(out, c);
      fmt::format_to(std::back_inserter(out), ",type=\"{}\"", kind);
      sampleEnd(out, value);
    }
  }
  family(std::back_inserter(out), "rtp_cluster_answers_total", "counter",
         "Answers sent to the signalling, by command (\"unparsed\": not a valid command) and result "
         "(\"error\": an E<n> answer).");
  for (const ClusterSnapshot& c : s.clusters) {
    for (size_t row = 0; row < kTallyRows; ++row) {
      for (size_t res = 0; res < kCommandResultCount; ++res) {
        out += "rtp_cluster_answers_total";
        clusterLabels(out, c);
        fmt::format_to(std::back_inserter(out), ",command=\"{}\",result=\"{}\"", tallyRowName(row),
                       commandResultName(static_cast<CommandResult>(res)));
        sampleEnd(out, c.tally.by_type[row][res]);
      }
    }
  }
  // The cluster's own codes always (alerts want a series that exists at 0);
  // rtpproxy's codes once they were sent.
  family(std::back_inserter(out), "rtp_cluster_error_answers_total", "counter",
         "Error answers sent to the signalling, by code (the cluster's own E993..E999, or a member's).");
  for (const ClusterSnapshot& c : s.clusters) {
    for (size_t slot = 0; slot < kErrorSlots; ++slot) {
      const uint64_t n = c.tally.by_error[slot];
      const int code = errorCodeOfSlot(slot);
      if (n == 0 && code < kFirstClusterErrorCode) continue;
      out += "rtp_cluster_error_answers_total";
      clusterLabels(out, c);
      if (code < 0) {
        out += ",code=\"other\"";
      } else {
        fmt::format_to(std::back_inserter(out), ",code=\"E{}\"", code);
      }
      sampleEnd(out, n);
    }
  }
  clusterFamily(out, s, "rtp_cluster_failovers_total", "counter",
                "New sessions retried on another member after one failed.",
                [](const ClusterSnapshot& c) { return c.failovers; });
  clusterFamily(out, s, "rtp_cluster_late_offers_total", "counter",
                "Updates with an unknown to-tag that were turned into a new session.",
                [](const ClusterSnapshot& c) { return c.late_offers; });
  clusterFamily(out, s, "rtp_cluster_tracked_calls", "gauge", "Calls in the cluster's session table.",
                [](const ClusterSnapshot& c) { return c.tracked_calls; });
  clusterFamily(out, s, "rtp_cluster_deleted_calls", "gauge", "Recently deleted calls that are still routable.",
                [](const ClusterSnapshot& c) { return c.deleted_calls; });

  memberFamily(out, s, "rtp_cluster_member_online", "gauge", "1 if the member answers its heartbeats.",
               [](const MemberSnapshot& m) { return some(m.online ? 1 : 0); });
  family(std::back_inserter(out), "rtp_cluster_member_admin_status", "gauge",
         "The member's administrative status: 1 for the current one.");
  for (const ClusterSnapshot& c : s.clusters) {
    for (const MemberSnapshot& m : c.members) {
      for (AdminStatus st : {AdminStatus::kActive, AdminStatus::kSuspended, AdminStatus::kDraining}) {
        out += "rtp_cluster_member_admin_status";
        memberLabels(out, c, m);
        fmt::format_to(std::back_inserter(out), ",status=\"{}\"", adminStatusName(st));
        sampleEnd(out, m.status == st ? 1 : 0);
      }
    }
  }
  memberFamily(out, s, "rtp_cluster_member_weight", "gauge", "Configured weight (0 = backup member).",
               [](const MemberSnapshot& m) { return some(m.weight); });
  memberFamily(out, s, "rtp_cluster_member_capacity", "gauge", "Configured capacity in sessions.",
               [](const MemberSnapshot& m) { return some(m.capacity); });
  memberFamily(out, s, "rtp_cluster_member_active_sessions", "gauge",
               "Sessions the member reports (smoothed); absent while unknown.",
               [](const MemberSnapshot& m) { return m.active_sessions; });
  memberFamily(out, s, "rtp_cluster_member_bound_sessions", "gauge", "Calls the cluster routes to the member.",
               [](const MemberSnapshot& m) { return some(m.bound_sessions); });
  memberFamily(out, s, "rtp_cluster_member_utilization_ratio", "gauge", "Load relative to capacity (0..1).",
               [](const MemberSnapshot& m) { return some(m.utilisation); });
  // Absent until a round trip was measured: 0 s for a member never online
  // would read as a perfect relay.
  memberFamily(out, s, "rtp_cluster_member_rtt_seconds", "gauge",
               "Average command round-trip time; absent until one was measured.", [](const MemberSnapshot& m) {
                 return rttMeasured(m) ? std::optional<double>(m.rtt_seconds) : std::nullopt;
               });
  family(std::back_inserter(out), "rtp_cluster_member_command_rtt_seconds", "histogram",
         "Round-trip time of commands answered without a retransmission (heartbeats included).");
  for (const ClusterSnapshot& c : s.clusters) {
    for (const MemberSnapshot& m : c.members) {
      const RttHistogram& h = m.rtt_histogram;
      uint64_t cumulative = 0;
      for (size_t i = 0; i < RttHistogram::kBuckets; ++i) {
        cumulative += h.counts[i];
        out += "rtp_cluster_member_command_rtt_seconds_bucket";
        memberLabels(out, c, m);
        if (i < RttHistogram::kBoundsUs.size()) {
          fmt::format_to(std::back_inserter(out), ",le=\"{}\"", RttHistogram::kBoundsUs[i] / 1e6);
        } else {
          out += ",le=\"+Inf\"";
        }
        sampleEnd(out, cumulative);
      }
      out += "rtp_cluster_member_command_rtt_seconds_sum";
      memberLabels(out, c, m);
      sampleEnd(out, static_cast<double>(h.sum_us) / 1e6);
      out += "rtp_cluster_member_command_rtt_seconds_count";
      memberLabels(out, c, m);
      sampleEnd(out, cumulative);
    }
  }
  memberFamily(out, s, "rtp_cluster_member_commands_total", "counter", "Commands sent to the member.",
               [](const MemberSnapshot& m) { return some(m.commands); });
  memberFamily(out, s, "rtp_cluster_member_timeouts_total", "counter",
               "Commands the member did not answer in time.",
               [](const MemberSnapshot& m) { return some(m.timeouts); });
  memberFamily(out, s, "rtp_cluster_member_failovers_total", "counter",
               "New sessions moved away from the member after it failed.",
               [](const MemberSnapshot& m) { return some(m.failovers); });
  memberFamily(out, s, "rtp_cluster_member_deferred_deletes_total", "counter",
               "Deletes queued for the member while it was offline.",
               [](const MemberSnapshot& m) { return some(m.deferred_deletes); });
  return out;
}

}  // namespace rtpc
