#include "worker/notify_relay.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>

#include <spdlog/spdlog.h>

#include "shared/log_quote.h"
#include "shared/log_limiter.h"
#include "shared/time_util.h"
#include "shared/url_quote.h"

namespace rtpc {

namespace {

// One allowed peer IP: 4 or 16 bytes.
struct PeerIp {
  uint8_t length = 0;
  uint8_t bytes[16] = {};
  bool operator==(const PeerIp& o) const {
    return length == o.length && std::memcmp(bytes, o.bytes, length) == 0;
  }
};

// IPv4-mapped IPv6 (a dual-stack tcp6 listener) compares as IPv4.
bool peerIpOf(const sockaddr* sa, PeerIp& out) {
  out = PeerIp{};
  if (sa->sa_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
    out.length = 4;
    std::memcpy(out.bytes, &sin->sin_addr, 4);
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      out.length = 4;
      std::memcpy(out.bytes, sin6->sin6_addr.s6_addr + 12, 4);
    } else {
      out.length = 16;
      std::memcpy(out.bytes, sin6->sin6_addr.s6_addr, 16);
    }
    return true;
  }
  return false;
}

std::string peerText(const PeerIp& ip) {
  char text[INET6_ADDRSTRLEN] = "?";
  inet_ntop(ip.length == 4 ? AF_INET : AF_INET6, ip.bytes, text, sizeof text);
  return text;
}

// Untrusted bytes in a log line: printable ASCII only, bounded.
std::string printable(std::string_view text, size_t limit = 64) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < limit; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    out.push_back(c >= 0x21 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  if (text.size() > limit) out += "...";
  return out;
}

size_t countLines(std::string_view text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

bool suffixEscapes(std::string_view suffix) {
  return suffix.find('/') != std::string_view::npos || suffix.find('\0') != std::string_view::npos ||
         suffix.find("..") != std::string_view::npos;
}

NotifyLine splitLine(std::string_view line) {
  NotifyLine out;
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos) return out;
  out.suffix = line.substr(0, sp);
  out.tag = line.substr(sp + 1);
  if (out.tag.empty()) return out;
  out.status = suffixEscapes(out.suffix) ? NotifyLineStatus::kBadSuffix : NotifyLineStatus::kOk;
  return out;
}

}  // namespace

NotifyLine parseNotifyLine(std::string_view line, std::string& scratch) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find(' ') != std::string_view::npos) return splitLine(line);
  if (line.find('%') == std::string_view::npos) return NotifyLine{};
  scratch.clear();
  if (!urlUnquoteAppend(line, scratch)) return NotifyLine{};
  return splitLine(scratch);
}

// ---------------------------------------------------------------------------

struct NotifyRelay::Impl {
  struct Inbound;
  struct Destination;

  event_base* base = nullptr;
  NotifyRelayOptions options;
  SocketAddress address;
  std::string prefix;
  int listen_fd = -1;
  event* listen_event = nullptr;
  event* accept_resume = nullptr;  // after EMFILE: accept again later
  std::vector<PeerIp> allowed;
  std::vector<std::unique_ptr<Inbound>> inbound;
  std::map<std::string, std::unique_ptr<Destination>, std::less<>> destinations;
  NotifyRelayCounters counters;
  std::string scratch;
  // One line per log_interval_ms for each event key (set in create()).
  LogLimiter log_peer, log_malformed, log_path, log_dropped, log_full;

  ~Impl();

  bool listen(std::string& error);
  static void onAcceptable(evutil_socket_t, short, void* arg);
  static void onAcceptResume(evutil_socket_t, short, void* arg);
  void acceptAll();
  bool isAllowed(const PeerIp& ip) const;
  void closeInbound(Inbound* conn);
  void handleLine(Inbound& from, std::string_view line);
  void deliver(const Inbound& from, std::string_view suffix, std::string_view tag);
  Destination* destinationFor(std::string_view suffix);

  void noteMalformed(const Inbound& from, std::string_view reason);
  void noteDropped(const Destination& d, size_t lines, std::string_view reason, int err);
};

