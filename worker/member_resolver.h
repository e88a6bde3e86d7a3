#pragma once
// Member host names, resolved on the worker's own event loop with libevent's
// evdns: a blocking getaddrinfo there would stall every call of the cluster
// for as long as DNS takes, and a name resolved once at start stayed
// unresolved for good.
//
// NameResolver: one evdns base per worker, reading resolv.conf once and the
// hosts file before every lookup (as glibc does), so that a name added to
// /etc/hosts is found at the next retry.
// MemberNameWatch: keeps one member's name resolved. While it fails it
// retries with backoff (1 s doubling to 60 s) and logs
// `MEMBER_RESOLVE_FAILED cluster= member= host= error= attempt= retry_in_ms=`;
// once resolved it looks again every refresh period (5 min) and reports an
// address that changed. A failed refresh keeps the address it has.

#include <event2/event.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "shared/address.h"

struct evdns_base;
struct evdns_getaddrinfo_request;
struct evutil_addrinfo;

namespace rtpc {

struct ResolverFiles {
  std::string resolv_conf = "/etc/resolv.conf";
  std::string hosts = "/etc/hosts";
};

class NameResolver {
 public:
  using Callback = std::function<void(bool ok, const ResolvedAddress& address, const std::string& error)>;

  NameResolver(event_base* base, ResolverFiles files);
  ~NameResolver();  // cancels what is pending (its callbacks are not called)
  NameResolver(const NameResolver&) = delete;
  NameResolver& operator=(const NameResolver&) = delete;

  // Looks `address.host` up (family and socket type from the transport) and
  // calls back with the first answer, port set. The callback may run before
  // lookup() returns (a hosts file entry). Returns an id for cancel().
  uint64_t lookup(const SocketAddress& address, Callback callback);
  // The callback of `id` will not be called.
  void cancel(uint64_t id);

 private:
  struct Pending;
  static void onAnswer(int result, evutil_addrinfo* answer, void* arg);

  event_base* base_;
  ResolverFiles files_;
  evdns_base* dns_ = nullptr;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Pending*> pending_;
};

// Retry delay after `failures` failed lookups in a row (>= 1): first_ms,
// doubling, at most max_ms.
uint64_t resolveRetryDelayMs(uint32_t failures, uint64_t first_ms, uint64_t max_ms);

class MemberNameWatch {
 public:
  struct Settings {
    uint64_t first_retry_ms = 1000;
    uint64_t max_retry_ms = 60'000;
    uint64_t refresh_ms = 300'000;
  };
  // A new address (the first, or a changed one). A non-empty answer refuses
  // it (e.g. the cluster's own control socket): logged as a failure, retried.
  using OnAddress = std::function<std::optional<std::string>(const ResolvedAddress&)>;
  // The first failure of a name never resolved.
  using OnUnresolved = std::function<void(const std::string& error)>;

  MemberNameWatch(event_base* base, std::shared_ptr<NameResolver> resolver, std::string cluster,
                  std::string member, SocketAddress address, Settings settings, OnAddress on_address,
                  OnUnresolved on_unresolved);
  ~MemberNameWatch();
  MemberNameWatch(const MemberNameWatch&) = delete;
  MemberNameWatch& operator=(const MemberNameWatch&) = delete;

  // The first lookup, from the loop (never inside this call).
  void start();
  bool resolved() const { return current_.has_value(); }
  const std::optional<ResolvedAddress>& address() const { return current_; }
  uint32_t failures() const { return failures_; }

 private:
  static void onTimer(evutil_socket_t, short, void* arg);
  void attempt();
  void answered(bool ok, const ResolvedAddress& address, const std::string& error);
  void failed(const std::string& error);
  void schedule(uint64_t delay_ms);

  event_base* base_;
  std::shared_ptr<NameResolver> resolver_;
  std::string cluster_;
  std::string member_;
  SocketAddress address_;
  Settings settings_;
  OnAddress on_address_;
  OnUnresolved on_unresolved_;
  event* timer_ = nullptr;
  uint64_t lookup_id_ = 0;  // 0 = none pending
  uint32_t failures_ = 0;
  bool told_unresolved_ = false;
  std::optional<ResolvedAddress> current_;
};

}  // namespace rtpc
