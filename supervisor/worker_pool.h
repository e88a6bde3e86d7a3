#pragma once
// WorkerPool: one worker process per cluster, forked by the supervisor.
//
// The pool owns each cluster's control socket (bound before the first fork
// and kept across restarts: datagrams wait in the socket buffer while a
// worker restarts, stream clients are never refused), its shared-memory slot
// and the supervisor's end of the worker's socketpair. A worker that dies is
// reaped (the supervisor forwards SIGCHLD), its seqlocks recovered, and it is
// restarted after a backoff (min, doubling up to max, back to min once a
// worker stayed up `stable_after_ms`); the other clusters never notice.
//
// Requests to a worker (admin changes, member sets) are answered within
// request_timeout_ms whatever the worker does: a worker that is down,
// restarting or stuck gives "ERROR: ...". Each cluster's effective config
// (the file's, plus the admin changes that succeeded) is what a restarted
// worker starts from, so `modify` survives a worker crash.

#include <event2/event.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shared/admin_command.h"
#include "shared/config.h"
#include "supervisor/control_socket.h"

namespace rtpc {

class ShmSegment;

struct WorkerPoolSettings {
  SocketOwner owner;
  std::string log_file;  // workers reopen it on SIGUSR1; empty = foreground
  uint32_t backoff_min_ms = 100;
  uint32_t backoff_max_ms = 5000;
  uint32_t stable_after_ms = 30000;
  uint32_t request_timeout_ms = 1000;
  uint32_t stop_timeout_ms = 3000;  // SIGKILL when SIGTERM did not end a worker
  // Called whenever a worker reports that it serves (kWorkerReadyMessage).
  std::function<void()> on_worker_ready;
};

class WorkerPool {
 public:
  // "OK" or "ERROR: ..." (no newline).
  using Answer = std::function<void(const std::string& answer)>;

  WorkerPool(event_base* base, ShmSegment& segment, WorkerPoolSettings settings);
  ~WorkerPool();  // stopAll()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Binds a cluster's control socket (before it is handed to add/reconfigure).
  std::unique_ptr<ControlSocket> bindControl(const ClusterConfig& cluster, std::string& error) const;

  // Gives the cluster a slot and forks its worker. false (nothing changed)
  // when no slot or table block can be had.
  bool add(const ClusterConfig& cluster, uint32_t config_index, std::unique_ptr<ControlSocket> socket,
           std::string& error);
  // Stops the worker (SIGTERM, SIGKILL after stop_timeout_ms); once it is
  // reaped the slot is freed and the socket closed (unix file removed).
  void remove(std::string_view name);
  // Restarts the worker with `next` (a new control socket when given).
  void reconfigure(const ClusterConfig& next, uint32_t config_index, std::unique_ptr<ControlSocket> socket);
  // Pushes a new member set; the effective config takes it at once, so a
  // worker that fails to apply it is restarted with it.
  void apply(const ClusterConfig& next, Answer answer);
  // Forwards an admin line (modify add/delete/pause/resume of `command`).
  void modify(const AdminCommand& command, std::string line, Answer answer);
  void setConfigIndex(std::string_view name, uint32_t config_index);

  // The supervisor's SIGCHLD: reaps every exited child.
  void reapChildren();
  // SIGUSR1 for every worker.
  void signalAll(int sig);
  // Shutdown: SIGTERM to every worker, waits (SIGKILL after stop_timeout_ms),
  // closes the sockets. Blocking; the loop is no longer running.
  void stopAll();

  bool has(std::string_view name) const;
  // The running clusters with their effective configs, in config order.
  Config effectiveConfig() const;
  size_t size() const { return workers_.size(); }
  // True when every cluster's current worker has reported that it serves.
  bool allReady() const;
  // The clusters whose worker has not (yet) reported ready.
  std::vector<std::string> notReady() const;
  // Pids of running workers (tests, logs).
  std::vector<pid_t> pids() const;

  struct Worker;
  struct Request;

 private:
  Worker* find(std::string_view name) const;
  Worker* findByPid(pid_t pid) const;
  void spawn(Worker& w);
  [[noreturn]] void runChild(Worker& w, int channel_fd);
  void onExited(Worker& w, int status);
  void onChannel(Worker& w);
  void onRestartTimer(Worker& w);
  void onKillTimer(Worker& w);
  void onRequestTimeout(Request& r);
  void terminate(Worker& w);
  void startAfterStop(Worker& w);
  void release(Worker& w);
  void send(Worker& w, std::unique_ptr<Request> request);
  void flushQueue(Worker& w);
  void failSent(Worker& w, const std::string& why);
  void closeChannel(Worker& w);
  void publishInfo(Worker& w);

  event_base* base_;
  ShmSegment& segment_;
  WorkerPoolSettings settings_;
  std::map<std::string, std::unique_ptr<Worker>, std::less<>> workers_;
  uint64_t next_request_id_ = 1;
  bool stopping_ = false;
};

}  // namespace rtpc
