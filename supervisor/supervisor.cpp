#include <algorithm>
#include "supervisor/supervisor.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>

#include "shared/admin_command.h"
#include "shared/admin_render.h"
#include "shared/config_loader.h"
#include "shared/log_quote.h"
#include "shared/metrics_render.h"
#include "shared/shm_segment.h"
#include "shared/signal_fd.h"
#include "shared/time_util.h"
#include "supervisor/daemon.h"
#include "supervisor/metrics_server.h"
#include "supervisor/reload_plan.h"
#include "supervisor/worker_pool.h"

namespace rtpc {
namespace {

sigset_t supervisorSignals() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD}) sigaddset(&mask, sig);
  return mask;
}

std::string loadedLine(const Config& config) {
  return "Loaded " + std::to_string(config.clusters.size()) + " clusters and " +
         std::to_string(config.memberCount()) + " RTP proxies\n";
}

}  // namespace

Supervisor::Supervisor(SupervisorSettings settings, Config config)
    : settings_(std::move(settings)), config_(std::move(config)) {}

std::unique_ptr<Supervisor> Supervisor::create(SupervisorSettings settings, Config config, std::string& error) {
  std::unique_ptr<Supervisor> s(new Supervisor(std::move(settings), std::move(config)));
  if (!s->start(error)) return nullptr;
  return s;
}

bool Supervisor::start(std::string& error) {
  signal(SIGPIPE, SIG_IGN);
  // Blocked before the first fork: workers inherit the mask and take these
  // through their own signalfd.
  signal_fd_ = openSignalFd(supervisorSignals(), SIG_BLOCK, error);
  if (signal_fd_ < 0) return false;
  base_ = event_base_new();
  if (base_ == nullptr) {
    error = "event_base_new failed";
    return false;
  }
  signal_event_ = event_new(
      base_, signal_fd_, EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { static_cast<Supervisor*>(arg)->onSignal(); }, this);
  event_add(signal_event_, nullptr);

  segment_ = ShmSegment::create(settings_.shm_name, SegmentPlan::forConfig(config_), error);
  if (!segment_) {
    error = "shared memory " + settings_.shm_name + ": " + error;
    return false;
  }
  admin_ = AdminServer::create(base_, settings_.options.admin_address, settings_.owner, this, error);
  if (!admin_) return false;
  if (config_.metrics_address) {
    metrics_ = MetricsServer::create(
        base_, *config_.metrics_address,
        [this] {
          repairSegment();
          return renderPrometheus(takeSnapshot(*segment_));
        },
        error);
    if (!metrics_) return false;
    spdlog::info("METRICS_LISTENING address={}", metrics_->address().uri());
  }

  WorkerPoolSettings ps;
  ps.owner = settings_.owner;
  ps.log_file = settings_.log_to_file ? settings_.options.log_file : std::string();
  ps.backoff_min_ms = settings_.options.restart_backoff_min_ms;
  ps.backoff_max_ms = settings_.options.restart_backoff_max_ms;
  ps.on_worker_ready = [this] { checkServing(); };
  pool_ = std::make_unique<WorkerPool>(base_, *segment_, ps);

  // Every socket first: a cluster whose address cannot be bound stops the
  // start before any worker runs.
  std::vector<std::unique_ptr<ControlSocket>> sockets;
  for (const ClusterConfig& c : config_.clusters) {
    sockets.push_back(pool_->bindControl(c, error));
    if (!sockets.back()) return false;
  }
  for (size_t i = 0; i < config_.clusters.size(); ++i) {
    if (!pool_->add(config_.clusters[i], static_cast<uint32_t>(i), std::move(sockets[i]), error)) return false;
  }
  ready_ = true;
  started_ = std::chrono::steady_clock::now();
  // The segment is rebuilt from the supervisor's private copy whenever
  // something scribbled on it (the copy is what every offset comes from).
  repair_timer_ = event_new(
      base_, -1, EV_PERSIST, [](evutil_socket_t, short, void* arg) { static_cast<Supervisor*>(arg)->repairSegment(); },
      this);
  const timeval every = msToTimeval(kRepairIntervalMs);
  if (repair_timer_ != nullptr) event_add(repair_timer_, &every);
  serving_timer_ = event_new(
      base_, -1, 0, [](evutil_socket_t, short, void* arg) { static_cast<Supervisor*>(arg)->onServingDeadline(); },
      this);
  const timeval limit = msToTimeval(kServingWaitMs);
  if (serving_timer_ != nullptr) event_add(serving_timer_, &limit);
  return true;
}

