#include "worker/cluster_worker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>

#include "shared/log_quote.h"
#include "shared/self_loop.h"
#include "shared/time_util.h"
#include "shared/url_quote.h"

namespace rtpc {

namespace {

constexpr uint64_t kProbeTokenBit = 1ull << 63;
constexpr std::string_view kVersionReply = "20040107";
// A create is retried on another member only while this much of the
// client's deadline is left; each attempt gets at most half of the deadline
// so that one slow member still leaves room for a second one.
constexpr uint64_t kMinRetryBudgetMs = 40;
// D commands held for an offline member, and for how long.
constexpr size_t kMaxDeferredDeletes = 10000;
// Heartbeats in a row a DRAINING member must report no sessions before the
// calls still bound to it are taken as stale (see checkDrained).
constexpr uint32_t kIdleHeartbeatsToDrain = 3;
constexpr uint64_t kDeferredDeleteTtlMs = 60000;
// Commands held while the members of a just-started worker are probed.
constexpr size_t kMaxHeldCommands = 4096;

// VF dates of rtpproxy 3.2 (PROTOCOL.md 2.1), used to answer VF when no
// member is online yet: Kamailio probes VF right at its start and disables
// a node that says no for 60 s.
constexpr uint32_t kKnownFeatureDates[] = {
    20040107, 20050322, 20060704, 20071116, 20071218, 20080403, 20081102, 20090810,
    20140323, 20140617, 20141004, 20150330, 20150420, 20150617, 20191015, 20200226,
    20230205, 20230314, 20230424, 20250523, 20251015, 20260306, 20260308, 20260309};

bool parseDate(std::string_view text, uint32_t& out) {
  if (text.empty() || text.size() > 9) return false;
  uint32_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  out = v;
  return true;
}

bool isLoopbackHost(std::string_view host) {
  return host == "localhost" || host == "::1" || host.substr(0, 4) == "127.";
}

bool isLocalMember(const MemberConfig& m) {
  return isUnixPath(m.address.transport) || isLoopbackHost(m.address.host);
}

bool isRefusal(const RtppReply& reply) {
  return reply.kind == ReplyKind::kError &&
         (reply.error_code == ecode::kOverload || reply.error_code == ecode::kShuttingDown ||
          reply.error_code == ecode::kNoPorts);
}

// The same clock as steady_clock (CLOCK_MONOTONIC), without the conversions.
uint64_t steadyMs() { return monotonicNs() / 1'000'000; }

}  // namespace

// ---------------------------------------------------------------------------
// Member: one relay of the cluster.

struct ClusterWorker::Member final : MemberLinkClient {
  ClusterWorker* worker = nullptr;
  uint16_t index = 0;
  MemberConfig config;
  AdminStatus status = AdminStatus::kActive;
  MemberHealth health;
  std::unique_ptr<MemberLink> link;
  std::unique_ptr<MemberNameWatch> name_watch;    // a member given by host name
  std::unique_ptr<MemberNameWatch> source_watch;  // a cmd_out_address given by host name
  std::optional<ResolvedAddress> resolved_target;
  std::optional<ResolvedAddress> resolved_source;
  event* health_timer = nullptr;
  bool local = false;
  bool removed = false;
  // D commands that arrived while the member was offline (answered 0 at once).
  struct DeferredDelete {
    std::string command;
    uint64_t queued_ms;
  };
  std::deque<DeferredDelete> deferred_deletes;
  // Last good G answer, by the exact G command it answered (reference: a
  // member that misses a G contributes its cached values).
  std::string stats_cache_key;
  StatsValues stats_cache;
  bool stats_cache_valid = false;
  uint64_t commands = 0;
  uint64_t timeouts = 0;
  uint64_t failovers = 0;
  uint64_t deferred_total = 0;
  uint64_t deferred_dropped = 0;  // D lost because the queue was full
  // Heartbeats in a row that found this DRAINING member idle (no sessions)
  // while the cluster still had calls bound to it: those calls' D never came.
  uint32_t idle_heartbeats = 0;

  explicit Member(const HealthPolicy& policy) : health(policy) {}
  ~Member() override {
    if (health_timer != nullptr) event_free(health_timer);
  }
  void onMemberReply(uint64_t token, LinkOutcome outcome, std::string_view body) override {
    worker->onMemberReply(*this, token, outcome, body);
  }
  bool online() const { return health.online(); }
  uint32_t bound() const { return worker->table_->boundCount(index); }
};

// ---------------------------------------------------------------------------
// Job: one client command in flight.

enum JobKind : uint8_t {
  kJobForward,          // to the call's bound member
  kJobCreate,           // new session on a selected member, retried elsewhere on refusal
  kJobLookupForUpdate,  // U with an unknown to-tag: broadcast L first
  kJobBroadcast,        // command for an unknown call: every online member
  kJobStats,            // G: every online member, summed
  kJobDeleteAll,        // X: every online member
  kJobFeature,          // VF of a date we do not probe: every online member, AND
};

// How a U/L found its member; only the debug log of negative answers reads it.
enum JobRoute : uint8_t { kRouteBound, kRouteCreate, kRouteLateOffer, kRouteLookupForUpdate, kRouteBroadcast };

namespace {
const char* routeName(uint8_t route) {
  switch (route) {
    case kRouteBound: return "bound";
    case kRouteCreate: return "create";
    case kRouteLateOffer: return "late_offer";
    case kRouteLookupForUpdate: return "lookup_for_update";
    case kRouteBroadcast: return "broadcast";
    default: return "?";
  }
}
}  // namespace

struct ClusterWorker::Job {
  uint32_t slot = 0;
  uint32_t generation = 0;
  bool in_use = false;
  ControlRequest* request = nullptr;
  uint8_t kind = kJobForward;
  uint8_t route = kRouteBound;
  uint16_t member = 0;
  MemberMask tried;
  uint64_t started_ms = 0;
  uint64_t deadline_ms = 0;
  // Broadcast bookkeeping.
  uint16_t outstanding = 0;
  uint16_t positives = 0;
  uint16_t positive_member = 0;
  uint16_t answered = 0;
  bool any_timeout = false;
  bool all_ok = true;
  int last_refusal = 0;
  std::string kept_reply;  // the positive (or first error) reply of a broadcast
  StatsValues stats;
  bool stats_started = false;
  uint16_t stats_missing = 0;
  uint16_t stats_members = 0;
  uint16_t stats_live = 0;  // members that answered this G themselves
  int stats_error = 0;

