// rtp_cluster_worker: runs ONE cluster's worker in the foreground, without
// the supervisor. For tests, benchmarks and debugging; production runs the
// workers under `rtp_cluster`, which forks them.
//
//   rtp_cluster_worker -c FILE [-n CLUSTER] [--log-level LEVEL]

#include <event2/event.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "shared/config_loader.h"
#include "shared/log_setup.h"
#include "worker/cluster_worker.h"

namespace {

int usage(const char* error) {
  if (error != nullptr) std::fprintf(stderr, "rtp_cluster_worker: %s\n", error);
  std::fprintf(stderr,
               "usage: rtp_cluster_worker -c FILE [-n CLUSTER] [--log-level LEVEL]\n"
               "Runs one cluster of FILE (the first unless -n) in the foreground.\n");
  return error == nullptr ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string cluster_name;
  std::string level = "info";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* what) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)what;
      return argv[++i];
    };
    if (a == "-c" || a == "--config") {
      const char* v = value("-c");
      if (v == nullptr) return usage("-c needs a file");
      config_path = v;
    } else if (a == "-n" || a == "--cluster") {
      const char* v = value("-n");
      if (v == nullptr) return usage("-n needs a cluster name");
      cluster_name = v;
    } else if (a == "--log-level") {
      const char* v = value("--log-level");
      if (v == nullptr) return usage("--log-level needs a level");
      level = v;
    } else if (a == "-h" || a == "--help") {
      return usage(nullptr);
    } else {
      return usage(("unknown argument: " + a).c_str());
    }
  }
  if (config_path.empty()) return usage("-c FILE is required");
  // The daemon's log format on stderr (stdout carries LISTENING), with the
  // journal's priority prefix when run as a systemd service.
  rtpc::setUpLogging(spdlog::level::from_str(level), rtpc::stderrIsJournal());

  rtpc::LoadResult loaded = rtpc::loadConfigFile(config_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.error.c_str());
    return 1;
  }
  const rtpc::ClusterConfig* cluster =
      cluster_name.empty() ? &loaded.config->clusters.front() : loaded.config->findCluster(cluster_name);
  if (cluster == nullptr) {
    std::fprintf(stderr, "rtp_cluster_worker: %s: cluster not found\n", cluster_name.c_str());
    return 1;
  }

  std::signal(SIGPIPE, SIG_IGN);
  event_base* base = event_base_new();
  rtpc::ClusterWorker::Options options;
  options.config = *cluster;
  std::string error;
  auto worker = rtpc::ClusterWorker::create(base, options, error);
  if (!worker) {
    std::fprintf(stderr, "rtp_cluster_worker: cluster %s: %s\n", cluster->name.c_str(), error.c_str());
    return 1;
  }
  auto on_signal = [](evutil_socket_t, short, void* arg) {
    event_base_loopexit(static_cast<event_base*>(arg), nullptr);
  };
  event* term = evsignal_new(base, SIGTERM, on_signal, base);
  event* intr = evsignal_new(base, SIGINT, on_signal, base);
  evsignal_add(term, nullptr);
  evsignal_add(intr, nullptr);
  std::printf("LISTENING %s\n", worker->listener().address().uri().c_str());
  std::fflush(stdout);
  event_base_dispatch(base);
  spdlog::info("WORKER_STOP cluster={}", cluster->name);
  worker.reset();
  event_free(term);
  event_free(intr);
  event_base_free(base);
  return 0;
}
