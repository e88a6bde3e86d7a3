#pragma once
// ClusterWorker: one cluster's data path on one libevent loop.
//
// Control listener -> route (answer locally, route by call-id, create on a
// selected member, or broadcast) -> member links -> reply. It owns the
// members (link + health state machine + admin status), the session table
// (call-id -> member index) and the per-command jobs in flight.
// REFERENCE.md sections 4-7 and PROTOCOL.md section 7 are the rules; the
// deviations from the reference are listed in docs/routing.md.

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "shared/command_tally.h"
#include "shared/config.h"
#include "shared/log_limiter.h"
#include "shared/rtpp_command.h"
#include "shared/rtpp_reply.h"
#include "shared/rtpp_stats.h"
#include "shared/session_table.h"
#include "worker/control_listener.h"
#include "worker/loop_stall.h"
#include "worker/member_health.h"
#include "worker/member_link.h"
#include "worker/member_resolver.h"
#include "worker/member_selector.h"
#include "worker/notify_relay.h"

namespace rtpc {

// Result of an operation the supervisor (or a test) asks for.
struct OpResult {
  bool ok = true;
  std::string message;  // the admin error text when !ok, e.g. `r1: RTPproxy not found`
};

// What `ls <cluster>` shows of a member, and what tests assert on.
struct MemberStatus {
  uint16_t index = 0;
  MemberConfig config;
  AdminStatus status = AdminStatus::kActive;
  HealthState health = HealthState::kProbing;
  bool online = false;
  std::optional<double> active_sessions;  // smoothed heartbeat value; empty = UNKNOWN
  uint32_t bound_sessions = 0;
  double utilisation = 0.0;
  std::chrono::microseconds rtt{0};
  uint16_t capabilities = 0;
  bool stats_unsupported = false;
  uint64_t commands = 0;        // forwarded to it
  uint64_t timeouts = 0;
  uint64_t failovers = 0;       // new sessions moved away from it
  uint64_t deferred_deletes = 0;// D queued while it was offline
  RttHistogram rtt_histogram;   // every command's round trip (Karn samples)
};

struct WorkerCounters {
  uint64_t commands = 0;
  uint64_t answered_locally = 0;
  uint64_t routed = 0;          // by call-id to the bound member
  uint64_t created = 0;         // new sessions bound
  uint64_t broadcasts = 0;
  uint64_t failovers = 0;       // create retried on another member
  uint64_t parse_errors = 0;
  uint64_t cluster_errors = 0;  // E993..E999 sent
  uint64_t late_offers = 0;     // U with an unknown to-tag turned into a create
  CommandTally tally;           // every answer sent, by command type/result and error code
};

class ClusterWorker : public CommandHandler {
 public:
  struct Options {
    ClusterConfig config;
    int inherited_fd = -1;             // control socket handed over by the parent, or -1 to bind
    void* session_memory = nullptr;    // session table block (shared memory); null = own heap block
    size_t session_bytes = 0;
    uint64_t random_seed = 0;          // 0 = from std::random_device
    // Slot (index) each member had in the previous worker, by name: a
    // restarted worker gives its members the same indexes, so the calls the
    // attached table binds to them stay theirs (members added or deleted at
    // run time would otherwise shift the indexes).
    std::vector<std::pair<std::string, uint16_t>> previous_slots;
    // Member host names: where the resolver reads its setup, and how it
    // retries (tests point these at files of their own, and retry fast).
    ResolverFiles resolver_files;
    MemberNameWatch::Settings name_watch;
  };

  static std::unique_ptr<ClusterWorker> create(event_base* base, Options options,
                                               std::string& error);
  ~ClusterWorker() override;

  // CommandHandler
  void onCommand(ControlRequest* request) override;
  void prefetchCall(std::string_view call_id) override { table_->prefetch(call_id); }

  // Operations of the admin CLI (REFERENCE.md section 3).
  OpResult addMember(const MemberConfig& member);
  OpResult deleteMember(std::string_view name);  // drain, then remove
  OpResult pauseMember(std::string_view name);   // SUSPENDED
  OpResult resumeMember(std::string_view name);  // ACTIVE
  // Replaces the member set from a new config: unchanged members keep their
  // links and health, changed ones are updated, new ones added, missing ones drained.
  OpResult applyConfig(const ClusterConfig& config);

  std::vector<MemberStatus> members() const;
  const WorkerCounters& counters() const { return counters_; }
  const ControlListener& listener() const { return *listener_; }
  const SessionTable& sessions() const { return *table_; }
  // The disconnect-notify relay, when the cluster configures one.
  const NotifyRelay* notifyRelay() const { return notify_relay_.get(); }
  const ClusterConfig& config() const { return config_; }
  // Stalls of this worker's loop (LoopStall): how many, and how long in all.
  const LoopStall& loopStall() const { return stall_; }

  struct Member;
  struct Job;

 private:
  ClusterWorker(event_base* base, Options options);
  bool init(std::string& error);

