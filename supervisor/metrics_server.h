#pragma once
// MetricsServer: the Prometheus endpoint (docs/metrics.md). libevent's evhttp
// on the supervisor's loop: GET or HEAD /metrics answers 200 with the text
// the render callback returns (a fresh shared-memory snapshot per scrape, so
// a stuck worker cannot stall it); any other path is 404, other methods 501
// (evhttp's own answer). Meant for loopback or a management network: there
// is no authentication and evhttp (2.1) cannot cap connections, only time
// idle ones out and bound request sizes.

#include <event2/event.h>

#include <functional>
#include <memory>
#include <string>

#include "shared/address.h"

struct evhttp;
struct evhttp_request;

namespace rtpc {

class MetricsServer {
 public:
  using Render = std::function<std::string()>;

  // `address` is tcp or tcp6; port 0 binds a free port (see address()).
  // nullptr with one error line when it cannot be bound.
  static std::unique_ptr<MetricsServer> create(event_base* base, const SocketAddress& address, Render render,
                                               std::string& error);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // As configured, with the port actually bound.
  const SocketAddress& address() const { return address_; }

 private:
  MetricsServer(SocketAddress address, Render render) : address_(std::move(address)), render_(std::move(render)) {}
  void onRequest(evhttp_request* request);

  SocketAddress address_;
  Render render_;
  evhttp* http_ = nullptr;
};

}  // namespace rtpc
