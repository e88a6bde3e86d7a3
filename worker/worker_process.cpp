#include "worker/worker_process.h"

#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bitset>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <memory>
#include <variant>
#include <vector>

#include "shared/admin_command.h"
#include "shared/log_quote.h"
#include "shared/log_setup.h"
#include "shared/quote.h"
#include "shared/session_table.h"
#include "shared/shm_segment.h"
#include "shared/signal_fd.h"
#include "shared/status_snapshot.h"
#include "shared/time_util.h"
#include "worker/cluster_worker.h"

namespace rtpc {

// ---------------------------------------------------------------------------
// Messages.

std::string memberFieldList(const MemberConfig& m) {
  // Tab-separated: a name is free text (spaces, commas, '=' after the key's)
  // but never holds a control character (member_fields.h), so a tab or a
  // newline cannot occur inside a value.
  std::string out;
  out.reserve(128);
  out += "name=";
  out += m.name;
  out += "\tprotocol=";
  out += transportName(m.address.transport);
  out += "\taddress=";
  out += m.address.display();
  out += "\tcapacity=";
  out += std::to_string(m.capacity);
  out += "\tweight=";
  out += std::to_string(m.weight);
  out += "\tstatus=";
  // A draining member is pushed as ACTIVE: the new set decides what drains.
  out += m.status == AdminStatus::kSuspended ? "SUSPENDED" : "ACTIVE";
  const std::pair<std::string_view, const std::string*> optional[] = {
      {"\twan_address=", &m.wan_address}, {"\tlan_address=", &m.lan_address}, {"\tcmd_out_address=", &m.cmd_out_address}};
  for (const auto& [key, value] : optional) {
    if (value->empty()) continue;
    out += key;
    out += *value;
  }
  return out;
}

std::string applyRequestBody(const ClusterConfig& cluster) {
  std::string out = "apply";
  for (const MemberConfig& m : cluster.members) {
    out += '\n';
    out += memberFieldList(m);
  }
  return out;
}

std::optional<ChannelMessage> parseChannelMessage(std::string_view message) {
  const size_t space = message.find(' ');
  if (space == 0 || space == std::string_view::npos) return std::nullopt;
  ChannelMessage out;
  const char* first = message.data();
  const char* last = message.data() + space;
  const auto [end, ec] = std::from_chars(first, last, out.id);
  if (ec != std::errc() || end != last) return std::nullopt;
  out.body = message.substr(space + 1);
  return out;
}

std::string parseApplyBody(std::string_view body, ClusterConfig& out) {
  constexpr std::string_view kHead = "apply";
  if (body.substr(0, kHead.size()) != kHead || (body.size() > kHead.size() && body[kHead.size()] != '\n')) {
    return "malformed apply request";
  }
  out.members.clear();
  std::string_view rest = body.substr(std::min(body.size(), kHead.size() + 1));
  if (body.size() == kHead.size()) rest = {};
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    const std::string_view fields = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    std::variant<MemberConfig, std::string> parsed = parseMemberFieldList(fields, '\t');
    if (auto* problem = std::get_if<std::string>(&parsed)) return "modify add: " + *problem;
    MemberConfig& member = std::get<MemberConfig>(parsed);
    if (out.findMember(member.name) != nullptr) return nameForMessage(member.name) + ": RTPproxy given twice";
    out.members.push_back(std::move(member));
  }
  return {};
}

std::string handleWorkerRequest(ClusterWorker& worker, std::string_view body) {
  if (body == "ping") return "OK";
  if (body.substr(0, 5) == "apply") {
    ClusterConfig next = worker.config();
    const std::string error = parseApplyBody(body, next);
    if (!error.empty()) return "ERROR: " + error;
    const OpResult r = worker.applyConfig(next);
    return r.ok ? "OK" : "ERROR: " + r.message;
  }
  AdminParseResult parsed = parseAdminLine(body);
  if (const auto* e = std::get_if<AdminError>(&parsed)) {
    std::string text = e->answer;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
  }
  const AdminCommand& command = std::get<AdminCommand>(parsed);
  if (command.cluster != worker.config().name) return "ERROR: " + nameForMessage(command.cluster) + ": cluster not found";
  // No member has a longer name; the worker's answer would echo it whole.
  if (command.member.size() > kMaxNameBytes) return "ERROR: " + nameForMessage(command.member) + ": RTPproxy not found";
  OpResult r;
  switch (command.action) {
    case AdminAction::kAddMember:
      r = worker.addMember(command.new_member);
      break;
    case AdminAction::kDeleteMember:
      r = worker.deleteMember(command.member);
      break;
    case AdminAction::kSuspendMember:
      r = worker.pauseMember(command.member);
      break;
    case AdminAction::kResumeMember:
      r = worker.resumeMember(command.member);
      break;
    default:
      return "ERROR: not a worker request";
  }
  if (r.ok) return "OK";
  // The worker's messages start with the name they are about, whole; the
  // admin answer cuts it like any echoed value (docs/admin.md).
  const std::string_view name = command.action == AdminAction::kAddMember ? std::string_view(command.new_member.name)
                                                                           : std::string_view(command.member);
  if (name.size() > kMaxQuotedBytes && std::string_view(r.message).substr(0, name.size()) == name) {
    return "ERROR: " + nameForMessage(name) + r.message.substr(name.size());
  }
  return "ERROR: " + r.message;
}