// A member's connection to us.
struct NotifyRelay::Impl::Inbound {
  Impl* owner = nullptr;
  int fd = -1;
  event* ev = nullptr;
  size_t index = 0;  // in owner->inbound
  PeerIp peer;
  std::unique_ptr<char[]> buffer;
  size_t length = 0;
  bool skipping = false;  // inside an overlong line, up to its "\n"

  ~Inbound() {
    if (ev != nullptr) event_free(ev);
    if (fd >= 0) close(fd);
  }

  static void onEvent(evutil_socket_t, short what, void* arg) {
    auto* self = static_cast<Inbound*>(arg);
    if ((what & EV_TIMEOUT) != 0) {
      ++self->owner->counters.idle_timeouts;
      self->owner->closeInbound(self);
      return;
    }
    self->receive();
  }

  void receive() {
    const size_t capacity = owner->options.max_line_bytes + 1;
    const ssize_t n = recv(fd, buffer.get() + length, capacity - length, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
      if (length > 0 && !skipping) {
        // rtpproxy always ends a notification with "\n".
        ++owner->counters.received;
        owner->noteMalformed(*this, "unterminated");
      }
      owner->closeInbound(this);  // destroys this
      return;
    }
    size_t start = 0;
    size_t scan = length;
    length += static_cast<size_t>(n);
    char* data = buffer.get();
    while (scan < length) {
      const void* nl = std::memchr(data + scan, '\n', length - scan);
      if (nl == nullptr) break;
      const size_t end = static_cast<size_t>(static_cast<const char*>(nl) - data);
      if (skipping) {
        skipping = false;
      } else {
        owner->handleLine(*this, std::string_view(data + start, end - start));
      }
      start = end + 1;
      scan = start;
    }
    if (start > 0) {
      std::memmove(data, data + start, length - start);
      length -= start;
    }
    if (length == capacity) {
      if (!skipping) {
        ++owner->counters.received;
        owner->noteMalformed(*this, "overlong");
        skipping = true;
      }
      length = 0;
    }
  }
};

// One unix stream socket of the signalling, `<prefix><suffix>`.
struct NotifyRelay::Impl::Destination {
  enum class State : uint8_t { kIdle, kConnecting, kConnected, kBackoff };

  Impl* owner = nullptr;
  std::string path;
  sockaddr_un sun{};
  socklen_t sun_length = 0;
  int fd = -1;
  State state = State::kIdle;
  event* read_event = nullptr;   // notices the signalling closing its end
  event* write_event = nullptr;  // connect completion or room in the socket buffer
  event* retry_event = nullptr;
  std::string out;  // queued "<tag>\n" lines; keeps its capacity
  size_t sent = 0;  // bytes of `out` already written
  uint32_t backoff_ms = 0;
  uint64_t last_used_ns = 0;

  ~Destination() {
    closeFd();
    if (read_event != nullptr) event_free(read_event);
    if (write_event != nullptr) event_free(write_event);
    if (retry_event != nullptr) event_free(retry_event);
  }