// READY=1 (and the waiting parent, and `READY pid=` with -f) only once every
// worker said it serves its control socket: a client that starts after us
// (systemd After=) must find every cluster answering, not a socket whose
// worker is still setting up.
void Supervisor::checkServing() {
  if (serving_ || !ready_ || !pool_->allReady()) return;
  reportServing();
}

void Supervisor::onServingDeadline() {
  if (serving_) return;
  // A worker that cannot start is restarted with backoff for ever; the other
  // clusters serve, so the daemon says it runs rather than hang its start.
  std::string names;
  for (const std::string& name : pool_->notReady()) names += (names.empty() ? "" : ",") + name;
  spdlog::warn("STARTUP_WORKERS_NOT_READY clusters={} waited_ms={}", logQuoted(names), kServingWaitMs);
  reportServing();
}

void Supervisor::repairSegment() {
  const std::string repaired = segment_->repair();
  if (!repaired.empty()) {
    spdlog::error("SHM_SEGMENT_REPAIRED shm={} rewritten={}", settings_.shm_name, logQuoted(repaired));
  }
}

void Supervisor::reportServing() {
  serving_ = true;
  if (serving_timer_ != nullptr) event_del(serving_timer_);
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
  spdlog::info("SUPERVISOR_READY pid={} config={} clusters={} members={} admin={} shm={} workers_ready_ms={}", getpid(),
               settings_.options.config_file, config_.clusters.size(), config_.memberCount(),
               settings_.options.admin_address.uri(), settings_.shm_name, waited.count());
  Daemon::reportReady();
  // With -f: the line scripts and tests wait for (docs/operation.md).
  if (settings_.options.foreground) std::cout << "READY pid=" << getpid() << std::endl;
}

Supervisor::~Supervisor() { shutdown(); }

void Supervisor::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  Daemon::notify("STOPPING=1");
  for (event** e : {&serving_timer_, &repair_timer_}) {
    if (*e != nullptr) event_free(*e);
    *e = nullptr;
  }
  if (pool_) pool_->stopAll();
  pool_.reset();
  metrics_.reset();
  admin_.reset();
  segment_.reset();  // the creator removes the segment
  if (signal_event_ != nullptr) event_free(signal_event_);
  signal_event_ = nullptr;
  if (signal_fd_ >= 0) close(signal_fd_);
  signal_fd_ = -1;
  if (base_ != nullptr) event_base_free(base_);
  base_ = nullptr;
  // A start that failed is reported once, by STARTUP_FAILED: it never ran.
  if (ready_) spdlog::info("SUPERVISOR_STOPPED pid={}", getpid());
}

int Supervisor::run() {
  checkServing();  // no clusters: nothing to wait for
  event_base_dispatch(base_);
  return 0;
}

void Supervisor::onSignal() {
  signalfd_siginfo info;
  bool reap = false;
  while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    switch (info.ssi_signo) {
      case SIGCHLD:
        reap = true;
        break;
      case SIGHUP:
        spdlog::info("SIGNAL_RECEIVED signal=HUP action=reload");
        reload([](const std::string& answer) {
          std::string text = answer;
          while (!text.empty() && text.back() == '\n') text.pop_back();
          for (char& ch : text) {
            if (ch == '\n') ch = ' ';
          }
          spdlog::info("RELOAD_RESULT source=SIGHUP answer={}", logQuoted(text));
        });
        break;
      case SIGUSR1: {
        if (!settings_.log_to_file) {
          // -f: stderr is the terminal or the journal, -L is unused; the
          // workers have no file either.
          spdlog::debug("LOG_REOPEN_SKIPPED reason=foreground");
          break;
        }
        std::string error;
        if (Daemon::reopenLog(settings_.options.log_file, error)) {
          spdlog::info("LOG_REOPENED file={}", settings_.options.log_file);
        } else {
          spdlog::error("LOG_REOPEN_FAILED file={} error={}", settings_.options.log_file, logQuoted(error));
        }
        // Each worker reopens on its own and reports its own failure.
        pool_->signalAll(SIGUSR1);
        break;
      }
      case SIGTERM:
      case SIGINT:
        spdlog::info("SIGNAL_RECEIVED signal={} action=stop", info.ssi_signo == SIGTERM ? "TERM" : "INT");
        event_base_loopexit(base_, nullptr);
        break;
      default:
        break;
    }
  }
  if (reap) pool_->reapChildren();
}