  uint64_t token(uint16_t member_index) const {
    (void)member_index;
    return (static_cast<uint64_t>(generation) << 32) | slot;
  }
};

// ---------------------------------------------------------------------------

ClusterWorker::ClusterWorker(event_base* base, Options options)
    : base_(base), options_(std::move(options)), config_(options_.config) {
  uint64_t seed = options_.random_seed;
  if (seed == 0) seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  rng_.seed(seed);
}

ClusterWorker::~ClusterWorker() {
  // Links may call back into jobs while they are torn down: cancel first.
  for (auto& m : members_) {
    if (m && m->link) m->link->cancelAll();
  }
  members_.clear();
  graveyard_.clear();
  if (reaper_ != nullptr) event_free(reaper_);
  if (housekeeping_ != nullptr) event_free(housekeeping_);
  if (stall_tick_ != nullptr) event_free(stall_tick_);
  if (release_held_ != nullptr) event_free(release_held_);
}

std::unique_ptr<ClusterWorker> ClusterWorker::create(event_base* base, Options options,
                                                     std::string& error) {
  std::unique_ptr<ClusterWorker> w(new ClusterWorker(base, std::move(options)));
  if (!w->init(error)) return nullptr;
  return w;
}

bool ClusterWorker::init(std::string& error) {
  const uint32_t max_calls = std::max<uint32_t>(config_.tuning.session_table_size, 16);
  bool table_attached = false;
  if (options_.session_memory != nullptr) {
    table_ = SessionTable::attach(options_.session_memory, options_.session_bytes);
    table_attached = table_ != nullptr;
    if (table_ == nullptr)
      table_ = SessionTable::create(options_.session_memory, options_.session_bytes, max_calls,
                                    rng_());
  } else {
    size_t bytes = SessionTable::bytesFor(max_calls);
    auto* mem = static_cast<uint8_t*>(
        ::operator new[](bytes, std::align_val_t(SessionTable::kRequiredAlignment)));
    own_table_memory_ = {mem, [](uint8_t* p) {
                           ::operator delete[](p, std::align_val_t(SessionTable::kRequiredAlignment));
                         }};
    table_ = SessionTable::create(mem, bytes, max_calls, rng_());
  }
  if (table_ == nullptr) {
    error = "cannot set up the session table";
    return false;
  }

  ControlListenerOptions listener_options;
  listener_options.idle_timeout_ms = config_.tuning.control_idle_timeout_ms;
  if (options_.inherited_fd >= 0) {
    listener_ = ControlListener::adopt(base_, config_.control, options_.inherited_fd, this, error, listener_options);
  } else {
    listener_ = ControlListener::bind(base_, config_.control, this, error, listener_options);
  }
  if (!listener_) return false;

  reaper_ = event_new(
      base_, -1, 0,
      [](evutil_socket_t, short, void* arg) {
        auto* self = static_cast<ClusterWorker*>(arg);
        self->graveyard_.clear();
        self->dead_links_.clear();
      },
      this);

  if (config_.disconnect_notify) {
    std::string notify_error;
    notify_relay_ = NotifyRelay::create(base_, *config_.disconnect_notify, notify_error);
    if (!notify_relay_) {
      error = "disconnect_notify inbound " + config_.disconnect_notify->inbound_address.uri() + ": " +
              notify_error;
      return false;
    }
    notify_socket_ = "tcp:%%CC_SELF%%:" + std::to_string(notify_relay_->boundPort());
  }

  keep_attached_calls_ = table_attached;
  // Members the previous worker had go back to their indexes first, then the
  // others fill the free indexes, so no member takes another one's calls.
  std::vector<bool> placed(config_.members.size(), false);
  if (table_attached) {
    for (size_t i = 0; i < config_.members.size(); ++i) {
      for (const auto& [name, index] : options_.previous_slots) {
        if (name != config_.members[i].name || index >= kMaxMembersPerCluster) continue;
        if (index < members_.size() && members_[index] != nullptr) break;
        OpResult r = addMemberInternal(config_.members[i], index);
        if (!r.ok) {
          error = r.message;
          return false;
        }
        placed[i] = true;
        break;
      }
    }
  }
  for (size_t i = 0; i < config_.members.size(); ++i) {
    if (placed[i]) continue;
    OpResult r = addMemberInternal(config_.members[i]);
    if (!r.ok) {
      error = r.message;
      return false;
    }
  }
  keep_attached_calls_ = false;
  updateNotifyPeers();

  // Commands held while the first probes run: at most half the command
  // timeout, so that the client still gets its answer in time.
  startup_hold_until_ms_ = nowMs() + std::min<uint64_t>(500, config_.tuning.command_timeout_ms / 2);
  release_held_ = event_new(
      base_, -1, 0, [](evutil_socket_t, short, void* arg) { static_cast<ClusterWorker*>(arg)->releaseHeld(); },
      this);

  housekeeping_ = event_new(
      base_, -1, EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { static_cast<ClusterWorker*>(arg)->onHousekeeping(); }, this);
  const timeval every{0, 250000};
  event_add(housekeeping_, &every);
  stall_.setGrace(std::max<uint64_t>(config_.tuning.command_timeout_ms, 1));
  stall_.observe(nowMs());
  stall_tick_ = event_new(
      base_, -1, EV_PERSIST,
      [](evutil_socket_t, short, void* arg) {
        auto* self = static_cast<ClusterWorker*>(arg);
        self->checkStall(self->nowMs());
      },
      this);
  const timeval tick = msToTimeval(LoopStall::kTickMs);
  event_add(stall_tick_, &tick);
  spdlog::info("WORKER_START cluster={} address={} members={}", logName(config_.name),
               config_.control.uri(), config_.members.size());
  return true;
}

uint64_t ClusterWorker::nowMs() const { return steadyMs(); }

// Every 250 ms: frees expired deleted calls a bounded number of slots at a
// time (so one pass never stalls the loop), and gives up deferred deletes of
// members that stay offline.
void ClusterWorker::onHousekeeping() {
  const uint64_t now = nowMs();
  table_->sweepExpired(now, 65536);
  for (auto& m : members_) {
    if (!m || m->removed) continue;
    while (!m->deferred_deletes.empty() && now - m->deferred_deletes.front().queued_ms > kDeferredDeleteTtlMs) {
      m->deferred_deletes.pop_front();
      spdlog::warn("DEFERRED_DELETE_EXPIRED cluster={} member={}", logName(config_.name), logName(m->config.name));
    }
    // Deletes deferred after a timeout while the member stayed online.
    if (m->online() && !m->deferred_deletes.empty()) flushDeferredDeletes(*m);
  }
}

// Notifications are accepted from the members' hosts only.
void ClusterWorker::updateNotifyPeers() {
  if (!notify_relay_) return;
  std::vector<std::string> hosts;
  std::vector<ResolvedAddress> resolved;  // host names, as their watches resolved them
  for (const auto& m : members_) {
    if (!m || m->removed || m->config.address.host.empty()) continue;
    if (!m->name_watch) {
      hosts.push_back(m->config.address.host);
    } else if (m->name_watch->address()) {
      resolved.push_back(*m->name_watch->address());
    }
  }
  std::string error;
  if (!notify_relay_->setAllowedPeers(hosts, &error, resolved))
    spdlog::warn("NOTIFY_PEERS_UNRESOLVED cluster={} error={}", logName(config_.name), logQuoted(error));
}

double ClusterWorker::random01() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

// ---------------------------------------------------------------------------
// Members and operations.

ClusterWorker::Member* ClusterWorker::findMember(std::string_view name) const {
  for (const auto& m : members_) {
    if (m && !m->removed && m->config.name == name) return m.get();
  }
  return nullptr;
}

ClusterWorker::Member* ClusterWorker::memberAt(uint16_t index) const {
  if (index >= members_.size()) return nullptr;
  Member* m = members_[index].get();
  return (m != nullptr && !m->removed) ? m : nullptr;
}

bool ClusterWorker::anyOnline() const {
  for (const auto& m : members_) {
    if (m && !m->removed && m->online()) return true;
  }
  return false;
}

OpResult ClusterWorker::addMemberInternal(const MemberConfig& cfg, int preferred_index) {
  if (findMember(cfg.name) != nullptr) return {false, cfg.name + ": RTPproxy already exists"};
  if (auto loop = selfLoopError(config_.control, cfg.name, cfg.address)) return {false, std::move(*loop)};
  size_t index = 0;
  if (preferred_index >= 0) {
    index = static_cast<size_t>(preferred_index);
  } else {
    // The lowest free index, skipping those a previous worker's member still
    // owns in the attached table.
    auto taken = [&](size_t i) {
      if (i < members_.size() && members_[i] != nullptr) return true;
      if (!keep_attached_calls_) return false;
      for (const auto& slot : options_.previous_slots) {
        if (slot.second == i) return true;
      }
      return false;
    };
    while (index < kMaxMembersPerCluster && taken(index)) ++index;
  }
  if (index >= kMaxMembersPerCluster) return {false, cfg.name + ": too many members in the cluster"};
  if (index >= members_.size()) members_.resize(index + 1);

  auto m = std::make_unique<Member>(healthPolicyFrom(config_.tuning));
  m->worker = this;
  m->index = static_cast<uint16_t>(index);
  m->config = cfg;
  m->status = cfg.status;
  m->local = isLocalMember(cfg);
  MemberLinkOptions lo;
  lo.address = cfg.address;
  lo.cmd_out_address = cfg.cmd_out_address;
  lo.max_retransmits = config_.tuning.command_retries;
  lo.stall = &stall_;
  m->link = MemberLink::create(base_, lo, m.get());
  if (!m->link) return {false, cfg.name + ": cannot create the control link"};
  m->health_timer = event_new(
      base_, -1, 0,
      [](evutil_socket_t, short, void* arg) {
        auto* member = static_cast<Member*>(arg);
        member->worker->onHealthTimer(*member);
      },
      m.get());
  Member& ref = *m;
  members_[index] = std::move(m);
  // A fresh member must not inherit calls of a member that had this index;
  // but a restarted worker's initial members are the ones its predecessor
  // published, and their calls in the attached table must survive.
  if (!keep_attached_calls_) table_->forgetMember(ref.index);
  startMember(ref);
  spdlog::info("MEMBER_ADDED cluster={} member={} address={} weight={} capacity={} status={}",
               logName(config_.name), logName(cfg.name), cfg.address.uri(), cfg.weight, cfg.capacity,
               adminStatusName(cfg.status));
  return {};
}

OpResult ClusterWorker::addMember(const MemberConfig& member) {
  OpResult r = addMemberInternal(member);
  if (r.ok) {
    config_.members.push_back(member);
    updateNotifyPeers();
  }
  return r;
}

OpResult ClusterWorker::deleteMember(std::string_view name) {
  Member* m = findMember(name);
  if (m == nullptr) return {false, std::string(name) + ": RTPproxy not found"};
  if (m->status != AdminStatus::kDraining) {
    m->status = AdminStatus::kDraining;
    spdlog::info("MEMBER_DRAINING cluster={} member={} bound={}", logName(config_.name), logName(name), m->bound());
  }
  std::erase_if(config_.members, [&](const MemberConfig& c) { return c.name == name; });
  checkDrained(*m);
  return {};
}

OpResult ClusterWorker::pauseMember(std::string_view name) {
  Member* m = findMember(name);
  if (m == nullptr) return {false, std::string(name) + ": RTPproxy not found"};
  if (m->status != AdminStatus::kSuspended) {
    spdlog::info("MEMBER_SUSPENDED cluster={} member={} was={}", logName(config_.name), logName(name),
                 adminStatusName(m->status));
    m->status = AdminStatus::kSuspended;
  }
  return {};
}

OpResult ClusterWorker::resumeMember(std::string_view name) {
  Member* m = findMember(name);
  if (m == nullptr) return {false, std::string(name) + ": RTPproxy not found"};
  if (m->status != AdminStatus::kActive) {
    spdlog::info("MEMBER_RESUMED cluster={} member={} was={}", logName(config_.name), logName(name),
                 adminStatusName(m->status));
    m->status = AdminStatus::kActive;
  }
  return {};
}

OpResult ClusterWorker::applyConfig(const ClusterConfig& config) {
  // Members gone from the new config drain; changed ones are replaced only
  // when their address changes (a new link), otherwise updated in place.
  std::vector<std::string> gone;
  for (const auto& m : members_) {
    if (m && !m->removed && config.findMember(m->config.name) == nullptr)
      gone.push_back(m->config.name);
  }
  for (const auto& name : gone) deleteMember(name);
  for (const MemberConfig& mc : config.members) {
    Member* m = findMember(mc.name);
    if (m == nullptr) {
      OpResult r = addMemberInternal(mc);
      if (!r.ok) return r;
      continue;
    }
    if (m->config == mc) {
      if (m->status == AdminStatus::kDraining) {
        m->status = mc.status;
        spdlog::info("MEMBER_UNDRAINED cluster={} member={} status={}", config.name, mc.name, adminStatusName(m->status));
      }
      continue;
    }
    bool relink = !(m->config.address == mc.address) || m->config.cmd_out_address != mc.cmd_out_address;
    if (relink) {
      // Keep its calls: the same index, a new link and a fresh health cycle.
      m->link->cancelAll();
      MemberLinkOptions lo;
      lo.address = mc.address;
      lo.cmd_out_address = mc.cmd_out_address;
      lo.max_retransmits = config.tuning.command_retries;
      lo.stall = &stall_;
      dead_links_.push_back(std::move(m->link));
      event_active(reaper_, 0, 0);
      m->link = MemberLink::create(base_, lo, m);
      m->health = MemberHealth(healthPolicyFrom(config.tuning));
      m->config.address = mc.address;
      m->config.cmd_out_address = mc.cmd_out_address;
      startMember(*m);
    }
    m->config = mc;
    m->local = isLocalMember(mc);
    m->status = mc.status;
    spdlog::info("MEMBER_UPDATED cluster={} member={} relink={}", logName(config.name), logName(mc.name), relink);
  }
  config_.members = config.members;
  config_.capacity_limit = config.capacity_limit;
  config_.disconnect_notify = config.disconnect_notify;
  config_.tuning = config.tuning;
  stall_.setGrace(std::max<uint64_t>(config_.tuning.command_timeout_ms, 1));
  updateNotifyPeers();
  return {};
}

void ClusterWorker::checkDrained(Member& m, bool after_heartbeat) {
  if (m.removed || m.status != AdminStatus::kDraining) return;
  if (!m.online()) {
    removeMember(m, "drained_offline");
    return;
  }
  std::optional<double> active = m.health.activeSessions();
  const bool relay_idle = !m.health.statsUnsupported() && active && *active < 0.5;
  if (m.bound() != 0) {
    // The relay says it has no sessions left, yet calls are still bound to
    // it: their D was lost (or the relay restarted). Without this rule one
    // lost D would keep the member DRAINING for ever.
    if (!after_heartbeat) return;
    m.idle_heartbeats = relay_idle ? m.idle_heartbeats + 1 : 0;
    if (m.idle_heartbeats < kIdleHeartbeatsToDrain) return;
    spdlog::info("MEMBER_DRAIN_STALE_CALLS cluster={} member={} bound={} idle_heartbeats={}", logName(config_.name),
                 logName(m.config.name), m.bound(), m.idle_heartbeats);
    removeMember(m, "drained_relay_idle");
    return;
  }
  if (!m.health.statsUnsupported() && !relay_idle) return;
  removeMember(m, "drained");
}

void ClusterWorker::removeMember(Member& m, std::string_view reason) {
  spdlog::info("MEMBER_REMOVED cluster={} member={} reason={}", logName(config_.name), logName(m.config.name), reason);
  m.removed = true;
  if (m.health_timer != nullptr) evtimer_del(m.health_timer);
  table_->forgetMember(m.index);
  // The link may be inside its own callback right now: destroy it later.
  std::unique_ptr<Member> owned = std::move(members_[m.index]);
  owned->link->cancelAll();
  graveyard_.push_back(std::move(owned));
  event_active(reaper_, 0, 0);
  updateNotifyPeers();
}

std::vector<MemberStatus> ClusterWorker::members() const {
  std::vector<MemberStatus> out;
  for (const auto& m : members_) {
    if (!m || m->removed) continue;
    MemberStatus s;
    s.index = m->index;
    s.config = m->config;
    s.status = m->status;
    s.health = m->health.state();
    s.online = m->online();
    s.active_sessions = m->health.activeSessions();
    s.bound_sessions = m->bound();
    CandidateView c{m->index, m->config.weight, m->config.capacity, s.active_sessions,
                    s.bound_sessions, s.online, m->status};
    s.utilisation = memberUtilisation(c);
    s.rtt = m->link->smoothedRtt();
    s.capabilities = m->health.capabilities();
    s.stats_unsupported = m->health.statsUnsupported();
    // A relay that answers I with an error (rtpengine) reports no load; what
    // the cluster bound to it is the best count there is (also what the
    // selector uses for it).
    if (s.stats_unsupported && !s.active_sessions) s.active_sessions = s.bound_sessions;
    s.commands = m->commands;
    s.timeouts = m->timeouts;
    s.failovers = m->failovers;
    s.deferred_deletes = m->deferred_total;
    s.rtt_histogram = m->link->counters().rtt;
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const MemberStatus& a, const MemberStatus& b) { return a.config.name < b.config.name; });
  return out;
}