  bool init(Impl* impl, std::string full_path) {
    owner = impl;
    path = std::move(full_path);
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.data(), path.size());
    sun.sun_path[path.size()] = '\0';
    sun_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    retry_event = evtimer_new(owner->base, &Destination::onRetry, this);
    return retry_event != nullptr;
  }

  size_t queuedBytes() const { return out.size() - sent; }
  bool idle() const { return queuedBytes() == 0 && state != State::kBackoff; }

  void closeFd() {
    if (read_event != nullptr) {
      event_free(read_event);
      read_event = nullptr;
    }
    if (write_event != nullptr) {
      event_free(write_event);
      write_event = nullptr;
    }
    if (fd >= 0) close(fd);
    fd = -1;
  }

  void enqueue(std::string_view tag) {
    if (queuedBytes() + tag.size() + 1 > owner->options.max_queue_bytes) {
      owner->noteDropped(*this, 1, "queue_full", 0);
      return;
    }
    if (sent == out.size()) {
      out.clear();
      sent = 0;
    } else if (sent >= owner->options.max_queue_bytes) {
      // A slow reader: keep the string from growing with what was already written.
      out.erase(0, sent);
      sent = 0;
    }
    out.append(tag);
    out.push_back('\n');
    switch (state) {
      case State::kIdle: connect(); break;
      case State::kConnected:
        if (queuedBytes() == tag.size() + 1) flush();  // else a write is already pending
        break;
      case State::kConnecting:
      case State::kBackoff: break;
    }
  }

  void connect() {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      backoff();
      return;
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&sun), sun_length) == 0) {
      connected();
      return;
    }
    const int err = errno;
    if (err == EINPROGRESS) {
      state = State::kConnecting;
      if (!watch()) backoff();
      return;
    }
    connectFailed(err);
  }

  void connectFailed(int err) {
    closeFd();
    if (err == EAGAIN || err == EINTR || err == ENOBUFS || err == ENOMEM) {
      backoff();  // the listener's backlog is full: it is there, try again soon
      return;
    }
    // No listener (ENOENT, ECONNREFUSED, ...): nobody to queue for; the next
    // notification tries again.
    owner->noteDropped(*this, countLines(std::string_view(out).substr(sent)), "no_listener", err);
    out.clear();
    sent = 0;
    state = State::kIdle;
    backoff_ms = 0;
  }

  bool watch() {
    read_event = event_new(owner->base, fd, EV_READ | EV_PERSIST, &Destination::onReadable, this);
    write_event = event_new(owner->base, fd, EV_WRITE, &Destination::onWritable, this);
    if (read_event == nullptr || write_event == nullptr) return false;
    if (state == State::kConnecting) return event_add(write_event, nullptr) == 0;
    return event_add(read_event, nullptr) == 0;
  }

  void connected() {
    state = State::kConnected;
    const bool watching = read_event == nullptr ? watch() : event_add(read_event, nullptr) == 0;
    if (!watching) {
      lost(0);
      return;
    }
    flush();
  }

  void flush() {
    while (sent < out.size()) {
      const ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          event_add(write_event, nullptr);
          return;
        }
        lost(errno);
        return;
      }
      owner->counters.delivered += countLines(std::string_view(out.data() + sent, static_cast<size_t>(n)));
      sent += static_cast<size_t>(n);
    }
    out.clear();
    sent = 0;
    backoff_ms = 0;  // a connection that carries notifications is a good one
  }

  // The connection broke: what was not written goes again over a new one.
  void lost(int err) {
    closeFd();
    if (sent > 0 && sent < out.size() && out[sent - 1] != '\n') {
      // The signalling saw the start of this line and will never see its end.
      const size_t nl = out.find('\n', sent);
      owner->noteDropped(*this, 1, "connection_lost", err);
      sent = nl + 1;
    }
    out.erase(0, sent);
    sent = 0;
    if (out.empty()) {
      state = State::kIdle;
      return;
    }
    backoff();
  }

  void backoff() {
    closeFd();
    const uint32_t lo = std::max<uint32_t>(owner->options.reconnect_min_ms, 1);
    backoff_ms = backoff_ms == 0 ? lo : std::min(backoff_ms * 2, std::max(owner->options.reconnect_max_ms, lo));
    state = State::kBackoff;
    const timeval tv = msToTimeval(backoff_ms);
    evtimer_add(retry_event, &tv);
  }

  static void onRetry(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Destination*>(arg);
    if (self->queuedBytes() == 0) {
      self->state = State::kIdle;
      return;
    }
    self->connect();
  }

  static void onWritable(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Destination*>(arg);
    if (self->state == State::kConnecting) {
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(self->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        self->connectFailed(err);
        return;
      }
      self->connected();
      return;
    }
    if (self->state == State::kConnected) self->flush();
  }

  static void onReadable(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Destination*>(arg);
    char sink[256];
    const ssize_t n = recv(self->fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n > 0) return;  // the signalling has nothing to say to us
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    self->lost(n < 0 ? errno : 0);
  }
};

NotifyRelay::Impl::~Impl() {
  inbound.clear();
  destinations.clear();
  if (listen_event != nullptr) event_free(listen_event);
  if (accept_resume != nullptr) event_free(accept_resume);
  if (listen_fd >= 0) close(listen_fd);
}

