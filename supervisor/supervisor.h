#pragma once
// Supervisor: the rtp_cluster daemon's main loop. Owns the shared-memory
// segment, the admin server and the worker pool; turns signals (taken
// through a signalfd on the loop, so no handler runs at an arbitrary point)
// into actions: SIGCHLD reaps and restarts workers, SIGHUP reloads, SIGUSR1
// reopens the log (and tells the workers to), SIGTERM/SIGINT stop.
//
// Admin commands: `ls`/`workers` are answered from a shared-memory snapshot
// without asking any worker (a stuck worker cannot stall them); `modify` is
// forwarded to the owning worker and its answer relayed (within 1 s, or an
// ERROR); `reload` re-reads the file: a file that fails validation changes
// nothing and its error is the answer, otherwise the clusters are diffed
// (supervisor/reload_plan.h) and the answer is `Loaded N clusters and M RTP
// proxies` once every worker took its new member set.

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "shared/config.h"
#include "supervisor/admin_server.h"
#include "supervisor/control_socket.h"
#include "supervisor/options.h"

namespace rtpc {

class MetricsServer;
class ShmSegment;
class WorkerPool;

struct SupervisorSettings {
  Options options;  // paths absolute
  SocketOwner owner;
  std::string shm_name;
  bool log_to_file = false;  // stderr is the log file (daemon mode): SIGUSR1 reopens it
};

class Supervisor : public AdminServer::Handler {
 public:
  // Creates the segment, binds the admin socket and every cluster's control
  // socket, then forks the workers. nullptr with one error line on failure
  // (whatever was created is removed again).
  static std::unique_ptr<Supervisor> create(SupervisorSettings settings, Config config, std::string& error);
  // Stops the workers, removes the sockets and the segment.
  ~Supervisor() override;
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Runs until SIGTERM/SIGINT; returns the exit code.
  int run();

  // AdminServer::Handler
  void onAdminLine(uint64_t connection, std::string_view line) override;

  // Re-reads the config file; `done` gets the complete admin answer.
  void reload(std::function<void(const std::string&)> done);

 private:
  Supervisor(SupervisorSettings settings, Config config);
  bool start(std::string& error);
  void onSignal();
  void shutdown();
  void checkServing();
  void onServingDeadline();
  void reportServing();
  void repairSegment();
  static constexpr uint32_t kRepairIntervalMs = 1000;

  // How long READY=1 waits for every worker to report that it serves.
  static constexpr uint32_t kServingWaitMs = 10000;

  SupervisorSettings settings_;
  Config config_;  // as last loaded
  event_base* base_ = nullptr;
  std::unique_ptr<ShmSegment> segment_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<MetricsServer> metrics_;  // only with <metrics> in the config
  std::unique_ptr<WorkerPool> pool_;
  int signal_fd_ = -1;
  event* signal_event_ = nullptr;
  bool ready_ = false;  // start() succeeded
  bool serving_ = false;  // READY reported (every worker serves, or the wait ran out)
  event* serving_timer_ = nullptr;
  event* repair_timer_ = nullptr;
  std::chrono::steady_clock::time_point started_;
  bool reloading_ = false;
  bool shut_down_ = false;
};

}  // namespace rtpc