void Supervisor::onAdminLine(uint64_t connection, std::string_view line) {
  AdminParseResult parsed = parseAdminLine(line);
  if (const auto* e = std::get_if<AdminError>(&parsed)) {
    admin_->answer(connection, e->answer);
    return;
  }
  const AdminCommand& command = std::get<AdminCommand>(parsed);
  const bool json = command.format == AdminFormat::kJson;
  switch (command.action) {
    case AdminAction::kListClusters: {
      repairSegment();
      const StatusSnapshot snapshot = takeSnapshot(*segment_);
      admin_->answer(connection, json ? renderClusterListJson(snapshot) : renderClusterList(snapshot));
      return;
    }
    case AdminAction::kListMembers: {
      repairSegment();
      const StatusSnapshot snapshot = takeSnapshot(*segment_);
      if (!command.error_unless_found.empty() &&
          std::none_of(snapshot.clusters.begin(), snapshot.clusters.end(),
                       [&](const ClusterSnapshot& c) { return c.name == command.cluster; })) {
        admin_->answer(connection, command.error_unless_found);
        return;
      }
      admin_->answer(connection, json ? renderClusterMembersJson(snapshot, command.cluster)
                                      : renderClusterMembers(snapshot, command.cluster));
      return;
    }
    case AdminAction::kListWorkers: {
      repairSegment();
      const StatusSnapshot snapshot = takeSnapshot(*segment_);
      admin_->answer(connection, json ? renderWorkersJson(snapshot) : renderWorkers(snapshot));
      return;
    }
    case AdminAction::kAddMember:
    case AdminAction::kDeleteMember:
    case AdminAction::kSuspendMember:
    case AdminAction::kResumeMember: {
      spdlog::info("ADMIN_COMMAND command={}", logQuoted(line));
      AdminServer* admin = admin_.get();
      pool_->modify(command, std::string(line), [admin, connection](const std::string& answer) {
        admin->answer(connection, answer == "OK" ? std::string("OK\n") : answer + "\n");
      });
      return;
    }
    case AdminAction::kReload: {
      spdlog::info("ADMIN_COMMAND command=reload");
      AdminServer* admin = admin_.get();
      reload([admin, connection](const std::string& answer) { admin->answer(connection, answer); });
      return;
    }
    case AdminAction::kHelp:
      admin_->answer(connection, helpText());
      return;
    case AdminAction::kQuit:
      admin_->answer(connection, "", /*close_after=*/true);
      return;
  }
  admin_->answer(connection, "ERROR: unknown command\n");
}