// ---------------------------------------------------------------------------
// Health probes.

void ClusterWorker::applyHealth(Member& m, const HealthAction& action) {
  if (m.removed) return;
  const uint64_t now = nowMs();
  if (action.transition) {
    const HealthTransition& t = *action.transition;
    if (t.to == HealthState::kOnline) {
      if (!held_.empty()) event_active(release_held_, EV_TIMEOUT, 0);
      spdlog::info("MEMBER_ONLINE cluster={} member={} reason={} capabilities={:#x}", logName(config_.name),
                   logName(m.config.name), healthReasonName(t.reason), m.health.capabilities());
      flushDeferredDeletes(m);
    } else if (t.to == HealthState::kOffline) {
      spdlog::warn("MEMBER_OFFLINE cluster={} member={} reason={}", logName(config_.name), logName(m.config.name),
                   healthReasonName(t.reason));
    }
  }
  if (action.transition && action.transition->to == HealthState::kOffline &&
      m.status == AdminStatus::kDraining) {
    // Offline by failed commands rather than by a heartbeat: the drained
    // check would otherwise only run again when the member is back.
    checkDrained(m);
    if (m.removed) return;
  }
  if (action.send != ProbeKind::kNone) {
    uint64_t timeout = action.reply_deadline_ms > now ? action.reply_deadline_ms - now : 1;
    auto shape = action.send == ProbeKind::kHeartbeat ? MemberLink::ReplyShape::kInfo
                                                      : MemberLink::ReplyShape::kLine;
    m.link->send(action.command, std::chrono::milliseconds(timeout),
                 kProbeTokenBit | static_cast<uint64_t>(action.send), shape);
  }
  if (m.removed) return;
  if (action.next_timer_ms != 0) {
    uint64_t delay = action.next_timer_ms > now ? action.next_timer_ms - now : 0;
    const timeval tv = msToTimeval(delay);
    evtimer_add(m.health_timer, &tv);
  }
}