// ---------------------------------------------------------------------------
// The process.

namespace {


// Reconciles the session table a previous worker left with the new worker's
// members. ClusterWorker keeps the calls of an attached table for its initial
// members; this forgets the calls of the indexes that now hold a different
// member (or none), by name as the previous worker published them, so that a
// config change between two workers can never misroute a call.
class TableKeeper {
 public:
  void save(const ShmSegment& segment, uint32_t slot, void* memory, size_t bytes) {
    if (memory == nullptr) return;
    const SessionTable* table = SessionTable::attach(memory, bytes);
    if (table == nullptr && bytes >= 64 &&
        std::any_of(static_cast<const unsigned char*>(memory), static_cast<const unsigned char*>(memory) + 64,
                    [](unsigned char b) { return b != 0; })) {
      // Not a fresh (zeroed) block: a table that does not check out (garbage
      // in its header). ClusterWorker starts a new one; its calls are lost.
      spdlog::error("SESSION_TABLE_INVALID slot={} bytes={} action=new_table", slot, bytes);
    }
    if (table == nullptr || table->size() == 0) return;
    saved_ = true;
    for (uint32_t i = 0; i < kMaxMembersPerCluster; ++i) {
      const MemberRecord* record = segment.member(slot, i);
      if (record == nullptr) continue;
      MemberSnapshot snapshot;
      bool in_use = false;
      const bool consistent = readMember(*record, snapshot, in_use);
      // A record its writer left half-written names nobody: forget its calls.
      if (in_use && consistent) previous_[i] = snapshot.name;
    }
  }

  // Name -> index of the previous worker's members, for ClusterWorker to
  // give them the same indexes again.
  std::vector<std::pair<std::string, uint16_t>> previousSlots() const {
    std::vector<std::pair<std::string, uint16_t>> out;
    if (!saved_) return out;
    for (size_t i = 0; i < previous_.size(); ++i) {
      if (!previous_[i].empty()) out.emplace_back(previous_[i], static_cast<uint16_t>(i));
    }
    return out;
  }

  void restore(const ClusterWorker& worker, void* memory, size_t bytes) {
    if (!saved_) return;
    SessionTable* table = SessionTable::attach(memory, bytes);
    if (table == nullptr) return;
    std::array<std::string, kMaxMembersPerCluster> now;
    for (const MemberStatus& m : worker.members()) {
      if (m.index < now.size()) now[m.index] = m.config.name;
    }
    uint32_t kept = 0;
    uint32_t forgotten = 0;
    for (size_t i = 0; i < now.size(); ++i) {
      if (previous_[i].empty() && now[i].empty()) continue;
      if (previous_[i] == now[i]) {
        ++kept;
        continue;
      }
      forgotten += table->forgetMember(static_cast<uint16_t>(i));
    }
    spdlog::info("SESSION_TABLE_KEPT cluster={} calls={} members_kept={} calls_forgotten={}",
                 logName(worker.config().name), table->liveCount(), kept, forgotten);
  }

 private:
  bool saved_ = false;  // the table held calls of a previous worker
  std::array<std::string, kMaxMembersPerCluster> previous_;
};

class WorkerProcess {
 public:
  explicit WorkerProcess(WorkerProcessOptions options) : options_(std::move(options)) {}
  ~WorkerProcess() {
    // The worker before the events it may hold references through.
    worker_.reset();
    for (event* e : {channel_event_, signal_event_, publish_timer_, stop_timer_}) {
      if (e != nullptr) event_free(e);
    }
    if (signal_fd_ >= 0) close(signal_fd_);
    if (options_.channel_fd >= 0) close(options_.channel_fd);
    if (base_ != nullptr) event_base_free(base_);
  }
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  int run();

 private:
  bool setUp(std::string& error);
  void onChannel();
  void onSignal();
  void publish();
  void beginStop();
  void onStopTick();
  void reopenLog();

