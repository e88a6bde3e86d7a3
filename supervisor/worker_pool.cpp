#include "supervisor/worker_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>

#include "shared/log_quote.h"
#include "shared/shm_segment.h"
#include "shared/time_util.h"
#include "worker/worker_process.h"

namespace rtpc {

using SteadyClock = std::chrono::steady_clock;

struct WorkerPool::Request {
  WorkerPool* pool = nullptr;
  std::string cluster;
  uint64_t id = 0;
  std::string body;
  Answer answer;                          // empty once answered (timeout)
  std::function<void(Worker&)> on_ok;     // effective-config update
  std::function<void(Worker&)> on_error;  // e.g. restart after a failed apply
  event* timer = nullptr;
  ~Request() {
    if (timer != nullptr) event_free(timer);
  }
};

struct WorkerPool::Worker {
  enum class State : uint8_t {
    kRunning,       // a worker process runs (or is being started)
    kBackoff,       // died; restart timer pending
    kReconfiguring, // stopping, to start again with `next`
    kRemoving,      // stopping, then released
  };
  WorkerPool* pool = nullptr;
  // The file's cluster plus members added/deleted at run time. Pause and
  // resume are overrides on top, as in the worker: a reload that leaves a
  // member's configuration unchanged keeps its run-time status.
  ClusterConfig config;
  std::map<std::string, AdminStatus, std::less<>> status_override;
  uint32_t config_index = 0;
  std::unique_ptr<ControlSocket> socket;
  uint32_t slot = 0;
  State state = State::kRunning;
  pid_t pid = 0;
  bool ready = false;  // the current worker process said it serves
  int channel = -1;
  event* channel_event = nullptr;
  event* restart_timer = nullptr;
  event* kill_timer = nullptr;
  uint32_t restarts = 0;
  uint32_t backoff_ms = 0;
  SteadyClock::time_point started;
  // kReconfiguring
  ClusterConfig next;
  uint32_t next_index = 0;
  std::unique_ptr<ControlSocket> next_socket;
  // Requests: waiting for a running worker, and sent to it.
  std::deque<std::unique_ptr<Request>> queued;
  std::map<uint64_t, std::unique_ptr<Request>> sent;