void ClusterWorker::onHealthTimer(Member& m) {
  const uint64_t now = nowMs();
  checkStall(now);
  if (m.removed) return;
  applyHealth(m, m.health.onTimer(now));
}

void ClusterWorker::checkStall(uint64_t now) {
  stall_.observe(now);
  if (stall_.count() == stalls_handled_) return;
  stalls_handled_ = stall_.count();
  onLoopStall(stall_.last());
}

// The loop did not run for a while: what timed out meanwhile is the worker's
// doing, not the relays'. The member links postpone such deadlines
// themselves (LoopStall); here the jobs get back the time they lost, and
// every member's health machine learns of the stall before it judges a probe.
void ClusterWorker::onLoopStall(const LoopStall::Window& w) {
  const uint64_t length = w.end_ms - w.start_ms;
  uint64_t suppressed = 0;
  if (log_stall_.allow(w.end_ms, suppressed)) {
    spdlog::warn("WORKER_STALL cluster={} ms={} stalls={} suppressed={}", logName(config_.name), length, stall_.count(),
                 suppressed);
  }
  for (auto& j : jobs_) {
    if (j->in_use && j->deadline_ms >= w.start_ms) j->deadline_ms += length;
  }
  for (size_t i = 0; i < members_.size(); ++i) {
    Member* m = members_[i].get();
    if (m == nullptr || m->removed) continue;
    applyHealth(*m, m->health.onLoopStall(w.start_ms, w.end_ms));
  }
}

void ClusterWorker::startMember(Member& m) {
  m.name_watch.reset();
  m.source_watch.reset();
  m.resolved_target.reset();
  m.resolved_source.reset();
  const SocketAddress& address = m.config.address;
  const bool target_name = needsNameResolution(address);
  const bool source_name = !m.config.cmd_out_address.empty() && !isUnixPath(address.transport) &&
                           needsNameResolution(cmdOutSocketAddress(address, m.config.cmd_out_address));
  if (!target_name && !source_name) {
    applyHealth(m, m.health.start(nowMs()));
    return;
  }
  // Not probed until the names resolve: the link has no address to send to,
  // and a probe failing for that would read as "probe_timeout".
  evtimer_del(m.health_timer);
  if (!resolver_) resolver_ = std::make_shared<NameResolver>(base_, options_.resolver_files);
  Member* member = &m;
  const auto unresolved = [this, member](const std::string&) {
    spdlog::warn("MEMBER_OFFLINE cluster={} member={} reason=unresolved", logName(config_.name),
                 logName(member->config.name));
  };
  if (target_name) {
    m.name_watch = std::make_unique<MemberNameWatch>(
        base_, resolver_, config_.name, m.config.name, address, options_.name_watch,
        [this, member](const ResolvedAddress& a) { return onMemberResolved(*member, a, false); }, unresolved);
  }
  if (source_name) {
    m.source_watch = std::make_unique<MemberNameWatch>(
        base_, resolver_, config_.name, m.config.name, cmdOutSocketAddress(address, m.config.cmd_out_address),
        options_.name_watch, [this, member](const ResolvedAddress& a) { return onMemberResolved(*member, a, true); },
        unresolved);
  }
  if (m.name_watch) m.name_watch->start();
  if (m.source_watch) m.source_watch->start();
}

std::optional<std::string> ClusterWorker::onMemberResolved(Member& m, const ResolvedAddress& address, bool source) {
  if (m.removed) return std::string("member removed");
  if (!source && isSelfLoopResolved(config_.control, m.config.address.transport, address.sa(), thisHostAddresses())) {
    return "self loop: resolves to the cluster's own control socket " + config_.control.uri();
  }
  (source ? m.resolved_source : m.resolved_target) = address;
  if ((m.name_watch && !m.resolved_target) || (m.source_watch && !m.resolved_source)) return std::nullopt;
  // A new link to the new address, a fresh health cycle; the calls stay.
  m.link->cancelAll();
  MemberLinkOptions lo;
  lo.address = m.config.address;
  lo.cmd_out_address = m.config.cmd_out_address;
  lo.max_retransmits = config_.tuning.command_retries;
  lo.stall = &stall_;
  lo.target = m.resolved_target;
  lo.source = m.resolved_source;
  dead_links_.push_back(std::move(m.link));
  event_active(reaper_, 0, 0);
  m.link = MemberLink::create(base_, lo, &m);
  evtimer_del(m.health_timer);
  m.health = MemberHealth(healthPolicyFrom(config_.tuning));
  applyHealth(m, m.health.start(nowMs()));
  updateNotifyPeers();
  return std::nullopt;
}