bool NotifyRelay::Impl::listen(std::string& error) {
  ResolvedAddress resolved;
  if (!resolveAddress(address, resolved, error)) return false;
  listen_fd = socket(resolved.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  const int one = 1;
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listen_fd, resolved.sa(), resolved.length) != 0) {
    error = "cannot bind " + address.uri() + ": " + std::strerror(errno);
    return false;
  }
  if (::listen(listen_fd, 128) != 0) {
    error = std::string("listen: ") + std::strerror(errno);
    return false;
  }
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  if (getsockname(listen_fd, reinterpret_cast<sockaddr*>(&local), &length) == 0) {
    if (local.ss_family == AF_INET) {
      address.port = ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
    } else if (local.ss_family == AF_INET6) {
      address.port = ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
    }
  }
  listen_event = event_new(base, listen_fd, EV_READ | EV_PERSIST, &Impl::onAcceptable, this);
  accept_resume = evtimer_new(base, &Impl::onAcceptResume, this);
  if (listen_event == nullptr || accept_resume == nullptr || event_add(listen_event, nullptr) != 0) {
    error = "cannot register the notify socket with the event loop";
    return false;
  }
  return true;
}

void NotifyRelay::Impl::onAcceptable(evutil_socket_t, short, void* arg) {
  static_cast<Impl*>(arg)->acceptAll();
}

void NotifyRelay::Impl::onAcceptResume(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Impl*>(arg);
  event_add(self->listen_event, nullptr);
  self->acceptAll();
}

bool NotifyRelay::Impl::isAllowed(const PeerIp& ip) const {
  return std::find(allowed.begin(), allowed.end(), ip) != allowed.end();
}

void NotifyRelay::Impl::acceptAll() {
  for (int round = 0; round < 16; ++round) {
    sockaddr_storage peer{};
    socklen_t peer_length = sizeof peer;
    const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &peer_length,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The pending connection stays readable: stop looking for a while
        // instead of spinning on it.
        event_del(listen_event);
        const timeval tv = msToTimeval(1000);
        evtimer_add(accept_resume, &tv);
        spdlog::warn("NOTIFY_ACCEPT_FAILED address={} error={}", address.uri(), logQuoted(std::strerror(errno)));
      }
      return;
    }
    PeerIp ip;
    if (!peerIpOf(reinterpret_cast<const sockaddr*>(&peer), ip) || !isAllowed(ip)) {
      close(fd);
      ++counters.rejected_peer;
      uint64_t suppressed = 0;
      if (log_peer.allow(monotonicNs() / 1'000'000, suppressed)) {
        spdlog::warn("NOTIFY_PEER_REJECTED peer={} address={} suppressed={}", peerText(ip),
                     address.uri(), suppressed);
      }
      continue;
    }
    if (inbound.size() >= options.max_connections) {
      close(fd);
      ++counters.connections_refused;
      uint64_t suppressed = 0;
      if (log_full.allow(monotonicNs() / 1'000'000, suppressed)) {
        spdlog::warn("NOTIFY_CONNECTIONS_FULL peer={} limit={} suppressed={}", peerText(ip),
                     options.max_connections, suppressed);
      }
      continue;
    }
    auto conn = std::make_unique<Inbound>();
    conn->owner = this;
    conn->fd = fd;
    conn->peer = ip;
    conn->buffer = std::make_unique<char[]>(options.max_line_bytes + 1);
    conn->ev = event_new(base, fd, EV_READ | EV_PERSIST, &Inbound::onEvent, conn.get());
    const timeval idle = msToTimeval(options.idle_timeout_ms);
    if (conn->ev == nullptr ||
        event_add(conn->ev, options.idle_timeout_ms > 0 ? &idle : nullptr) != 0) {
      continue;  // conn closes the socket
    }
    conn->index = inbound.size();
    inbound.push_back(std::move(conn));
    ++counters.connections;
  }
}

void NotifyRelay::Impl::closeInbound(Inbound* conn) {
  const size_t i = conn->index;
  if (i >= inbound.size() || inbound[i].get() != conn) return;
  if (i + 1 != inbound.size()) {
    std::swap(inbound[i], inbound.back());
    inbound[i]->index = i;
  }
  inbound.pop_back();
}