  ~Worker() {
    for (event* e : {channel_event, restart_timer, kill_timer}) {
      if (e != nullptr) event_free(e);
    }
    if (channel >= 0) close(channel);
  }
};

namespace {


std::string describeStatus(int status) {
  if (WIFEXITED(status)) return "exit" + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal") + std::to_string(WTERMSIG(status));
  return "unknown";
}

// The config a worker runs: the cluster with its run-time pause/resume.
ClusterConfig withOverrides(const ClusterConfig& cluster,
                            const std::map<std::string, AdminStatus, std::less<>>& overrides) {
  ClusterConfig out = cluster;
  for (MemberConfig& m : out.members) {
    const auto it = overrides.find(m.name);
    if (it != overrides.end()) m.status = it->second;
  }
  return out;
}

// Closes every descriptor of the forked child but `keep` (sorted).
void closeAllBut(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned int from = 0;
  for (const int fd : keep) {
    if (fd < 0) continue;
    const auto k = static_cast<unsigned int>(fd);
    if (k > from) close_range(from, k - 1, 0);
    from = k + 1;
  }
  close_range(from, ~0u, 0);
}

}  // namespace

WorkerPool::WorkerPool(event_base* base, ShmSegment& segment, WorkerPoolSettings settings)
    : base_(base), segment_(segment), settings_(std::move(settings)) {}

WorkerPool::~WorkerPool() { stopAll(); }

std::unique_ptr<ControlSocket> WorkerPool::bindControl(const ClusterConfig& cluster, std::string& error) const {
  std::string why;
  auto socket = ControlSocket::bind(cluster.control, settings_.owner, 0, why);
  if (!socket) error = "cluster " + cluster.name + ": control socket: " + why;
  return socket;
}

WorkerPool::Worker* WorkerPool::find(std::string_view name) const {
  const auto it = workers_.find(name);
  return it == workers_.end() ? nullptr : it->second.get();
}

WorkerPool::Worker* WorkerPool::findByPid(pid_t pid) const {
  for (const auto& [name, w] : workers_) {
    if (w->pid == pid) return w.get();
  }
  return nullptr;
}

bool WorkerPool::has(std::string_view name) const {
  const Worker* w = find(name);
  return w != nullptr && w->state != Worker::State::kRemoving;
}

Config WorkerPool::effectiveConfig() const {
  std::vector<const Worker*> order;
  for (const auto& [name, w] : workers_) {
    if (w->state != Worker::State::kRemoving) order.push_back(w.get());
  }
  std::sort(order.begin(), order.end(),
            [](const Worker* a, const Worker* b) { return a->config_index < b->config_index; });
  Config out;
  for (const Worker* w : order) out.clusters.push_back(w->state == Worker::State::kReconfiguring ? w->next : w->config);
  return out;
}

bool WorkerPool::allReady() const {
  for (const auto& [name, w] : workers_) {
    if (w->state != Worker::State::kRemoving && !w->ready) return false;
  }
  return true;
}

std::vector<std::string> WorkerPool::notReady() const {
  std::vector<std::string> out;
  for (const auto& [name, w] : workers_) {
    if (w->state != Worker::State::kRemoving && !w->ready) out.push_back(name);
  }
  return out;
}

std::vector<pid_t> WorkerPool::pids() const {
  std::vector<pid_t> out;
  for (const auto& [name, w] : workers_) {
    if (w->pid > 0) out.push_back(w->pid);
  }
  return out;
}

void WorkerPool::publishInfo(Worker& w) {
  if (ClusterRecord* r = segment_.cluster(w.slot)) publishClusterInfo(*r, w.config_index, w.config.control);
}

bool WorkerPool::add(const ClusterConfig& cluster, uint32_t config_index, std::unique_ptr<ControlSocket> socket,
                     std::string& error) {
  if (find(cluster.name) != nullptr) {
    error = "cluster " + cluster.name + " is still being stopped; reload again in a moment";
    return false;
  }
  std::string why;
  const std::optional<ClusterSlot> slot = segment_.allocateCluster(cluster.name, cluster.tuning.session_table_size, why);
  if (!slot) {
    error = "cluster " + cluster.name + ": " + why;
    return false;
  }
  auto w = std::make_unique<Worker>();
  w->pool = this;
  w->config = cluster;
  w->config_index = config_index;
  w->socket = std::move(socket);
  w->slot = slot->index;
  w->backoff_ms = settings_.backoff_min_ms;
  w->restart_timer = event_new(
      base_, -1, 0, [](evutil_socket_t, short, void* arg) {
        auto* worker = static_cast<Worker*>(arg);
        worker->pool->onRestartTimer(*worker);
      },
      w.get());
  w->kill_timer = event_new(
      base_, -1, 0, [](evutil_socket_t, short, void* arg) {
        auto* worker = static_cast<Worker*>(arg);
        worker->pool->onKillTimer(*worker);
      },
      w.get());
  Worker& ref = *w;
  workers_.emplace(cluster.name, std::move(w));
  publishInfo(ref);
  if (ClusterRecord* r = segment_.cluster(ref.slot)) publishWorker(*r, 0, 0, 0);
  spdlog::info("CLUSTER_ADDED cluster={} slot={} control={} members={} table_kept={}", logName(cluster.name), ref.slot,
               cluster.control.uri(), cluster.members.size(), slot->table_kept);
  spawn(ref);
  return true;
}

void WorkerPool::spawn(Worker& w) {
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
    spdlog::error("WORKER_SPAWN_FAILED cluster={} error={}", logName(w.config.name),
                  logQuoted(std::string("socketpair: ") + std::strerror(errno)));
    w.state = Worker::State::kBackoff;
    const timeval delay = msToTimeval(w.backoff_ms);
    evtimer_add(w.restart_timer, &delay);
    return;
  }
  const int big = static_cast<int>(kMaxChannelMessageBytes);
  for (const int fd : sp) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  spdlog::default_logger()->flush();
  const pid_t pid = fork();
  if (pid == 0) runChild(w, sp[1]);
  close(sp[1]);
  if (pid < 0) {
    close(sp[0]);
    spdlog::error("WORKER_SPAWN_FAILED cluster={} error={}", logName(w.config.name),
                  logQuoted(std::string("fork: ") + std::strerror(errno)));
    w.state = Worker::State::kBackoff;
    const timeval delay = msToTimeval(w.backoff_ms);
    evtimer_add(w.restart_timer, &delay);
    return;
  }
  w.state = Worker::State::kRunning;
  w.pid = pid;
  w.ready = false;
  w.started = SteadyClock::now();
  w.channel = sp[0];
  fcntl(w.channel, F_SETFL, fcntl(w.channel, F_GETFL) | O_NONBLOCK);
  w.channel_event = event_new(
      base_, w.channel, EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void* arg) {
        auto* worker = static_cast<Worker*>(arg);
        worker->pool->onChannel(*worker);
      },
      &w);
  event_add(w.channel_event, nullptr);
  if (ClusterRecord* r = segment_.cluster(w.slot)) publishWorker(*r, pid, w.restarts, unixNowMs());
  spdlog::info("WORKER_STARTED cluster={} pid={} slot={} restarts={}", logName(w.config.name), pid, w.slot, w.restarts);
  flushQueue(w);
}