  WorkerProcessOptions options_;
  event_base* base_ = nullptr;
  std::unique_ptr<ClusterWorker> worker_;
  int signal_fd_ = -1;
  event* channel_event_ = nullptr;
  event* signal_event_ = nullptr;
  event* publish_timer_ = nullptr;
  event* stop_timer_ = nullptr;
  std::chrono::steady_clock::time_point stop_deadline_;
  bool stopping_ = false;
  int exit_code_ = 0;
  std::bitset<kMaxMembersPerCluster> published_;
  std::vector<char> message_;
};

bool WorkerProcess::setUp(std::string& error) {
  // The supervisor's handlers and mask came across the fork: this process
  // takes its own signals through a signalfd, on its own loop.
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&mask, sig);
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  signal_fd_ = openSignalFd(mask, SIG_SETMASK, error);
  if (signal_fd_ < 0) return false;

  base_ = event_base_new();
  if (base_ == nullptr) {
    error = "event_base_new failed";
    return false;
  }
  ClusterRecord* record = options_.segment->cluster(options_.slot);
  if (record == nullptr) {
    error = "cluster slot " + std::to_string(options_.slot) + " out of range";
    return false;
  }
  ClusterWorker::Options wo;
  wo.config = options_.config;
  wo.inherited_fd = options_.control_fd;
  wo.session_memory = options_.segment->sessionMemory(options_.slot, wo.session_bytes);
  void* const table_memory = wo.session_memory;
  const size_t table_bytes = wo.session_bytes;
  TableKeeper keeper;
  keeper.save(*options_.segment, options_.slot, table_memory, table_bytes);
  wo.previous_slots = keeper.previousSlots();
  worker_ = ClusterWorker::create(base_, std::move(wo), error);
  if (!worker_) return false;
  options_.control_fd = -1;  // the listener owns it now
  keeper.restore(*worker_, table_memory, table_bytes);

  // Records a previous worker published stay until this one overwrites or
  // clears them: ls never shows a cluster without members during a restart.
  for (uint32_t i = 0; i < kMaxMembersPerCluster; ++i) {
    const MemberRecord* m = options_.segment->member(options_.slot, i);
    if (m != nullptr && m->in_use.load(std::memory_order_relaxed) != 0) published_.set(i);
  }

  const int flags = fcntl(options_.channel_fd, F_GETFL);
  fcntl(options_.channel_fd, F_SETFL, flags | O_NONBLOCK);
  channel_event_ = event_new(
      base_, options_.channel_fd, EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { static_cast<WorkerProcess*>(arg)->onChannel(); }, this);
  signal_event_ = event_new(
      base_, signal_fd_, EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { static_cast<WorkerProcess*>(arg)->onSignal(); }, this);
  publish_timer_ = event_new(
      base_, -1, EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { static_cast<WorkerProcess*>(arg)->publish(); }, this);
  stop_timer_ = event_new(
      base_, -1, EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { static_cast<WorkerProcess*>(arg)->onStopTick(); }, this);
  if (channel_event_ == nullptr || signal_event_ == nullptr || publish_timer_ == nullptr || stop_timer_ == nullptr) {
    error = "event_new failed";
    return false;
  }
  event_add(channel_event_, nullptr);
  event_add(signal_event_, nullptr);
  const timeval every = msToTimeval(options_.publish_interval_ms);
  event_add(publish_timer_, &every);
  message_.resize(kMaxChannelMessageBytes);
  return true;
}