void Supervisor::reload(std::function<void(const std::string&)> done) {
  if (reloading_) {
    done("ERROR: a reload is already in progress\n");
    return;
  }
  Daemon::notify("RELOADING=1");
  LoadResult loaded = loadConfigFile(settings_.options.config_file);
  if (!loaded.ok()) {
    spdlog::error("RELOAD_FAILED error={}", logQuoted(loaded.error));
    Daemon::notify("READY=1");
    done("ERROR: " + loaded.error + "\n");
    return;
  }
  const Config& next = *loaded.config;
  const Config running = pool_->effectiveConfig();
  const ReloadPlan plan = planReload(running, next);

  // Prepare everything that can fail before changing anything.
  std::map<std::string, std::unique_ptr<ControlSocket>> sockets;
  std::string error;
  const auto inUseBy = [&running](const ClusterConfig& c) -> const ClusterConfig* {
    for (const ClusterConfig& r : running.clusters) {
      if (r.name != c.name && r.control == c.control) return &r;
    }
    return nullptr;
  };
  std::vector<std::string> need_socket = plan.added;
  for (const std::string& name : plan.restarted) {
    if (!(running.findCluster(name)->control == next.findCluster(name)->control)) need_socket.push_back(name);
  }
  if (pool_->size() + plan.added.size() > segment_->clusterSlots()) {
    error = "too many clusters: " + std::to_string(pool_->size() + plan.added.size()) + " > " +
            std::to_string(segment_->clusterSlots()) + " slots";
  }
  for (const std::string& name : need_socket) {
    if (!error.empty()) break;
    const ClusterConfig& c = *next.findCluster(name);
    if (const ClusterConfig* other = inUseBy(c)) {
      error = "cluster " + name + ": control address " + c.control.uri() + " is in use by cluster " + other->name +
              " (move or remove that one first)";
      break;
    }
    std::unique_ptr<ControlSocket> s = pool_->bindControl(c, error);
    if (!s) break;
    sockets.emplace(name, std::move(s));
  }
  if (!error.empty()) {
    spdlog::error("RELOAD_FAILED error={}", logQuoted(error));
    Daemon::notify("READY=1");
    done("ERROR: " + error + "\n");  // the sockets bound so far close with `sockets`
    return;
  }

  spdlog::info("RELOAD config={} added={} removed={} restarted={} members_changed={} unchanged={}",
               settings_.options.config_file, plan.added.size(), plan.removed.size(), plan.restarted.size(),
               plan.members_changed.size(), plan.unchanged.size());
  for (const std::string& name : plan.removed) pool_->remove(name);
  std::string failures;
  for (size_t i = 0; i < next.clusters.size(); ++i) {
    const ClusterConfig& c = next.clusters[i];
    const auto index = static_cast<uint32_t>(i);
    const auto s = sockets.find(c.name);
    std::unique_ptr<ControlSocket> socket = s == sockets.end() ? nullptr : std::move(s->second);
    if (std::find(plan.added.begin(), plan.added.end(), c.name) != plan.added.end()) {
      std::string why;
      if (!pool_->add(c, index, std::move(socket), why)) {
        spdlog::error("RELOAD_CLUSTER_FAILED cluster={} error={}", logName(c.name), logQuoted(why));
        failures += failures.empty() ? why : "; " + why;
      }
    } else if (std::find(plan.restarted.begin(), plan.restarted.end(), c.name) != plan.restarted.end()) {
      pool_->reconfigure(c, index, std::move(socket));
    } else {
      pool_->setConfigIndex(c.name, index);
    }
  }
  if (next.metrics_address != config_.metrics_address) {
    // The endpoint is bound once at start: rebinding here could lose it on a
    // failed bind while the reload itself succeeds.
    spdlog::warn("METRICS_RESTART_REQUIRED running={} configured={}",
                 metrics_ ? metrics_->address().uri() : std::string("off"),
                 next.metrics_address ? next.metrics_address->uri() : std::string("off"));
  }
  std::optional<SocketAddress> metrics_address = config_.metrics_address;
  config_ = next;
  config_.metrics_address = std::move(metrics_address);  // what runs, so each reload repeats the warning

  // The answer waits for every member set to be taken (or to fail: the pool
  // then restarts that worker with the new set).
  struct Pending {
    size_t left = 0;
    std::string answer;
    std::function<void(const std::string&)> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->answer = failures.empty() ? loadedLine(next) + "OK\n" : "ERROR: " + failures + "\n";
  pending->done = std::move(done);
  pending->left = plan.members_changed.size() + 1;
  reloading_ = true;
  const auto finishOne = [this, pending]() {
    if (--pending->left != 0) return;
    reloading_ = false;
    Daemon::notify("READY=1");
    pending->done(pending->answer);
  };
  for (const std::string& name : plan.members_changed) {
    pool_->apply(*next.findCluster(name), [finishOne, name](const std::string& answer) {
      if (answer != "OK") spdlog::warn("RELOAD_APPLY_FAILED cluster={} answer={}", logName(name), logQuoted(answer));
      finishOne();
    });
  }
  finishOne();
}

}  // namespace rtpc
