#include "worker/member_resolver.h"

#include <event2/dns.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "shared/log_quote.h"
#include "shared/time_util.h"

namespace rtpc {

struct NameResolver::Pending {
  NameResolver* owner = nullptr;
  uint64_t id = 0;
  uint16_t port = 0;
  Callback callback;
  evdns_getaddrinfo_request* request = nullptr;
  bool cancelled = false;
};

NameResolver::NameResolver(event_base* base, ResolverFiles files) : base_(base), files_(std::move(files)) {
  // evdns would print its own messages ("Nameserver ... has failed") on
  // stderr; they go to the log at debug level, MEMBER_RESOLVE_FAILED says
  // what matters.
  evdns_set_log_fn([](int, const char* message) {
    spdlog::debug("DNS_RESOLVER message={}", logQuoted(message != nullptr ? message : ""));
  });
  dns_ = evdns_base_new(base_, 0);
  if (dns_ != nullptr) {
    // The hosts file is read before each lookup instead.
    evdns_base_resolv_conf_parse(dns_, DNS_OPTIONS_ALL & ~DNS_OPTION_HOSTSFILE, files_.resolv_conf.c_str());
  }
}

NameResolver::~NameResolver() {
  while (!pending_.empty()) cancel(pending_.begin()->first);
  if (dns_ != nullptr) evdns_base_free(dns_, 0);
}

uint64_t NameResolver::lookup(const SocketAddress& address, Callback callback) {
  const uint64_t id = next_id_++;
  if (dns_ == nullptr) {
    callback(false, ResolvedAddress{}, "cannot set up the resolver");
    return id;
  }
  // A name added to (or removed from) the hosts file counts from the next lookup.
  evdns_base_clear_host_addresses(dns_);
  evdns_base_load_hosts(dns_, files_.hosts.c_str());

  auto* p = new Pending();
  p->owner = this;
  p->id = id;
  p->port = address.port;
  p->callback = std::move(callback);
  pending_[id] = p;
  evutil_addrinfo hints{};
  hints.ai_family = isIpv6(address.transport) ? AF_INET6 : AF_INET;
  hints.ai_socktype = isDatagram(address.transport) ? SOCK_DGRAM : SOCK_STREAM;
  evdns_getaddrinfo_request* request =
      evdns_getaddrinfo(dns_, address.host.c_str(), nullptr, &hints, &NameResolver::onAnswer, p);
  // Null: answered already (p is gone), or failed at once (also answered).
  if (request != nullptr) {
    if (auto it = pending_.find(id); it != pending_.end()) it->second->request = request;
  }
  return id;
}

void NameResolver::cancel(uint64_t id) {
  const auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending* p = it->second;
  p->cancelled = true;
  if (p->request != nullptr) {
    evdns_getaddrinfo_cancel(p->request);  // answers EVUTIL_EAI_CANCEL, which frees p
  } else {
    pending_.erase(it);
    delete p;
  }
}

void NameResolver::onAnswer(int result, evutil_addrinfo* answer, void* arg) {
  auto* p = static_cast<Pending*>(arg);
  p->owner->pending_.erase(p->id);
  ResolvedAddress out;
  std::string error;
  bool ok = false;
  if (result != 0) {
    error = evutil_gai_strerror(result);
  } else if (answer == nullptr || answer->ai_addrlen > sizeof out.storage) {
    error = "no address";
  } else {
    std::memcpy(&out.storage, answer->ai_addr, answer->ai_addrlen);
    out.length = static_cast<socklen_t>(answer->ai_addrlen);
    out.family = answer->ai_family;
    if (out.family == AF_INET6) {
      reinterpret_cast<sockaddr_in6*>(&out.storage)->sin6_port = htons(p->port);
    } else {
      reinterpret_cast<sockaddr_in*>(&out.storage)->sin_port = htons(p->port);
    }
    ok = true;
  }
  if (answer != nullptr) evutil_freeaddrinfo(answer);
  if (!p->cancelled) p->callback(ok, out, error);
  delete p;
}

uint64_t resolveRetryDelayMs(uint32_t failures, uint64_t first_ms, uint64_t max_ms) {
  uint64_t delay = std::max<uint64_t>(first_ms, 1);
  for (uint32_t i = 1; i < failures && delay < max_ms; ++i) delay *= 2;
  return std::min(delay, std::max(max_ms, first_ms));
}

namespace {

bool sameAddress(const ResolvedAddress& a, const ResolvedAddress& b) {
  return a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
}

std::string addressText(const ResolvedAddress& a) {
  char host[64] = {};
  uint16_t port = 0;
  if (a.family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  const auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
  evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
  port = ntohs(in->sin_port);
  return std::string(host) + ":" + std::to_string(port);
}

}  // namespace

MemberNameWatch::MemberNameWatch(event_base* base, std::shared_ptr<NameResolver> resolver, std::string cluster,
                                 std::string member, SocketAddress address, Settings settings,
                                 OnAddress on_address, OnUnresolved on_unresolved)
    : base_(base),
      resolver_(std::move(resolver)),
      cluster_(std::move(cluster)),
      member_(std::move(member)),
      address_(std::move(address)),
      settings_(settings),
      on_address_(std::move(on_address)),
      on_unresolved_(std::move(on_unresolved)) {
  timer_ = evtimer_new(base_, &MemberNameWatch::onTimer, this);
}

MemberNameWatch::~MemberNameWatch() {
  if (lookup_id_ != 0) resolver_->cancel(lookup_id_);
  if (timer_ != nullptr) event_free(timer_);
}

void MemberNameWatch::start() { schedule(0); }

void MemberNameWatch::schedule(uint64_t delay_ms) {
  const timeval tv = msToTimeval(delay_ms);
  evtimer_add(timer_, &tv);
}

void MemberNameWatch::onTimer(evutil_socket_t, short, void* arg) { static_cast<MemberNameWatch*>(arg)->attempt(); }

void MemberNameWatch::attempt() {
  if (lookup_id_ != 0) return;
  // The id is set before a synchronous answer can clear it.
  lookup_id_ = ~uint64_t{0};
  const uint64_t id = resolver_->lookup(address_, [this](bool ok, const ResolvedAddress& a, const std::string& e) {
    lookup_id_ = 0;
    answered(ok, a, e);
  });
  if (lookup_id_ != 0) lookup_id_ = id;
}

void MemberNameWatch::answered(bool ok, const ResolvedAddress& address, const std::string& error) {
  if (!ok) return failed(error);
  if (current_ && sameAddress(*current_, address)) {
    failures_ = 0;
    schedule(settings_.refresh_ms);
    return;
  }
  // Set first: the owner's callback may read address().
  const std::optional<ResolvedAddress> previous = current_;
  current_ = address;
  if (std::optional<std::string> refused = on_address_(address)) {
    current_ = previous;
    return failed(*refused);
  }
  spdlog::info("MEMBER_RESOLVED cluster={} member={} host={} address={} changed={}", logName(cluster_), logName(member_),
               logQuoted(address_.host), addressText(address), previous.has_value());
  failures_ = 0;
  told_unresolved_ = false;
  schedule(settings_.refresh_ms);
}

void MemberNameWatch::failed(const std::string& error) {
  ++failures_;
  // Unresolved: retry soon. Resolved (a refresh failed): keep the address,
  // look again at the refresh pace at most.
  const uint64_t delay = current_ ? std::min(settings_.refresh_ms, resolveRetryDelayMs(failures_, settings_.first_retry_ms,
                                                                                        settings_.max_retry_ms))
                                  : resolveRetryDelayMs(failures_, settings_.first_retry_ms, settings_.max_retry_ms);
  spdlog::warn("MEMBER_RESOLVE_FAILED cluster={} member={} host={} error={} attempt={} retry_in_ms={} kept={}",
               logName(cluster_), logName(member_), logQuoted(address_.host), logQuoted(error), failures_, delay,
               current_ ? addressText(*current_) : std::string("none"));
  if (!current_ && !told_unresolved_) {
    told_unresolved_ = true;
    on_unresolved_(error);
  }
  schedule(delay);
}

}  // namespace rtpc