void NotifyRelay::Impl::noteMalformed(const Inbound& from, std::string_view reason) {
  ++counters.malformed;
  uint64_t suppressed = 0;
  if (log_malformed.allow(monotonicNs() / 1'000'000, suppressed)) {
    spdlog::warn("NOTIFY_MALFORMED peer={} reason={} suppressed={}", peerText(from.peer), reason,
                 suppressed);
  }
}

void NotifyRelay::Impl::noteDropped(const Destination& d, size_t lines, std::string_view reason,
                                    int err) {
  if (lines == 0) return;
  counters.dropped += lines;
  uint64_t suppressed = 0;
  if (log_dropped.allow(monotonicNs() / 1'000'000, suppressed)) {
    spdlog::warn("NOTIFY_DROPPED dest={} reason={} error={} count={} suppressed={}",
                 printable(d.path, kMaxUnixPathBytes), reason, logQuoted(err != 0 ? std::strerror(err) : ""),
                 lines, suppressed);
  }
}

void NotifyRelay::Impl::handleLine(Inbound& from, std::string_view line) {
  ++counters.received;
  const NotifyLine parsed = parseNotifyLine(line, scratch);
  switch (parsed.status) {
    case NotifyLineStatus::kOk: deliver(from, parsed.suffix, parsed.tag); return;
    case NotifyLineStatus::kMalformed: noteMalformed(from, "syntax"); return;
    case NotifyLineStatus::kBadSuffix: break;
  }
  ++counters.rejected_path;
  uint64_t suppressed = 0;
  if (log_path.allow(monotonicNs() / 1'000'000, suppressed)) {
    spdlog::warn("NOTIFY_PATH_REJECTED peer={} suffix={} suppressed={}", peerText(from.peer),
                 printable(parsed.suffix), suppressed);
  }
}

void NotifyRelay::Impl::deliver(const Inbound& from, std::string_view suffix, std::string_view tag) {
  if (prefix.size() + suffix.size() > kMaxUnixPathBytes) {
    ++counters.rejected_path;
    uint64_t suppressed = 0;
    if (log_path.allow(monotonicNs() / 1'000'000, suppressed)) {
      spdlog::warn("NOTIFY_PATH_REJECTED peer={} suffix={} reason=too_long suppressed={}",
                   peerText(from.peer), printable(suffix), suppressed);
    }
    return;
  }
  Destination* d = destinationFor(suffix);
  if (d == nullptr) {
    ++counters.dropped;
    uint64_t suppressed = 0;
    if (log_dropped.allow(monotonicNs() / 1'000'000, suppressed)) {
      spdlog::warn("NOTIFY_DROPPED suffix={} reason=too_many_destinations count=1 suppressed={}",
                   printable(suffix), suppressed);
    }
    return;
  }
  d->enqueue(tag);
}

NotifyRelay::Impl::Destination* NotifyRelay::Impl::destinationFor(std::string_view suffix) {
  const uint64_t now = monotonicNs();
  if (auto it = destinations.find(suffix); it != destinations.end()) {
    it->second->last_used_ns = now;
    return it->second.get();
  }
  if (destinations.size() >= std::max<size_t>(options.max_destinations, 1)) {
    // Make room by closing the least recently used destination with nothing queued.
    auto victim = destinations.end();
    for (auto it = destinations.begin(); it != destinations.end(); ++it) {
      if (it->second->idle() && (victim == destinations.end() ||
                                 it->second->last_used_ns < victim->second->last_used_ns)) {
        victim = it;
      }
    }
    if (victim == destinations.end()) return nullptr;
    destinations.erase(victim);
  }
  auto d = std::make_unique<Destination>();
  std::string path = prefix;
  path.append(suffix);
  if (!d->init(this, std::move(path))) return nullptr;
  d->last_used_ns = now;
  return destinations.emplace(std::string(suffix), std::move(d)).first->second.get();
}

// ---------------------------------------------------------------------------