void ClusterWorker::onProbeReply(Member& m, ProbeKind kind, LinkOutcome outcome,
                                 std::string_view body) {
  const uint64_t now = nowMs();
  HealthAction action = outcome == LinkOutcome::kReply ? m.health.onReply(kind, body, now)
                                                       : m.health.onTimeout(kind, now);
  applyHealth(m, action);
  if (kind == ProbeKind::kHeartbeat) checkDrained(m, true);
}

void ClusterWorker::noteCommandOutcome(Member& m, bool ok, uint64_t began_ms) {
  const uint64_t now = nowMs();
  if (ok) {
    // Only a member that is online resets its count this way: replies are
    // what the health machine's own probes judge otherwise.
    if (m.health.consecutiveFailures() != 0) applyHealth(m, m.health.onCommandSuccess(now));
  } else {
    ++m.timeouts;
    checkStall(now);
    if (m.removed) return;
    applyHealth(m, m.health.onCommandFailure(now, began_ms));
  }
}

void ClusterWorker::flushDeferredDeletes(Member& m) {
  const uint64_t now = nowMs();
  while (!m.deferred_deletes.empty()) {
    Member::DeferredDelete d = std::move(m.deferred_deletes.front());
    m.deferred_deletes.pop_front();
    if (now - d.queued_ms > kDeferredDeleteTtlMs) {
      spdlog::warn("DEFERRED_DELETE_EXPIRED cluster={} member={}", logName(config_.name), logName(m.config.name));
      continue;
    }
    // Nobody waits for the answer: a token that matches no job.
    m.link->send(d.command, std::chrono::milliseconds(config_.tuning.command_timeout_ms),
                 0xffffffffull);
    if (m.removed) return;
  }
}

// A create that timed out on a member may still have been carried out there
// (a slow relay answers after our deadline). The call now lives on another
// member, so nobody would ever delete that copy: the relay would keep a
// session (and its ports) until its own timeout. Delete it now, without
// waiting for the answer (a relay that never created it answers E50 or 0).
void ClusterWorker::deleteOrphan(Member& m, const RtppCommand& cmd) {
  scratch_orphan_.assign("D ");
  scratch_orphan_.append(cmd.call_id);
  scratch_orphan_.push_back(' ');
  scratch_orphan_.append(cmd.from_tag);
  if (!m.online()) {
    if (m.deferred_deletes.size() < kMaxDeferredDeletes) m.deferred_deletes.push_back({scratch_orphan_, nowMs()});
    return;
  }
  m.link->send(scratch_orphan_, std::chrono::milliseconds(config_.tuning.command_timeout_ms), 0xffffffffull);
}

// ---------------------------------------------------------------------------
// Jobs.

ClusterWorker::Job* ClusterWorker::newJob(ControlRequest* request) {
  uint32_t slot;
  if (!free_jobs_.empty()) {
    slot = free_jobs_.back();
    free_jobs_.pop_back();
  } else {
    slot = static_cast<uint32_t>(jobs_.size());
    jobs_.push_back(std::make_unique<Job>());
    jobs_.back()->slot = slot;
  }
  Job& j = *jobs_[slot];
  ++j.generation;
  if (j.generation == 0xffffffffu) j.generation = 1;  // 0xffffffff tags fire-and-forget sends
  j.in_use = true;
  j.request = request;
  j.kind = kJobForward;
  j.route = kRouteBound;
  j.member = 0;
  j.tried.reset();
  j.started_ms = nowMs();
  j.deadline_ms = j.started_ms + config_.tuning.command_timeout_ms;
  j.outstanding = 0;
  j.positives = 0;
  j.answered = 0;
  j.any_timeout = false;
  j.all_ok = true;
  j.last_refusal = 0;
  j.kept_reply.clear();
  j.stats_started = false;
  j.stats_missing = 0;
  j.stats_members = 0;
  j.stats_live = 0;
  j.stats_error = 0;
  return &j;
}

void ClusterWorker::releaseJob(Job& job) {
  job.in_use = false;
  job.request = nullptr;
  free_jobs_.push_back(job.slot);
}

ClusterWorker::Job* ClusterWorker::jobFor(uint64_t token) {
  uint32_t slot = static_cast<uint32_t>(token & 0xffffffffu);
  uint32_t generation = static_cast<uint32_t>(token >> 32);
  if (slot >= jobs_.size()) return nullptr;
  Job& j = *jobs_[slot];
  if (!j.in_use || j.generation != generation) return nullptr;
  return &j;
}

void ClusterWorker::answerRequest(ControlRequest* request, std::string_view body) {
  counters_.tally.count(request->parse.ok ? static_cast<size_t>(request->command.type) : kTallyUnparsedRow, body);
  request->listener->reply(request, body);
}

void ClusterWorker::answer(Job& job, std::string_view body) {
  ControlRequest* r = job.request;
  releaseJob(job);
  answerRequest(r, body);
}

void ClusterWorker::answerError(ControlRequest* request, int code, std::string_view reason) {
  // E999 (no member online) is answered by the cluster itself: a `local` command kind.
  if (code == ecode::kNoMemberOnline) ++counters_.answered_locally;
  if (code >= 993) {
    ++counters_.cluster_errors;
    uint64_t suppressed = 0;
    if (log_cluster_error_.allow(nowMs(), suppressed)) {
      spdlog::warn("CLUSTER_ERROR cluster={} code=E{} reason={} command={} suppressed={}", logName(config_.name), code,
                   reason, request->command.letter(), suppressed);
    }
  }
  char buf[16];
  buf[0] = 'E';
  int n = std::snprintf(buf + 1, sizeof buf - 1, "%d", code);
  answerRequest(request, std::string_view(buf, static_cast<size_t>(n) + 1));
}

// ---------------------------------------------------------------------------
// Routing.

void ClusterWorker::onCommand(ControlRequest* request) {
  ++counters_.commands;
  if (!request->parse.ok) {
    ++counters_.parse_errors;
    answerError(request, request->parse.error_code, "parse");
    return;
  }
  dispatch(request);
}

// Right after a (re)start every member is still being probed for a few ms.
// A command that needs a member then waits (bounded) instead of failing with
// E999: a worker restarted by the supervisor must not fail the calls that
// queued up in its socket meanwhile.
bool ClusterWorker::holdUntilProbed(ControlRequest* request) {
  if (anyOnline() || nowMs() >= startup_hold_until_ms_) return false;
  bool probing = false;
  for (const auto& m : members_) {
    if (m && !m->removed &&
        (m->health.state() == HealthState::kProbing || m->health.state() == HealthState::kCapabilities))
      probing = true;
  }
  if (!probing || held_.size() >= kMaxHeldCommands) return false;
  held_.push_back(request);
  if (held_.size() == 1) {
    const uint64_t left = startup_hold_until_ms_ - nowMs();
    const timeval tv = msToTimeval(left);
    evtimer_add(release_held_, &tv);
  }
  return true;
}

void ClusterWorker::releaseHeld() {
  if (held_.empty()) return;
  evtimer_del(release_held_);
  std::vector<ControlRequest*> held;
  held.swap(held_);
  startup_hold_until_ms_ = 0;  // once released, never hold again
  for (ControlRequest* r : held) dispatch(r);
}

void ClusterWorker::dispatch(ControlRequest* request) {
  const RtppCommand& cmd = request->command;
  if (cmd.type != CommandType::kVersion && cmd.type != CommandType::kVersionFeature &&
      cmd.type != CommandType::kInfo && holdUntilProbed(request))
    return;
  switch (cmd.type) {
    case CommandType::kVersion:
      ++counters_.answered_locally;
      answerRequest(request, kVersionReply);
      return;
    case CommandType::kVersionFeature:
      answerFeature(request);
      return;
    case CommandType::kInfo:
      answerInfo(request);
      return;
    case CommandType::kStats:
    case CommandType::kDeleteAll: {
      if (!anyOnline()) {
        answerError(request, ecode::kNoMemberOnline, "no_member_online");
        return;
      }
      Job* job = newJob(request);
      startBroadcast(*job, cmd.type == CommandType::kStats ? kJobStats : kJobDeleteAll);
      return;
    }
    default:
      routeByCall(request);
      return;
  }
}