void WorkerPool::runChild(Worker& w, int channel_fd) {
  const pid_t parent = getppid();
  closeAllBut({STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, w.socket->fd(), channel_fd});
  WorkerProcessOptions options;
  options.config = withOverrides(w.config, w.status_override);
  options.control_fd = w.socket->fd();
  options.channel_fd = channel_fd;
  options.segment = &segment_;
  options.slot = w.slot;
  options.supervisor_pid = parent;
  options.log_file = settings_.log_file;
  _exit(runWorkerProcess(std::move(options)));
}

void WorkerPool::closeChannel(Worker& w) {
  if (w.channel_event != nullptr) {
    event_free(w.channel_event);
    w.channel_event = nullptr;
  }
  if (w.channel >= 0) close(w.channel);
  w.channel = -1;
}

void WorkerPool::reapChildren() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    Worker* w = findByPid(pid);
    if (w != nullptr) onExited(*w, status);
  }
}

void WorkerPool::onExited(Worker& w, int status) {
  const pid_t pid = w.pid;
  w.pid = 0;
  w.ready = false;
  closeChannel(w);
  evtimer_del(w.kill_timer);
  // A worker killed mid-write leaves odd sequences; nobody writes them now.
  const uint32_t recovered = segment_.recoverCluster(w.slot);
  const auto up_ms = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - w.started).count();
  failSent(w, "ERROR: cluster " + w.config.name + ": its worker exited before answering");

  if (w.state == Worker::State::kRemoving) {
    spdlog::info("WORKER_STOPPED cluster={} pid={} status={}", logName(w.config.name), pid, describeStatus(status));
    release(w);
    return;
  }
  if (w.state == Worker::State::kReconfiguring) {
    spdlog::info("WORKER_STOPPED cluster={} pid={} status={} reason=reconfigure", logName(w.config.name), pid,
                 describeStatus(status));
    startAfterStop(w);
    return;
  }
  if (stopping_) return;
  if (up_ms >= settings_.stable_after_ms) w.backoff_ms = settings_.backoff_min_ms;
  ++w.restarts;
  spdlog::warn("WORKER_EXITED cluster={} pid={} status={} restarts={} up_ms={} restart_in_ms={} recovered_records={}",
               logName(w.config.name), pid, describeStatus(status), w.restarts, up_ms, w.backoff_ms, recovered);
  if (ClusterRecord* r = segment_.cluster(w.slot)) publishWorker(*r, 0, w.restarts, 0);
  w.state = Worker::State::kBackoff;
  const timeval delay = msToTimeval(w.backoff_ms);
  evtimer_add(w.restart_timer, &delay);
  w.backoff_ms = std::min(settings_.backoff_max_ms, w.backoff_ms * 2);
}