NotifyRelay::NotifyRelay(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NotifyRelay::~NotifyRelay() = default;

std::unique_ptr<NotifyRelay> NotifyRelay::create(event_base* base, const DisconnectNotifyConfig& config,
                                                 std::string& error,
                                                 const NotifyRelayOptions& options) {
  if (config.inbound_address.transport != Transport::kTcp &&
      config.inbound_address.transport != Transport::kTcp6) {
    error = "notify inbound address must be tcp or tcp6, got " + config.inbound_address.uri();
    return nullptr;
  }
  std::string_view prefix = config.dest_socket_prefix;
  if (prefix.substr(0, 5) == "unix:") prefix.remove_prefix(5);
  if (prefix.empty() || prefix.size() > kMaxUnixPathBytes) {
    error = "notify destination prefix must be 1.." + std::to_string(kMaxUnixPathBytes) + " bytes";
    return nullptr;
  }
  auto impl = std::make_unique<Impl>();
  impl->base = base;
  impl->options = options;
  for (LogLimiter* l : {&impl->log_peer, &impl->log_malformed, &impl->log_path, &impl->log_dropped, &impl->log_full}) {
    *l = LogLimiter(1, options.log_interval_ms);
  }
  impl->options.max_line_bytes = std::max<size_t>(options.max_line_bytes, 1);
  impl->address = config.inbound_address;
  impl->prefix.assign(prefix);
  if (!impl->listen(error)) return nullptr;
  spdlog::info("NOTIFY_RELAY_LISTENING address={} prefix={}", impl->address.uri(), impl->prefix);
  return std::unique_ptr<NotifyRelay>(new NotifyRelay(std::move(impl)));
}

bool NotifyRelay::setAllowedPeers(const std::vector<std::string>& hosts, std::string* error,
                                  const std::vector<ResolvedAddress>& resolved) {
  std::vector<PeerIp> allowed;
  std::string failed;
  auto add = [&allowed](const sockaddr* sa) {
    PeerIp ip;
    if (peerIpOf(sa, ip) && std::find(allowed.begin(), allowed.end(), ip) == allowed.end()) {
      allowed.push_back(ip);
    }
  };
  for (const std::string& raw : hosts) {
    std::string_view host = raw;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) continue;
    std::string text(host.substr(0, host.find('%')));  // a zone does not change the peer's bytes
    sockaddr_in sin{};
    sockaddr_in6 sin6{};
    if (inet_pton(AF_INET, text.c_str(), &sin.sin_addr) == 1) {
      sin.sin_family = AF_INET;
      add(reinterpret_cast<const sockaddr*>(&sin));
      continue;
    }
    if (inet_pton(AF_INET6, text.c_str(), &sin6.sin6_addr) == 1) {
      sin6.sin6_family = AF_INET6;
      add(reinterpret_cast<const sockaddr*>(&sin6));
      continue;
    }
    if (text == "localhost") {
      inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
      sin.sin_family = AF_INET;
      add(reinterpret_cast<const sockaddr*>(&sin));
      inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
      sin6.sin6_family = AF_INET6;
      add(reinterpret_cast<const sockaddr*>(&sin6));
      continue;
    }
    if (!failed.empty()) failed += ", ";
    failed += text;
  }
  for (const ResolvedAddress& r : resolved) add(r.sa());
  impl_->allowed = std::move(allowed);
  if (failed.empty()) return true;
  if (error != nullptr) *error = "notify peer(s) not resolved (yet): " + failed;
  return false;
}

void NotifyRelay::setAllowedPeers(const std::vector<ResolvedAddress>& peers) {
  std::vector<PeerIp> allowed;
  for (const ResolvedAddress& peer : peers) {
    PeerIp ip;
    if (peerIpOf(peer.sa(), ip) && std::find(allowed.begin(), allowed.end(), ip) == allowed.end()) {
      allowed.push_back(ip);
    }
  }
  impl_->allowed = std::move(allowed);
}

const NotifyRelayCounters& NotifyRelay::counters() const { return impl_->counters; }
const SocketAddress& NotifyRelay::address() const { return impl_->address; }
uint16_t NotifyRelay::boundPort() const { return impl_->address.port; }
const std::string& NotifyRelay::destinationPrefix() const { return impl_->prefix; }
size_t NotifyRelay::connectionCount() const { return impl_->inbound.size(); }

}  // namespace rtpc