int WorkerProcess::run() {
  // Never outlive the supervisor; it may have died before prctl took effect.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (options_.supervisor_pid != 0 && getppid() != options_.supervisor_pid) return 1;
  std::string error;
  if (!setUp(error)) {
    spdlog::error("WORKER_START_FAILED cluster={} error={}", logName(options_.config.name), logQuoted(error));
    return 1;
  }
  publish();
  spdlog::info("WORKER_READY cluster={} pid={} slot={}", logName(options_.config.name), getpid(), options_.slot);
  (void)!send(options_.channel_fd, kWorkerReadyMessage.data(), kWorkerReadyMessage.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  event_base_dispatch(base_);
  publish();
  spdlog::info("WORKER_EXIT cluster={} pid={} code={}", logName(options_.config.name), getpid(), exit_code_);
  return exit_code_;
}

void WorkerProcess::onChannel() {
  while (!stopping_) {
    const ssize_t n = recv(options_.channel_fd, message_.data(), message_.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      spdlog::error("WORKER_CHANNEL_ERROR cluster={} error={}", logName(options_.config.name),
                    logQuoted(std::strerror(errno)));
      exit_code_ = 1;
      event_base_loopexit(base_, nullptr);
      return;
    }
    if (n == 0) {
      // The supervisor closed its end (or is gone): it will start a new worker.
      spdlog::warn("WORKER_CHANNEL_CLOSED cluster={}", logName(options_.config.name));
      exit_code_ = 1;
      event_base_loopexit(base_, nullptr);
      return;
    }
    const std::string_view message(message_.data(), static_cast<size_t>(n));
    const std::optional<ChannelMessage> request = parseChannelMessage(message);
    if (!request) {
      spdlog::warn("WORKER_BAD_REQUEST cluster={} bytes={}", logName(options_.config.name), n);
      continue;
    }
    std::string answer = std::to_string(request->id) + " " + handleWorkerRequest(*worker_, request->body);
    // Publish before answering, so an `ls` right after the OK shows the change.
    publish();
    if (send(options_.channel_fd, answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
      spdlog::warn("WORKER_ANSWER_LOST cluster={} id={} error={}", logName(options_.config.name), request->id,
                   logQuoted(std::strerror(errno)));
    }
  }
}

void WorkerProcess::onSignal() {
  signalfd_siginfo info;
  while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    switch (info.ssi_signo) {
      case SIGTERM:
      case SIGINT:
        beginStop();
        break;
      case SIGUSR1:
        reopenLog();
        break;
      default:  // SIGHUP: reloads are the supervisor's
        break;
    }
  }
}

void WorkerProcess::reopenLog() {
  if (options_.log_file.empty()) return;
  std::string error;
  const int fd = openLogFile(options_.log_file, error);
  if (fd < 0) {
    spdlog::error("LOG_REOPEN_FAILED file={} error={}", options_.log_file, logQuoted(error));
    return;
  }
  dup2(fd, STDERR_FILENO);
  close(fd);
}

void WorkerProcess::beginStop() {
  if (stopping_) return;
  stopping_ = true;
  spdlog::info("WORKER_STOPPING cluster={} pid={}", logName(options_.config.name), getpid());
  event_del(channel_event_);
  stop_deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.stop_grace_ms);
  const timeval tick = msToTimeval(10);
  event_add(stop_timer_, &tick);
  onStopTick();
}

void WorkerProcess::onStopTick() {
  const ControlListenerCounters& c = worker_->listener().counters();
  const bool idle = c.answered + c.overload_dropped >= c.received;
  if (idle || std::chrono::steady_clock::now() >= stop_deadline_) event_base_loopexit(base_, nullptr);
}

void WorkerProcess::publish() {
  if (!worker_) return;
  ShmSegment& segment = *options_.segment;
  std::bitset<kMaxMembersPerCluster> now;
  for (const MemberStatus& s : worker_->members()) {
    MemberRecord* record = segment.member(options_.slot, s.index);
    if (record == nullptr) continue;
    MemberLiveStatus live;
    live.status = s.status;
    live.health = static_cast<uint8_t>(s.health);
    live.online = s.online;
    live.active_sessions = s.active_sessions;
    live.bound_sessions = s.bound_sessions;
    live.utilisation = s.utilisation;
    live.rtt_us = static_cast<uint64_t>(s.rtt.count());
    live.capabilities = s.capabilities;
    live.stats_unsupported = s.stats_unsupported;
    live.commands = s.commands;
    live.timeouts = s.timeouts;
    live.failovers = s.failovers;
    live.deferred_deletes = s.deferred_deletes;
    live.rtt_histogram = s.rtt_histogram;
    publishMember(*record, s.config, live);
    now.set(s.index);
  }
  const std::bitset<kMaxMembersPerCluster> gone = published_ & ~now;
  if (gone.any()) {
    for (uint32_t i = 0; i < kMaxMembersPerCluster; ++i) {
      if (!gone.test(i)) continue;
      if (MemberRecord* record = segment.member(options_.slot, i)) clearMember(*record);
    }
  }
  published_ = now;

  const WorkerCounters& w = worker_->counters();
  ClusterCounters c;
  c.commands = w.commands;
  c.answered_locally = w.answered_locally;
  c.routed = w.routed;
  c.created = w.created;
  c.broadcasts = w.broadcasts;
  c.failovers = w.failovers;
  c.parse_errors = w.parse_errors;
  c.cluster_errors = w.cluster_errors;
  c.late_offers = w.late_offers;
  c.tally = w.tally;
  c.tracked_calls = worker_->sessions().liveCount();
  c.deleted_calls = worker_->sessions().deletedCount();
  if (ClusterRecord* record = segment.cluster(options_.slot)) publishCounters(*record, c, unixNowMs());
}

}  // namespace

int runWorkerProcess(WorkerProcessOptions options) {
  int code = 1;
  {
    WorkerProcess process(std::move(options));
    code = process.run();
  }
  spdlog::default_logger()->flush();
  return code;
}

}  // namespace rtpc