void WorkerPool::onRestartTimer(Worker& w) {
  if (stopping_ || w.state != Worker::State::kBackoff) return;
  spawn(w);
}

void WorkerPool::onKillTimer(Worker& w) {
  if (w.pid <= 0) return;
  spdlog::warn("WORKER_KILL cluster={} pid={} reason=stop_timeout", logName(w.config.name), w.pid);
  ::kill(w.pid, SIGKILL);
}

void WorkerPool::terminate(Worker& w) {
  if (w.pid <= 0) return;
  ::kill(w.pid, SIGTERM);
  const timeval limit = msToTimeval(settings_.stop_timeout_ms);
  evtimer_add(w.kill_timer, &limit);
}

void WorkerPool::remove(std::string_view name) {
  Worker* w = find(name);
  if (w == nullptr || w->state == Worker::State::kRemoving) return;
  spdlog::info("CLUSTER_REMOVING cluster={} pid={}", logName(w->config.name), w->pid);
  evtimer_del(w->restart_timer);
  w->state = Worker::State::kRemoving;
  if (w->pid > 0) {
    terminate(*w);
  } else {
    release(*w);
  }
}

void WorkerPool::release(Worker& w) {
  const std::string name = w.config.name;
  while (!w.queued.empty()) {
    std::unique_ptr<Request> r = std::move(w.queued.front());
    w.queued.pop_front();
    if (r->answer) r->answer("ERROR: " + name + ": cluster not found");
  }
  if (w.socket) w.socket->close();
  segment_.freeCluster(w.slot);
  spdlog::info("CLUSTER_REMOVED cluster={} slot={}", logName(name), w.slot);
  workers_.erase(workers_.find(name));
}

void WorkerPool::reconfigure(const ClusterConfig& next, uint32_t config_index, std::unique_ptr<ControlSocket> socket) {
  Worker* w = find(next.name);
  if (w == nullptr) return;
  w->next = next;
  w->next_index = config_index;
  if (socket) w->next_socket = std::move(socket);
  if (w->state == Worker::State::kReconfiguring) return;  // the pending stop picks up the newest
  spdlog::info("CLUSTER_RESTARTING cluster={} pid={} reason=config_changed", logName(next.name), w->pid);
  evtimer_del(w->restart_timer);
  const bool running = w->pid > 0;
  w->state = Worker::State::kReconfiguring;
  if (running) {
    terminate(*w);
  } else {
    startAfterStop(*w);
  }
}

void WorkerPool::startAfterStop(Worker& w) {
  std::erase_if(w.status_override, [&](const auto& entry) {
    const MemberConfig* before = w.config.findMember(entry.first);
    const MemberConfig* after = w.next.findMember(entry.first);
    return before == nullptr || after == nullptr || !(*before == *after);
  });
  w.config = w.next;
  w.config_index = w.next_index;
  if (w.next_socket) {
    w.socket->close();
    w.socket = std::move(w.next_socket);
  }
  std::string why;
  const std::optional<ClusterSlot> slot = segment_.allocateCluster(w.config.name, w.config.tuning.session_table_size, why);
  if (!slot) {
    // The old block is kept by the slot; the worker runs with what it has.
    spdlog::error("CLUSTER_TABLE_RESIZE_FAILED cluster={} error={}", logName(w.config.name), logQuoted(why));
  } else {
    w.slot = slot->index;
    spdlog::info("CLUSTER_RECONFIGURED cluster={} slot={} table_kept={}", logName(w.config.name), w.slot, slot->table_kept);
  }
  publishInfo(w);
  w.backoff_ms = settings_.backoff_min_ms;
  if (stopping_) return;
  spawn(w);
}

void WorkerPool::setConfigIndex(std::string_view name, uint32_t config_index) {
  Worker* w = find(name);
  if (w == nullptr || w->state == Worker::State::kRemoving) return;
  if (w->state == Worker::State::kReconfiguring) {
    w->next_index = config_index;
    return;
  }
  w->config_index = config_index;
  publishInfo(*w);
}

// --- requests ---