void ClusterWorker::answerFeature(ControlRequest* request) {
  ++counters_.answered_locally;
  uint32_t date = 0;
  bool known = parseDate(request->command.feature, date);
  bool in_table = known && std::find(std::begin(kKnownFeatureDates), std::end(kKnownFeatureDates),
                                     date) != std::end(kKnownFeatureDates);
  std::optional<uint16_t> cap = known ? capabilityForDate(date) : std::nullopt;
  if (!in_table) {
    answerRequest(request, "0");
    return;
  }
  if (!anyOnline()) {
    // Members are still being probed (or all down): answer what rtpproxy
    // would, except for notifications, which need a member to deliver them.
    answerRequest(request, date == 20081224 ? "0" : "1");
    return;
  }
  if (cap) {
    bool all = true;
    for (const auto& m : members_) {
      if (m && !m->removed && m->online() && !m->health.supports(*cap)) all = false;
    }
    answerRequest(request, all ? "1" : "0");
    return;
  }
  Job* job = newJob(request);
  startBroadcast(*job, kJobFeature);
}

void ClusterWorker::answerInfo(ControlRequest* request) {
  ++counters_.answered_locally;
  InfoStats sum;
  for (const auto& m : members_) {
    if (!m || m->removed || !m->online()) continue;
    const auto& last = m->health.lastStats();
    if (last && !m->health.statsUnsupported()) {
      sum += *last;
    } else {
      // A relay without I (rtpengine): the calls this cluster bound to it.
      sum.active_sessions += m->bound();
    }
  }
  const bool with_load = request->command.modifiers.find_first_of("lL") != std::string_view::npos;
  scratch_reply_.clear();
  formatInfoReply(sum, with_load, scratch_reply_);
  std::string_view body = scratch_reply_.view();
  while (!body.empty() && body.back() == '\n') body.remove_suffix(1);
  answerRequest(request, body);
}

void ClusterWorker::routeByCall(ControlRequest* request) {
  const RtppCommand& cmd = request->command;
  const uint64_t now = nowMs();
  // A known call always goes to its own member: sent anywhere else, a U
  // would create a second session of it there and orphan the first.
  std::optional<uint16_t> bound = table_->lookup(cmd.call_id, now);
  // `U ... && C callid2 ...` forks call2's streams into this session: both
  // calls must live on the same relay, so a new call goes where call2 is.
  // For a known call on another relay than call2, the call's relay answers
  // what rtpproxy answers for a C it cannot carry out: `<port> <addr> && -1`.
  if (!bound && cmd.type == CommandType::kUpdate && cmd.hasSubcommands()) {
    for (size_t i = 0; i < cmd.subcommand_count && !bound; ++i) {
      std::string_view w = cmd.subcommandToken(i, 0);
      if (cmd.subcommand_argc[i] >= 2 && (w == "C" || w == "c"))
        bound = table_->lookup(cmd.subcommandToken(i, 1), now);
    }
  }
  Member* member = bound ? memberAt(*bound) : nullptr;

  if (member != nullptr) {
    if (cmd.type == CommandType::kDelete && !member->online()) {
      // Answer at once; deliver when the member is back (or give up later).
      if (member->deferred_deletes.size() < kMaxDeferredDeletes) {
        scratch_command_.clear();
        formatCommand(cmd, CommandEdits{}, scratch_command_);
        member->deferred_deletes.push_back({std::string(scratch_command_.view()), now});
        ++member->deferred_total;
      } else {
        ++member->deferred_dropped;
        uint64_t suppressed = 0;
        if (log_delete_dropped_.allow(now, suppressed)) {
          spdlog::warn("DELETE_DROPPED cluster={} member={} reason=deferred_queue_full queued={} dropped_total={} "
                       "suppressed={}",
                       logName(config_.name), logName(member->config.name), member->deferred_deletes.size(),
                       member->deferred_dropped, suppressed);
        }
      }
      table_->markDeleted(cmd.call_id, now);
      ++counters_.answered_locally;
      answerRequest(request, "0");
      return;
    }
    ++counters_.routed;
    Job* job = newJob(request);
    job->kind = kJobForward;
    forward(*job, *member, false);
    return;
  }

  if (!anyOnline()) {
    answerError(request, ecode::kNoMemberOnline, "no_member_online");
    return;
  }
  Job* job = newJob(request);
  if (cmd.type == CommandType::kUpdate) {
    if (cmd.to_tag.empty()) {
      job->route = kRouteCreate;
      startCreate(*job);
    } else {
      job->route = kRouteLookupForUpdate;
      startBroadcast(*job, kJobLookupForUpdate);
    }
    return;
  }
  job->route = kRouteBroadcast;
  startBroadcast(*job, kJobBroadcast);
}

void ClusterWorker::formatFor(const Member& m, const RtppCommand& cmd, bool as_lookup,
                              CommandBuffer& out) {
  out.clear();
  CommandEdits edits;
  const bool ul = cmd.type == CommandType::kUpdate || cmd.type == CommandType::kLookup;
  if (as_lookup) {
    // A U for a call nobody knows: ask with a lookup for the other leg.
    edits.type_letter = 'L';
    edits.swap_tags = true;
    edits.drop_notify = true;
  }
  if (ul && !m.config.lan_address.empty()) {
    edits.local_address = m.config.lan_address;
    edits.drop_remote_route = true;
  }
  if (!as_lookup && !cmd.notify_socket.empty()) {
    const auto& dn = config_.disconnect_notify;
    // The signalling writes its socket as "unix:/path" or "/path"; the
    // prefix is a path (a "unix:" on it is ignored as well).
    std::string_view socket = cmd.notify_socket;
    if (socket.substr(0, 5) == "unix:") socket.remove_prefix(5);
    std::string_view prefix = notify_relay_ ? std::string_view(notify_relay_->destinationPrefix()) : "";
    if (dn && notify_relay_ && m.health.supports(kCapNotifySelf) &&
        socket.substr(0, prefix.size()) == prefix) {
      // Relay the notification through our inbound listener: the member
      // calls back %%CC_SELF%%, we forward to <prefix><suffix>.
      std::string_view suffix = socket.substr(prefix.size());
      // Member scratch strings: no allocation once they have grown.
      scratch_notify_.clear();
      scratch_notify_.append(suffix);
      scratch_notify_.push_back(' ');
      const size_t tag_at = scratch_notify_.size();
      // The parser already refused a tag with a bad escape (E10, as
      // rtpproxy); should one get here, it is passed on as written.
      if (!urlUnquoteAppend(cmd.notify_tag, scratch_notify_)) {
        scratch_notify_.resize(tag_at);
        scratch_notify_.append(cmd.notify_tag);
      }
      scratch_tag_.assign(notify_socket_);
      const size_t socket_len = scratch_tag_.size();
      urlQuoteAppend(scratch_notify_, scratch_tag_);
      edits.notify_socket = std::string_view(scratch_tag_).substr(0, socket_len);
      edits.notify_tag = std::string_view(scratch_tag_).substr(socket_len);
    } else if (!m.local) {
      edits.drop_notify = true;
    }
  }
  formatCommand(cmd, edits, out);
}