  // Routing.
  void answer(Job& job, std::string_view body);
  void answerRequest(ControlRequest* request, std::string_view body);
  void answerError(ControlRequest* request, int code, std::string_view reason);
  void answerInfo(ControlRequest* request);
  void answerFeature(ControlRequest* request);
  void routeByCall(ControlRequest* request);
  void dispatch(ControlRequest* request);
  bool holdUntilProbed(ControlRequest* request);
  void releaseHeld();
  void startCreate(Job& job);
  void startBroadcast(Job& job, uint8_t kind);
  void forward(Job& job, Member& member, bool as_lookup);
  void formatFor(const Member& member, const RtppCommand& cmd, bool as_lookup,
                 CommandBuffer& out);
  void finishBroadcast(Job& job);
  void deleteOrphan(Member& member, const RtppCommand& cmd);
  void collectStats(Job& job, Member& member, LinkOutcome outcome, std::string_view body);
  void finishStats(Job& job);
  void deliverForward(Job& job, Member& member, LinkOutcome outcome, std::string_view body);
  void deliverCreate(Job& job, Member& member, LinkOutcome outcome, std::string_view body);
  void answerUlReply(Job& job, const Member& member, const RtppReply& reply);

 public:  // called by Member (the links' client)
  void onMemberReply(Member& member, uint64_t token, LinkOutcome outcome, std::string_view body);
  void onHealthTimer(Member& member);

 private:
  // Health.
  void applyHealth(Member& member, const HealthAction& action);
  // Probes a member whose address is known; one with a host name is looked
  // up first (without blocking the loop) and probed once it resolves.
  void startMember(Member& member);
  std::optional<std::string> onMemberResolved(Member& member, const ResolvedAddress& address, bool source);
  void onProbeReply(Member& member, ProbeKind kind, LinkOutcome outcome, std::string_view body);
  void noteCommandOutcome(Member& member, bool ok, uint64_t began_ms);
  void checkDrained(Member& member, bool after_heartbeat = false);
  void removeMember(Member& member, std::string_view reason);
  void flushDeferredDeletes(Member& member);
  void updateNotifyPeers();
  void onHousekeeping();
  // Stalls: checkStall() observes the clock and, when a stall ended, calls
  // onLoopStall() once for it before any timeout is judged.
  void checkStall(uint64_t now);
  void onLoopStall(const LoopStall::Window& window);

  // Helpers.
  Member* findMember(std::string_view name) const;
  Member* memberAt(uint16_t index) const;
  bool anyOnline() const;
  Job* newJob(ControlRequest* request);
  void releaseJob(Job& job);
  Job* jobFor(uint64_t token);
  OpResult addMemberInternal(const MemberConfig& member, int preferred_index = -1);
  uint64_t nowMs() const;
  double random01();

  event_base* base_;
  Options options_;
  ClusterConfig config_;
  std::unique_ptr<ControlListener> listener_;
  std::unique_ptr<uint8_t[], void (*)(uint8_t*)> own_table_memory_{nullptr, nullptr};
  SessionTable* table_ = nullptr;
  std::vector<std::unique_ptr<Member>> members_;  // by index; null = free slot
  std::vector<std::unique_ptr<Job>> jobs_;
  std::vector<uint32_t> free_jobs_;
  std::vector<CandidateView> candidates_;          // reused by every selection
  CommandBuffer scratch_command_;
  ReplyBuffer scratch_reply_;
  std::string scratch_tag_;
  std::string scratch_orphan_;  // "D <call-id> <from-tag>" of deleteOrphan
  std::string scratch_notify_;  // "<suffix> <decoded tag>" before quoting
  std::string notify_socket_;   // "tcp:%%CC_SELF%%:<relay port>", set once
  std::mt19937_64 rng_;
  WorkerCounters counters_;
  std::unique_ptr<NotifyRelay> notify_relay_;
  event* housekeeping_ = nullptr;
  LoopStall stall_;
  uint64_t stalls_handled_ = 0;
  event* stall_tick_ = nullptr;  // observes the clock every LoopStall::kTickMs
  bool keep_attached_calls_ = false;  // during init over an attached table
  std::vector<ControlRequest*> held_;  // commands waiting for the first probes
  uint64_t startup_hold_until_ms_ = 0;
  event* release_held_ = nullptr;  // table sweep, deferred-delete expiry
  event* reaper_ = nullptr;  // destroys removed members outside their link callbacks
  std::vector<std::unique_ptr<Member>> graveyard_;
  std::vector<std::unique_ptr<MemberLink>> dead_links_;
  std::shared_ptr<NameResolver> resolver_;  // made for the first member with a host name
  // Per-command warnings, limited so that an outage cannot flood the log.
  LogLimiter log_cluster_error_;
  LogLimiter log_failover_;
  LogLimiter log_delete_deferred_;
  LogLimiter log_delete_dropped_;
  LogLimiter log_ambiguous_;
  LogLimiter log_stall_{5, 10000};
};

}  // namespace rtpc