void WorkerPool::send(Worker& w, std::unique_ptr<Request> r) {
  r->pool = this;
  r->cluster = w.config.name;
  r->id = next_request_id_++;
  r->timer = event_new(
      base_, -1, 0,
      [](evutil_socket_t, short, void* arg) {
        auto* request = static_cast<Request*>(arg);
        request->pool->onRequestTimeout(*request);
      },
      r.get());
  const timeval limit = msToTimeval(settings_.request_timeout_ms);
  evtimer_add(r->timer, &limit);
  w.queued.push_back(std::move(r));
  flushQueue(w);
}

void WorkerPool::flushQueue(Worker& w) {
  if (w.channel < 0 || w.state != Worker::State::kRunning) return;
  while (!w.queued.empty()) {
    std::unique_ptr<Request>& r = w.queued.front();
    const std::string message = std::to_string(r->id) + " " + r->body;
    if (::send(w.channel, message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // the timeout answers it
      spdlog::warn("WORKER_REQUEST_FAILED cluster={} error={}", logName(w.config.name), logQuoted(std::strerror(errno)));
      return;  // the worker is going away; its exit or the timeout answers
    }
    const uint64_t id = r->id;
    w.sent.emplace(id, std::move(r));
    w.queued.pop_front();
  }
}

void WorkerPool::onChannel(Worker& w) {
  char buf[4096];
  while (w.channel >= 0) {
    const ssize_t n = recv(w.channel, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      closeChannel(w);
      return;
    }
    if (n == 0) {
      // The worker is exiting; SIGCHLD does the rest.
      closeChannel(w);
      return;
    }
    const std::optional<ChannelMessage> message = parseChannelMessage(std::string_view(buf, static_cast<size_t>(n)));
    if (!message) {
      spdlog::warn("WORKER_BAD_ANSWER cluster={} bytes={}", logName(w.config.name), n);
      continue;
    }
    if (message->id == 0) {
      // Unsolicited: the worker serves its control socket.
      if (std::string_view(buf, static_cast<size_t>(n)) == kWorkerReadyMessage && !w.ready) {
        w.ready = true;
        if (settings_.on_worker_ready) settings_.on_worker_ready();
      }
      continue;
    }
    const auto it = w.sent.find(message->id);
    if (it == w.sent.end()) continue;
    std::unique_ptr<Request> r = std::move(it->second);
    w.sent.erase(it);
    const std::string answer(message->body);
    const bool ok = answer == "OK";
    if (ok && r->on_ok) r->on_ok(w);
    if (!ok && r->on_error) r->on_error(w);
    if (r->answer) r->answer(answer);
  }
}

void WorkerPool::onRequestTimeout(Request& r) {
  Worker* w = find(r.cluster);
  const std::string text = "ERROR: cluster " + r.cluster + ": its worker did not answer within " +
                           std::to_string(settings_.request_timeout_ms) + " ms";
  Answer answer = std::move(r.answer);
  r.answer = nullptr;
  if (w != nullptr) {
    // Not sent yet: it never will be. Sent: a late OK still updates the
    // effective config (the worker did apply it).
    const auto q = std::find_if(w->queued.begin(), w->queued.end(),
                                [&r](const std::unique_ptr<Request>& p) { return p.get() == &r; });
    if (q != w->queued.end()) {
      std::unique_ptr<Request> owned = std::move(*q);
      w->queued.erase(q);
      if (owned->on_error) owned->on_error(*w);
      if (answer) answer(text);
      return;  // `r` is destroyed with `owned`
    }
    if (r.on_error) {
      auto on_error = std::move(r.on_error);
      r.on_error = nullptr;
      on_error(*w);
    }
  }
  if (answer) answer(text);
}

void WorkerPool::failSent(Worker& w, const std::string& why) {
  auto sent = std::move(w.sent);
  w.sent.clear();
  for (auto& [id, r] : sent) {
    if (r->answer) r->answer(why);
  }
}

void WorkerPool::modify(const AdminCommand& command, std::string line, Answer answer) {
  Worker* w = find(command.cluster);
  if (w == nullptr || w->state == Worker::State::kRemoving) {
    answer("ERROR: " + nameForMessage(command.cluster) + ": cluster not found");
    return;
  }
  auto r = std::make_unique<Request>();
  r->body = std::move(line);
  r->answer = std::move(answer);
  const AdminAction action = command.action;
  const MemberConfig member = command.new_member;
  const std::string name = command.member;
  r->on_ok = [action, member, name](Worker& worker) {
    std::vector<MemberConfig>& members = worker.config.members;
    switch (action) {
      case AdminAction::kAddMember:
        members.push_back(member);
        worker.status_override.erase(member.name);
        break;
      case AdminAction::kDeleteMember:
        std::erase_if(members, [&name](const MemberConfig& m) { return m.name == name; });
        worker.status_override.erase(name);
        break;
      case AdminAction::kSuspendMember:
        worker.status_override[name] = AdminStatus::kSuspended;
        break;
      case AdminAction::kResumeMember:
        worker.status_override[name] = AdminStatus::kActive;
        break;
      default:
        break;
    }
  };
  send(*w, std::move(r));
}

void WorkerPool::apply(const ClusterConfig& next, Answer answer) {
  Worker* w = find(next.name);
  if (w == nullptr || w->state == Worker::State::kRemoving) {
    answer("ERROR: " + next.name + ": cluster not found");
    return;
  }
  std::erase_if(w->status_override, [&](const auto& entry) {
    const MemberConfig* before = w->config.findMember(entry.first);
    const MemberConfig* after = next.findMember(entry.first);
    return before == nullptr || after == nullptr || !(*before == *after);
  });
  w->config.members = next.members;
  auto r = std::make_unique<Request>();
  // What the worker runs: the new set with the run-time statuses kept.
  r->body = applyRequestBody(withOverrides(next, w->status_override));
  r->answer = std::move(answer);
  // A worker that could not take the new set starts again from it.
  r->on_error = [this](Worker& worker) {
    if (worker.state != Worker::State::kRunning || worker.pid <= 0) return;
    spdlog::warn("WORKER_APPLY_FAILED cluster={} pid={} action=restart", logName(worker.config.name), worker.pid);
    reconfigure(worker.config, worker.config_index, nullptr);
  };
  send(*w, std::move(r));
}

void WorkerPool::signalAll(int sig) {
  for (const auto& [name, w] : workers_) {
    if (w->pid > 0) ::kill(w->pid, sig);
  }
}

void WorkerPool::stopAll() {
  if (stopping_ && workers_.empty()) return;
  stopping_ = true;
  std::vector<pid_t> waiting;
  for (const auto& [name, w] : workers_) {
    evtimer_del(w->restart_timer);
    evtimer_del(w->kill_timer);
    if (w->pid > 0) {
      ::kill(w->pid, SIGTERM);
      waiting.push_back(w->pid);
    }
  }
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(settings_.stop_timeout_ms);
  bool killed = false;
  while (!waiting.empty()) {
    std::erase_if(waiting, [this](pid_t pid) {
      int status = 0;
      const pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == 0) return false;
      if (Worker* w = findByPid(pid)) {
        spdlog::info("WORKER_STOPPED cluster={} pid={} status={}", logName(w->config.name), pid, describeStatus(status));
        w->pid = 0;
      }
      return true;
    });
    if (waiting.empty()) break;
    if (!killed && SteadyClock::now() >= deadline) {
      for (const pid_t pid : waiting) {
        spdlog::warn("WORKER_KILL pid={} reason=stop_timeout", pid);
        ::kill(pid, SIGKILL);
      }
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (const auto& [name, w] : workers_) {
    for (auto& [id, r] : w->sent) {
      if (r->answer) r->answer("ERROR: shutting down");
    }
    w->sent.clear();
    for (auto& r : w->queued) {
      if (r->answer) r->answer("ERROR: shutting down");
    }
    w->queued.clear();
    closeChannel(*w);
    if (w->socket) w->socket->close();
    if (w->next_socket) w->next_socket->close();
  }
  workers_.clear();
}

}  // namespace rtpc