void ClusterWorker::forward(Job& job, Member& m, bool as_lookup) {
  const RtppCommand& cmd = job.request->command;
  formatFor(m, cmd, as_lookup, scratch_command_);
  job.member = m.index;
  ++m.commands;
  const uint64_t now = nowMs();
  uint64_t timeout = job.deadline_ms > now ? job.deadline_ms - now : 1;
  if (job.kind == kJobCreate) timeout = std::min<uint64_t>(timeout, config_.tuning.command_timeout_ms / 2);
  auto shape = MemberLink::ReplyShape::kLine;
  m.link->send(scratch_command_.view(), std::chrono::milliseconds(timeout), job.token(m.index), shape);
}

void ClusterWorker::startCreate(Job& job) {
  job.kind = kJobCreate;
  candidates_.clear();
  for (const auto& m : members_) {
    if (!m || m->removed) continue;
    candidates_.push_back(CandidateView{m->index, m->config.weight, m->config.capacity,
                                       m->health.activeSessions(), m->bound(), m->online(),
                                       m->status});
  }
  Selection sel = selectMember(candidates_, config_.capacity_limit, job.tried, random01());
  if (!sel.index) {
    ControlRequest* r = job.request;
    int code = job.last_refusal != 0 ? job.last_refusal
               : job.any_timeout     ? ecode::kMemberTimeout
                                     : ecode::kNoMemberToPick;
    releaseJob(job);
    answerError(r, code, selectionOutcomeName(sel.outcome));
    return;
  }
  Member* m = memberAt(*sel.index);
  forward(job, *m, false);
}

void ClusterWorker::startBroadcast(Job& job, uint8_t kind) {
  job.kind = kind;
  ++counters_.broadcasts;
  const RtppCommand& cmd = job.request->command;
  const bool as_lookup = kind == kJobLookupForUpdate;
  // Count first: a link may fail a send at once and call back re-entrantly.
  uint16_t targets = 0;
  for (const auto& m : members_) {
    if (m && !m->removed && m->online()) ++targets;
  }
  job.outstanding = targets;
  job.stats_members = targets;
  const uint64_t token = job.token(0);
  const uint32_t generation = job.generation;
  std::vector<Member*> online;
  online.reserve(targets);
  for (const auto& m : members_) {
    if (m && !m->removed && m->online()) online.push_back(m.get());
  }
  for (Member* m : online) {
    if (!job.in_use || job.generation != generation) return;  // finished re-entrantly
    formatFor(*m, cmd, as_lookup, scratch_command_);
    ++m->commands;
    const uint64_t now = nowMs();
    uint64_t timeout = job.deadline_ms > now ? job.deadline_ms - now : 1;
    m->link->send(scratch_command_.view(), std::chrono::milliseconds(timeout), token);
  }
}

void ClusterWorker::onMemberReply(Member& m, uint64_t token, LinkOutcome outcome,
                                  std::string_view body) {
  if (token & kProbeTokenBit) {
    onProbeReply(m, static_cast<ProbeKind>(token & 0xff), outcome, body);
    return;
  }
  Job* job = jobFor(token);
  if (outcome != LinkOutcome::kReply && !m.removed) {
    // When it began matters (see MemberHealth): a job knows; a
    // fire-and-forget delete ran its whole command timeout.
    const uint64_t now = nowMs();
    const uint64_t timeout = config_.tuning.command_timeout_ms;
    noteCommandOutcome(m, false, job != nullptr ? job->started_ms : (now > timeout ? now - timeout : 0));
    job = jobFor(token);  // health callbacks may have finished it
  }
  if (job == nullptr) return;  // fire-and-forget delete, or a job already answered
  if (outcome == LinkOutcome::kReply && !m.removed) noteCommandOutcome(m, true, 0);
  switch (job->kind) {
    case kJobForward:
      deliverForward(*job, m, outcome, body);
      return;
    case kJobCreate:
      deliverCreate(*job, m, outcome, body);
      return;
    default:
      break;
  }
  // Broadcasts.
  --job->outstanding;
  ++job->answered;
  if (job->kind == kJobStats) {
    collectStats(*job, m, outcome, body);
  } else if (outcome != LinkOutcome::kReply) {
    job->any_timeout = true;
    job->all_ok = false;
  } else {
    RtppReply reply = classifyReply(body);
    const RtppCommand& cmd = job->request->command;
    switch (job->kind) {
      case kJobDeleteAll:
      case kJobFeature: {
        std::string_view expect = job->kind == kJobDeleteAll ? "0" : "1";
        if (reply.body != expect) {
          job->all_ok = false;
          if (job->kept_reply.empty()) job->kept_reply.assign(reply.body);
        }
        break;
      }
      default: {  // kJobBroadcast, kJobLookupForUpdate
        const CommandType type =
            job->kind == kJobLookupForUpdate ? CommandType::kLookup : cmd.type;
        if (isPositiveReply(type, reply)) {
          if (++job->positives == 1) {
            job->positive_member = m.index;
            job->kept_reply.assign(reply.body);
          }
        }
        break;
      }
    }
  }
  if (job->outstanding == 0) finishBroadcast(*job);
}

void ClusterWorker::finishBroadcast(Job& job) {
  const RtppCommand& cmd = job.request->command;
  const uint64_t now = nowMs();
  switch (job.kind) {
    case kJobStats:
      finishStats(job);
      return;
    case kJobDeleteAll:
      if (job.all_ok) {
        for (const auto& m : members_) {
          if (m && !m->removed) table_->forgetMember(m->index);
        }
        answer(job, "0");
      } else if (job.any_timeout) {
        ControlRequest* r = job.request;
        releaseJob(job);
        answerError(r, ecode::kBroadcastMemberTimeout, "delete_all_timeout");
      } else {
        answer(job, job.kept_reply);
      }
      return;
    case kJobFeature:
      answer(job, job.all_ok ? "1" : "0");
      return;
    case kJobLookupForUpdate: {
      if (job.positives == 1) {
        Member* m = memberAt(job.positive_member);
        if (m != nullptr) {
          table_->bind(cmd.call_id, m->index, now);
          job.kind = kJobForward;
          forward(job, *m, false);
          return;
        }
      }
      if (job.positives == 0) {
        // Nobody knows the call: a late offer (or a proxy that lost its
        // state). rtpproxy creates the session for such a U; so do we.
        ++counters_.late_offers;
        job.any_timeout = false;
        job.route = kRouteLateOffer;
        startCreate(job);
        return;
      }
      uint64_t suppressed = 0;
      if (log_ambiguous_.allow(now, suppressed)) {
        spdlog::warn("BROADCAST_AMBIGUOUS cluster={} positives={} command=U suppressed={}", logName(config_.name),
                     job.positives, suppressed);
      }
      answer(job, "0");
      return;
    }
    default:
      break;
  }
  // kJobBroadcast: exactly one positive answer binds the call to that member.
  if (job.positives == 1) {
    Member* m = memberAt(job.positive_member);
    if (m != nullptr) {
      table_->bind(cmd.call_id, m->index, now);
      if (cmd.type == CommandType::kDelete) table_->markDeleted(cmd.call_id, now);
      if (cmd.type == CommandType::kLookup) {
        RtppReply reply = classifyReply(job.kept_reply);
        answerUlReply(job, *m, reply);
        return;
      }
    }
    // releaseJob leaves kept_reply alone, so the view stays valid.
    answer(job, job.kept_reply);
    return;
  }
  if (cmd.type == CommandType::kLookup) {
    // Not a warning: an L for a call nobody has is a normal negative answer.
    spdlog::debug("UL_NEGATIVE cluster={} command=L call_id={} route=broadcast positives={} answered={} "
                  "timeout={} reply=0",
                  logName(config_.name), logQuoted(cmd.call_id), job.positives, job.answered, job.any_timeout);
    answer(job, "0");
    return;
  }
  ControlRequest* r = job.request;
  bool timeout = job.any_timeout;
  uint16_t positives = job.positives;
  releaseJob(job);
  if (timeout && positives == 0) {
    answerError(r, ecode::kBroadcastMemberTimeout, "broadcast_member_timeout");
  } else {
    answerError(r, ecode::kBroadcastNoUniqueAnswer,
                positives == 0 ? "broadcast_no_positive_answer" : "broadcast_several_positive_answers");
  }
}

// One member's part of a G broadcast. A member that does not answer (or
// answers with an error) contributes its last good answer to the same G.
void ClusterWorker::collectStats(Job& job, Member& m, LinkOutcome outcome, std::string_view body) {
  const RtppCommand& cmd = job.request->command;
  const std::string_view key = cmd.body;
  StatsValues values;
  bool ok = false;
  if (outcome == LinkOutcome::kReply) {
    const RtppReply reply = classifyReply(body);
    ok = parseStatsReply(cmd, reply.body, values);
    if (ok) {
      ++job.stats_live;
      m.stats_cache_key.assign(key);
      m.stats_cache = values;
      m.stats_cache_valid = true;
    } else if (reply.kind == ReplyKind::kError && job.stats_error == 0) {
      job.stats_error = reply.error_code;
    }
  } else {
    job.any_timeout = true;
    job.all_ok = false;
  }
  if (!ok && m.stats_cache_valid && m.stats_cache_key == key) {
    values = m.stats_cache;
    ok = true;
  }
  if (!ok) {
    ++job.stats_missing;
  } else if (!job.stats_started) {
    job.stats = values;
    job.stats_started = true;
  } else if (!addStats(job.stats, values)) {
    ++job.stats_missing;
  }
}

void ClusterWorker::finishStats(Job& job) {
  ControlRequest* r = job.request;
  if (!job.stats_started || job.stats_live == 0) {
    int code = job.stats_error != 0 && !job.any_timeout ? job.stats_error : ecode::kStatsAllFailed;
    releaseJob(job);
    answerError(r, code, "stats_all_failed");
    return;
  }
  if (job.stats_missing != 0) {
    // REFERENCE.md section 4: a member that failed and has no answer to this
    // same G cached makes the sum meaningless; say so rather than undercount.
    releaseJob(job);
    answerError(r, ecode::kStatsNothingCached, "stats_member_failed_nothing_cached");
    return;
  }
  scratch_reply_.clear();
  if (!formatStatsReply(r->command, job.stats, scratch_reply_)) {
    releaseJob(job);
    answerError(r, 25, "stats_reply_too_big");
    return;
  }
  answer(job, scratch_reply_.view());
}

void ClusterWorker::deliverForward(Job& job, Member& m, LinkOutcome outcome, std::string_view body) {
  const RtppCommand& cmd = job.request->command;
  if (outcome != LinkOutcome::kReply && cmd.type == CommandType::kDelete &&
      m.deferred_deletes.size() < kMaxDeferredDeletes) {
    // A hang-up must not leak a session on a relay that was slow for a
    // moment: answer as for an offline member and send the D again later
    // (housekeeping, or when the member is back online).
    scratch_command_.clear();
    formatCommand(cmd, CommandEdits{}, scratch_command_);
    m.deferred_deletes.push_back({std::string(scratch_command_.view()), nowMs()});
    ++m.deferred_total;
    table_->markDeleted(cmd.call_id, nowMs());
    uint64_t suppressed = 0;
    if (log_delete_deferred_.allow(nowMs(), suppressed)) {
      spdlog::warn("DELETE_DEFERRED cluster={} member={} reason=member_timeout suppressed={}", logName(config_.name),
                   logName(m.config.name), suppressed);
    }
    answer(job, "0");
    return;
  }
  if (outcome != LinkOutcome::kReply) {
    ControlRequest* r = job.request;
    releaseJob(job);
    answerError(r, ecode::kMemberTimeout,
                outcome == LinkOutcome::kTimeout ? "member_timeout" : "member_link_error");
    return;
  }
  RtppReply reply = classifyReply(body);
  const uint64_t now = nowMs();
  if (cmd.type == CommandType::kDelete && isPositiveReply(cmd.type, reply)) {
    table_->markDeleted(cmd.call_id, now);
    if (m.status == AdminStatus::kDraining) checkDrained(m);
  } else if (cmd.type == CommandType::kUpdate && isPositiveReply(cmd.type, reply)) {
    table_->bind(cmd.call_id, m.index, now);
  }
  if (cmd.type == CommandType::kUpdate || cmd.type == CommandType::kLookup) {
    answerUlReply(job, m, reply);
    return;
  }
  answer(job, reply.body);
}

void ClusterWorker::deliverCreate(Job& job, Member& m, LinkOutcome outcome, std::string_view body) {
  const RtppCommand& cmd = job.request->command;
  RtppReply reply;
  bool retry = false;
  if (outcome != LinkOutcome::kReply) {
    job.any_timeout = true;
    retry = true;
  } else {
    reply = classifyReply(body);
    if (isRefusal(reply)) {
      job.last_refusal = reply.error_code;
      retry = true;
    }
  }
  if (retry) {
    job.tried.set(m.index);
    ++m.failovers;
    if (outcome == LinkOutcome::kTimeout) deleteOrphan(m, cmd);
    const uint64_t now = nowMs();
    uint64_t suppressed = 0;
    if (log_failover_.allow(now, suppressed)) {
      spdlog::warn("SESSION_FAILOVER cluster={} member={} reason={} suppressed={}", logName(config_.name), logName(m.config.name),
                   outcome == LinkOutcome::kReply ? "refused" : "timeout", suppressed);
    }
    if (job.deadline_ms > now + kMinRetryBudgetMs) {
      ++counters_.failovers;
      startCreate(job);
      return;
    }
    ControlRequest* r = job.request;
    int code = job.last_refusal != 0 ? job.last_refusal : ecode::kMemberTimeout;
    releaseJob(job);
    answerError(r, code, "create_deadline");
    return;
  }
  if (isPositiveReply(CommandType::kUpdate, reply)) {
    table_->bind(cmd.call_id, m.index, nowMs());
    ++counters_.created;
  }
  answerUlReply(job, m, reply);
}

void ClusterWorker::answerUlReply(Job& job, const Member& m, const RtppReply& reply) {
  const RtppCommand& cmd = job.request->command;
  // A member that does not know a call it was bound to (rtpengine may drop
  // one by itself) answers "0"; the signalling then logs "port 0". This line
  // tells such a member answer from a broadcast nobody answered.
  if (spdlog::should_log(spdlog::level::debug) && !isPositiveReply(cmd.type, reply)) {
    spdlog::debug("UL_NEGATIVE cluster={} command={} call_id={} route={} member={} reply={}", logName(config_.name),
                  cmd.letter(), logQuoted(cmd.call_id), routeName(job.route), logName(m.config.name), logQuoted(reply.body));
  }
  // wan_address (reference rule): a positive answer shows the member's
  // public address unless the client asked for a specific local address
  // the member does not map (lan_address set means we replaced it).
  if (!m.config.wan_address.empty() && reply.kind == ReplyKind::kPort && reply.port != 0) {
    UlModifiers mods;
    bool client_local = scanUlModifiers(cmd.modifiers, mods) == 0 && mods.local_length != 0;
    if (!client_local || !m.config.lan_address.empty()) {
      scratch_reply_.clear();
      if (formatReplyWithAddress(reply, m.config.wan_address, scratch_reply_)) {
        answer(job, scratch_reply_.view());
        return;
      }
    }
  }
  answer(job, reply.body);
}

}  // namespace rtpc
