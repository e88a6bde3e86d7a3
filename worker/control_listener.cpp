#include "worker/control_listener.h"

#include <event2/event_struct.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

#include "shared/control_socket_bind.h"
#include "shared/log_limiter.h"
#include "shared/time_util.h"
#include "worker/reply_cache.h"

namespace rtpc {

namespace {

std::string_view trimTrailingNewlines(std::string_view body) {
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.remove_suffix(1);
  return body;
}

std::string errnoText(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}


struct Connection;

// A request with the storage behind its views. The strings keep their
// capacity when the slot is reused.
struct RequestSlot : ControlRequest {
  std::string storage;        // the command text
  std::string pending_reply;  // stream: an answer waiting for earlier ones
  RequestSlot* next_free = nullptr;
  bool in_use = false;
  // udp
  sockaddr_storage peer{};
  socklen_t peer_length = 0;
  char client_key[ReplyCache::kMaxClientKeyBytes] = {};
  uint8_t client_key_length = 0;
  bool cached = false;  // the reply cache holds it in flight
  uint64_t cache_ticket = ReplyCache::kNoTicket;  // its in-flight record
  // streams
  Connection* connection = nullptr;  // nullptr: the client is gone
  bool done = false;

  std::string_view clientKey() const { return {client_key, client_key_length}; }
};

class RequestPool {
 public:
  explicit RequestPool(size_t limit) : limit_(std::max<size_t>(limit, 1)) {}

  RequestSlot* acquire(ControlListener* owner) {
    if (free_ == nullptr) {
      if (all_.size() >= limit_) return nullptr;
      all_.push_back(std::make_unique<RequestSlot>());
      free_ = all_.back().get();
    }
    RequestSlot* slot = free_;
    free_ = slot->next_free;
    slot->next_free = nullptr;
    slot->in_use = true;
    slot->listener = owner;
    ++in_use_;
    return slot;
  }
  void release(RequestSlot* slot) {
    slot->in_use = false;
    slot->connection = nullptr;
    slot->cached = false;
    slot->done = false;
    slot->text = {};
    slot->next_free = free_;
    free_ = slot;
    --in_use_;
  }
  size_t inUse() const { return in_use_; }
  bool exhausted() const { return free_ == nullptr && all_.size() >= limit_; }

 private:
  std::vector<std::unique_ptr<RequestSlot>> all_;
  RequestSlot* free_ = nullptr;
  size_t limit_;
  size_t in_use_ = 0;
};

class ListenerBase : public ControlListener {
 public:
  ListenerBase(event_base* base, const SocketAddress& address, int fd, CommandHandler* handler,
               const ControlListenerOptions& options)
      : base_(base),
        address_(address),
        fd_(fd),
        handler_(handler),
        options_(options),
        pool_(options.max_in_flight) {
    sockaddr_storage local{};
    socklen_t length = sizeof local;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &length) == 0) {
      if (local.ss_family == AF_INET) {
        port_ = ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
      } else if (local.ss_family == AF_INET6) {
        port_ = ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
      }
    }
    if (!isUnixPath(address_.transport)) address_.port = port_;
  }

  ~ListenerBase() override {
    if (listen_event_ != nullptr) event_free(listen_event_);
    if (fd_ >= 0) close(fd_);
    removeSocketFileIfOurs(owned_path_, owned_file_);
  }

  bool start(event_callback_fn callback, std::string& error) {
    listen_event_ = event_new(base_, fd_, EV_READ | EV_PERSIST, callback, this);
    if (listen_event_ == nullptr || event_add(listen_event_, nullptr) != 0) {
      error = "cannot register the control socket with the event loop";
      return false;
    }
    return true;
  }

  // Leaves the socket open (adopt() failed: the caller still owns it).
  void disownFd() { fd_ = -1; }

  void ownPath(const std::string& path, const SocketFileId& file) {
    owned_path_ = path;
    owned_file_ = file;
  }

  const ControlListenerCounters& counters() const override { return counters_; }
  const SocketAddress& address() const override { return address_; }
  uint16_t boundPort() const override { return port_; }

 protected:
  RequestSlot* validSlot(ControlRequest* request) const {
    auto* slot = static_cast<RequestSlot*>(request);
    // A second reply to the same request would corrupt the pool.
    if (slot == nullptr || slot->listener != this || !slot->in_use) return nullptr;
    return slot;
  }

  event_base* base_;
  SocketAddress address_;
  int fd_;
  CommandHandler* handler_;
  ControlListenerOptions options_;
  RequestPool pool_;
  event* listen_event_ = nullptr;
  mutable ControlListenerCounters counters_;
  uint16_t port_ = 0;
  std::string owned_path_;
  SocketFileId owned_file_;  // empty: a socket handed over, whose file is not ours
};

// ---------------------------------------------------------------------------
// udp / udp6

class DatagramListener final : public ListenerBase {
 public:
  DatagramListener(event_base* base, const SocketAddress& address, int fd, CommandHandler* handler,
                   const ControlListenerOptions& options)
      : ListenerBase(base, address, fd, handler, options),
        cache_(options.reply_cache_bytes, options.reply_cache_retention_ms * 1'000'000ULL),
        rx_(std::make_unique<Receive>()),
        tx_(std::make_unique<Send>()) {
    for (size_t i = 0; i < kBatch; ++i) {
      rx_->iov[i] = iovec{rx_->data[i], kReceiveBytes};
      tx_->msgs[i].msg_hdr.msg_iov = &tx_->iov[i];
      tx_->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    scratch_.listener = this;
    event_assign(&flush_event_, base, -1, 0, &DatagramListener::onFlush, this);
  }

  ~DatagramListener() override { event_del(&flush_event_); }

  static void onReadable(evutil_socket_t, short, void* arg) {
    static_cast<DatagramListener*>(arg)->receive();
  }

  static void onFlush(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<DatagramListener*>(arg);
    self->flush_scheduled_ = false;
    self->flush();
  }

  void reply(ControlRequest* request, std::string_view body) override {
    RequestSlot* slot = validSlot(request);
    if (slot == nullptr) return;
    body = trimTrailingNewlines(body);
    if (slot->cached) {
      cache_.complete(slot->cache_ticket, slot->clientKey(), slot->command.cookie, body,
                      monotonicNs());
    }
    send(slot->peer, slot->peer_length, slot->command.cookie, body);
    ++counters_.answered;
    pool_.release(slot);
  }

  void cancel(ControlRequest* request) override {
    RequestSlot* slot = validSlot(request);
    if (slot == nullptr) return;
    if (slot->cached) cache_.cancel(slot->clientKey(), slot->command.cookie);
    pool_.release(slot);
  }

  const ControlListenerCounters& counters() const override {
    counters_.cache_evicted_early = cache_.evictedEarly();
    return counters_;
  }

 private:
  static constexpr size_t kBatch = 32;
  // One byte more than a command may have, to tell an over-long datagram.
  static constexpr size_t kReceiveBytes = kMaxCommandBytes + 1;
  static constexpr size_t kSendArenaBytes = 64 * 1024;
  static constexpr int kRoundsPerWakeup = 8;  // then let the other sockets run

  struct Receive {
    char data[kBatch][kReceiveBytes];
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    sockaddr_storage peers[kBatch];
  };
  struct Send {
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    sockaddr_storage peers[kBatch];
    char arena[kSendArenaBytes];
    size_t used = 0;
    size_t count = 0;
  };

  void receive() {
    const uint64_t now = monotonicNs();
    batching_ = true;
    for (int round = 0; round < kRoundsPerWakeup; ++round) {
      for (size_t i = 0; i < kBatch; ++i) {
        msghdr& h = rx_->msgs[i].msg_hdr;
        h = msghdr{};
        h.msg_name = &rx_->peers[i];
        h.msg_namelen = sizeof(sockaddr_storage);
        h.msg_iov = &rx_->iov[i];
        h.msg_iovlen = 1;
        rx_->msgs[i].msg_len = 0;
      }
      const int n = recvmmsg(fd_, rx_->msgs, kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) break;
      if (n > 1) prefetchBatch(n);
      for (int i = 0; i < n; ++i) {
        const msghdr& h = rx_->msgs[i].msg_hdr;
        const bool truncated = (h.msg_flags & MSG_TRUNC) != 0;
        handleDatagram(std::string_view(rx_->data[i], rx_->msgs[i].msg_len), truncated,
                       rx_->peers[i], h.msg_namelen, now);
      }
      if (static_cast<size_t>(n) < kBatch) break;
    }
    batching_ = false;
    flush();
  }

  // The reply cache slot and the session table buckets of every command in
  // the batch are random memory: loading them all before handling the first
  // lets the cache misses overlap instead of queueing one per command.
  void prefetchBatch(int n) {
    char key[ReplyCache::kMaxClientKeyBytes];
    for (int i = 0; i < n; ++i) {
      const DatagramGlance g = glanceAtDatagram(
          std::string_view(rx_->data[i], std::min<size_t>(rx_->msgs[i].msg_len, kMaxCommandBytes)));
      const uint8_t key_length = clientKeyOf(rx_->peers[i], rx_->msgs[i].msg_hdr.msg_namelen, key);
      cache_.prefetch(std::string_view(key, key_length), g.cookie);
      if (!g.call_id.empty()) handler_->prefetchCall(g.call_id);
    }
  }

  void handleDatagram(std::string_view datagram, bool truncated, const sockaddr_storage& peer,
                      socklen_t peer_length, uint64_t now) {
    ++counters_.received;
    if (truncated || datagram.size() > kMaxCommandBytes) ++counters_.oversized;
    // With every slot taken the scratch slot still lets a retransmission be
    // answered from the cache; a new command is then dropped.
    RequestSlot* slot = pool_.acquire(this);
    const bool overloaded = slot == nullptr;
    if (overloaded) slot = &scratch_;
    slot->storage.assign(datagram.data(), datagram.size());
    slot->text = slot->storage;
    slot->parse = parseCommand(slot->text, Framing::kDatagram, slot->command);
    slot->received_ns = now;
    std::memcpy(&slot->peer, &peer, std::min<size_t>(peer_length, sizeof peer));
    slot->peer_length = peer_length;
    slot->cached = false;

    const std::string_view cookie = slot->command.cookie;
    if (!cookie.empty()) {
      setClientKey(*slot);
      const ReplyCache::Lookup seen = cache_.begin(slot->clientKey(), cookie, now);
      switch (seen.state) {
        case ReplyCache::State::kAnswered:
          ++counters_.cache_hits;
          send(slot->peer, slot->peer_length, cookie, seen.reply);
          releaseOrScratch(slot);
          return;
        case ReplyCache::State::kInFlight:
          ++counters_.duplicates_dropped;
          releaseOrScratch(slot);
          return;
        case ReplyCache::State::kNew:
          slot->cached = true;
          slot->cache_ticket = seen.ticket;
          break;
        case ReplyCache::State::kUncacheable:
          break;
      }
    }
    if (overloaded) {
      ++counters_.overload_dropped;
      if (slot->cached) cache_.cancel(slot->clientKey(), cookie);
      return;
    }
    if (!slot->parse.ok) ++counters_.malformed;
    handler_->onCommand(slot);
  }

  void releaseOrScratch(RequestSlot* slot) {
    if (slot != &scratch_) pool_.release(slot);
  }

  // family, port, address (and the IPv6 scope): what tells two clients apart.
  static void setClientKey(RequestSlot& slot) {
    slot.client_key_length = clientKeyOf(slot.peer, slot.peer_length, slot.client_key);
  }

  static uint8_t clientKeyOf(const sockaddr_storage& peer, socklen_t peer_length,
                             char (&k)[ReplyCache::kMaxClientKeyBytes]) {
    size_t n = 0;
    if (peer.ss_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&peer);
      k[n++] = 6;
      std::memcpy(k + n, &sin6->sin6_port, 2);
      n += 2;
      std::memcpy(k + n, &sin6->sin6_addr, 16);
      n += 16;
      std::memcpy(k + n, &sin6->sin6_scope_id, 4);
      n += 4;
    } else if (peer.ss_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&peer);
      k[n++] = 4;
      std::memcpy(k + n, &sin->sin_port, 2);
      n += 2;
      std::memcpy(k + n, &sin->sin_addr, 4);
      n += 4;
    } else {
      const size_t length = std::min<size_t>(peer_length, sizeof k);
      std::memcpy(k, &peer, length);
      n = length;
    }
    return static_cast<uint8_t>(n);
  }

  // "<cookie> <body>\n", or "<body>\n" when there is no cookie. Replies are
  // collected for one sendmmsg: inside a receive batch until its end, and
  // replies that arrive from member links (a link delivers a whole recvmmsg
  // batch of them in one callback) until the flush event, which libevent
  // runs right after the current callback in the same loop iteration. One
  // syscall per batch instead of per reply is most of the per-command cost.
  void send(const sockaddr_storage& peer, socklen_t peer_length, std::string_view cookie,
            std::string_view body) {
    const size_t size = (cookie.empty() ? 0 : cookie.size() + 1) + body.size() + 1;
    if (size <= kSendArenaBytes) {
      if (!batching_ && !flush_scheduled_) {
        flush_scheduled_ = true;
        event_active(&flush_event_, 0, 0);
      }
      if (tx_->count == kBatch || tx_->used + size > kSendArenaBytes) flush();
      char* p = tx_->arena + tx_->used;
      size_t n = 0;
      if (!cookie.empty()) {
        std::memcpy(p, cookie.data(), cookie.size());
        n = cookie.size();
        p[n++] = ' ';
      }
      if (!body.empty()) std::memcpy(p + n, body.data(), body.size());
      n += body.size();
      p[n++] = '\n';
      const size_t i = tx_->count++;
      tx_->used += n;
      std::memcpy(&tx_->peers[i], &peer, std::min<size_t>(peer_length, sizeof peer));
      tx_->iov[i] = iovec{p, n};
      msghdr& h = tx_->msgs[i].msg_hdr;
      h.msg_name = &tx_->peers[i];
      h.msg_namelen = peer_length;
      h.msg_iov = &tx_->iov[i];
      h.msg_iovlen = 1;
      h.msg_control = nullptr;
      h.msg_controllen = 0;
      h.msg_flags = 0;
      return;
    }
    iovec iov[4];
    int count = 0;
    char space = ' ';
    char newline = '\n';
    if (!cookie.empty()) {
      iov[count++] = iovec{const_cast<char*>(cookie.data()), cookie.size()};
      iov[count++] = iovec{&space, 1};
    }
    if (!body.empty()) iov[count++] = iovec{const_cast<char*>(body.data()), body.size()};
    iov[count++] = iovec{&newline, 1};
    msghdr h{};
    h.msg_name = const_cast<sockaddr_storage*>(&peer);
    h.msg_namelen = peer_length;
    h.msg_iov = iov;
    h.msg_iovlen = static_cast<size_t>(count);
    ssize_t sent;
    do {
      sent = sendmsg(fd_, &h, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    // A full socket buffer drops the reply; the client retransmits and the
    // cache answers it.
    if (sent < 0) ++counters_.send_errors;
  }

  void flush() {
    size_t done = 0;
    while (done < tx_->count) {
      const int n = sendmmsg(fd_, tx_->msgs + done, static_cast<unsigned>(tx_->count - done),
                             MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        // The first message failed: skip it, send the rest.
        ++counters_.send_errors;
        ++done;
        continue;
      }
      done += static_cast<size_t>(n);
    }
    tx_->count = 0;
    tx_->used = 0;
  }

  ReplyCache cache_;
  std::unique_ptr<Receive> rx_;
  std::unique_ptr<Send> tx_;
  RequestSlot scratch_;
  bool batching_ = false;
  bool flush_scheduled_ = false;
  event flush_event_{};
};

// ---------------------------------------------------------------------------
// unix (one command per connection) and cunix / tcp / tcp6 (persistent)

class StreamListener;

inline constexpr size_t kMaxQueuePerConnection = 256;
// What a connection may have written but not yet sent before it is not read
// any more (a client that sends but never reads).
inline constexpr size_t kMaxUnsentBytes = 64 * 1024;

struct Connection {
  StreamListener* owner = nullptr;
  int fd = -1;
  event* read_event = nullptr;
  event* write_event = nullptr;
  Connection* next_free = nullptr;
  Connection* next_starved = nullptr;
  int busy = 0;  // inside a callback of this connection: closing is deferred
  bool close_pending = false;
  bool reading = false;
  bool writing = false;
  bool eof = false;          // the client shut down its side
  bool got_command = false;  // unix: the one command was read
  bool discarding = false;   // skipping the rest of an over-long line
  bool backlog = false;      // complete input is buffered but was not taken yet
  bool starved = false;      // waiting for a free request slot
  uint64_t last_active = 0;  // the listener's activity sequence at the last read or reply
  size_t in_length = 0;
  char in[kMaxCommandBytes + 1];  // a line of kMaxCommandBytes plus its "\n"
  RequestSlot* queue[kMaxQueuePerConnection];
  size_t queue_head = 0;
  size_t queue_count = 0;
  std::string out;
  size_t out_sent = 0;
};

class StreamListener final : public ListenerBase {
 public:
  StreamListener(event_base* base, const SocketAddress& address, int fd, CommandHandler* handler,
                 const ControlListenerOptions& options)
      : ListenerBase(base, address, fd, handler, options),
        one_shot_(address.transport == Transport::kUnix),
        per_connection_limit_(std::clamp<size_t>(options.max_in_flight_per_connection, 1,
                                                 kMaxQueuePerConnection)),
        max_connections_(std::max<size_t>(options.max_connections, 1)) {
    accept_retry_event_ = evtimer_new(base_, &StreamListener::onAcceptRetry, this);
  }

  ~StreamListener() override {
    for (auto& c : connections_) {
      if (c->fd >= 0) close(c->fd);
      if (c->read_event != nullptr) event_free(c->read_event);
      if (c->write_event != nullptr) event_free(c->write_event);
    }
    if (accept_retry_event_ != nullptr) event_free(accept_retry_event_);
  }

  static void onAcceptable(evutil_socket_t, short, void* arg) {
    static_cast<StreamListener*>(arg)->acceptConnections();
  }

  void reply(ControlRequest* request, std::string_view body) override {
    RequestSlot* slot = validSlot(request);
    if (slot == nullptr) return;
    ++counters_.answered;
    Connection* c = slot->connection;
    if (c == nullptr) {  // the client is gone
      releaseSlot(slot);
      return;
    }
    body = trimTrailingNewlines(body);
    slot->done = true;
    if (c->queue[c->queue_head] == slot) {
      appendReply(*c, body);
      popHead(*c);
      releaseSlot(slot);
      // Later commands that finished first go out now, in order.
      while (c->queue_count != 0 && c->queue[c->queue_head]->done) {
        RequestSlot* next = c->queue[c->queue_head];
        appendReply(*c, next->pending_reply);
        popHead(*c);
        releaseSlot(next);
      }
      flushOut(*c);
    } else {
      slot->pending_reply.assign(body.data(), body.size());
    }
    afterProgress(*c);
  }

  void cancel(ControlRequest* request) override {
    RequestSlot* slot = validSlot(request);
    if (slot == nullptr) return;
    Connection* c = slot->connection;
    if (c == nullptr) {
      releaseSlot(slot);
      return;
    }
    // Answers after this one would be taken for this one's: end the stream.
    // Marked done, the slot is released with the connection's queue.
    slot->done = true;
    slot->pending_reply.clear();
    closeConnection(*c);
  }

 private:
  static void onRead(evutil_socket_t, short what, void* arg) {
    auto* c = static_cast<Connection*>(arg);
    c->owner->readable(*c, what);
  }
  static void onWrite(evutil_socket_t, short, void* arg) {
    auto* c = static_cast<Connection*>(arg);
    StreamListener* self = c->owner;
    ++c->busy;
    self->flushOut(*c);
    --c->busy;
    self->afterProgress(*c);
  }
  static void onAcceptRetry(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<StreamListener*>(arg);
    self->resumeAccepting();
  }

  void acceptConnections() {
    for (int i = 0; i < 64; ++i) {
      // At the limit the connection idle the longest makes room: idle
      // clients (hundreds of them, maybe hostile) must not lock everyone
      // else out. With every connection busy, new ones wait in the backlog.
      Connection* victim = nullptr;
      if (active_connections_ >= max_connections_) {
        victim = idlest();
        if (victim == nullptr) {
          pauseAccepting();
          paused_full_ = true;
          return;
        }
      }
      const int fd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // The listening socket stays readable: back off instead of spinning.
          pauseAccepting();
          const timeval tv = msToTimeval(100);
          evtimer_add(accept_retry_event_, &tv);
        }
        return;
      }
      if (victim != nullptr) evict(*victim);  // only once a client is really waiting
      ++counters_.connections;
      if (address_.transport == Transport::kTcp || address_.transport == Transport::kTcp6) {
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        // A client host that vanished (no FIN ever comes) is found by
        // keepalive probes and its connection closed, without closing live
        // clients that are merely quiet.
        const int idle_s = 60, interval_s = 10, count = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
      }
      openConnection(fd);
    }
  }

  // A connection with nothing in flight and nothing left to send (unix: no
  // command read yet).
  bool isIdle(const Connection& c) const {
    if (c.fd < 0 || c.close_pending) return false;
    if (one_shot_) return !c.got_command;
    return c.queue_count == 0 && c.out.size() == c.out_sent && !c.backlog && !c.starved;
  }

  // The idle connection least recently active, or nullptr. A scan, but only
  // at the connection limit.
  Connection* idlest() const {
    Connection* victim = nullptr;
    for (const auto& c : connections_) {
      if (isIdle(*c) && (victim == nullptr || c->last_active < victim->last_active)) victim = c.get();
    }
    return victim;
  }

  void evict(Connection& victim) {
    ++counters_.connections_evicted;
    uint64_t suppressed = 0;
    if (log_evicted_.allow(monotonicNs() / 1'000'000, suppressed)) {
      spdlog::warn("CONTROL_CONNECTION_EVICTED address={} limit={} evicted={} suppressed={}", address_.uri(),
                   max_connections_, counters_.connections_evicted, suppressed);
    }
    closeConnection(victim);
  }

  void pauseAccepting() {
    if (accepting_) {
      event_del(listen_event_);
      accepting_ = false;
    }
  }
  void resumeAccepting() {
    if (!accepting_ && active_connections_ < max_connections_) {
      event_add(listen_event_, nullptr);
      accepting_ = true;
    }
  }

  void openConnection(int fd) {
    Connection* c = free_connections_;
    if (c != nullptr) {
      free_connections_ = c->next_free;
    } else {
      connections_.push_back(std::make_unique<Connection>());
      c = connections_.back().get();
      c->owner = this;
      c->read_event = event_new(base_, -1, 0, nullptr, nullptr);
      c->write_event = event_new(base_, -1, 0, nullptr, nullptr);
    }
    c->fd = fd;
    c->next_free = nullptr;
    c->busy = 0;
    c->close_pending = c->reading = c->writing = false;
    c->eof = c->got_command = c->discarding = c->starved = c->backlog = false;
    c->in_length = c->queue_head = c->queue_count = c->out_sent = 0;
    c->last_active = ++activity_seq_;
    c->out.clear();
    event_assign(c->read_event, base_, fd, EV_READ | EV_PERSIST, &StreamListener::onRead, c);
    event_assign(c->write_event, base_, fd, EV_WRITE | EV_PERSIST, &StreamListener::onWrite, c);
    ++active_connections_;
    updateReading(*c);
  }

  bool wantsToRead(const Connection& c) const {
    if (c.close_pending || c.eof || c.starved) return false;
    if (one_shot_) return !c.got_command;
    return c.queue_count < per_connection_limit_ && c.out.size() - c.out_sent < kMaxUnsentBytes &&
           c.in_length < sizeof c.in;
  }

  void updateReading(Connection& c) {
    const bool want = wantsToRead(c);
    if (want == c.reading) return;
    c.reading = want;
    if (!want) {
      event_del(c.read_event);
      return;
    }
    const uint32_t ms = one_shot_ ? options_.command_timeout_ms : options_.idle_timeout_ms;
    if (ms != 0) {
      const timeval tv = msToTimeval(ms);
      event_add(c.read_event, &tv);
    } else {
      event_add(c.read_event, nullptr);
    }
  }

  void readable(Connection& c, short what) {
    if (c.fd < 0) return;
    if ((what & EV_TIMEOUT) != 0 && (what & EV_READ) == 0) {
      if (c.queue_count != 0) return;  // waiting for us, not idle
      ++counters_.idle_timeouts;
      closeConnection(c);
      return;
    }
    c.last_active = ++activity_seq_;
    ++c.busy;
    if (one_shot_) {
      readCommand(c);
    } else {
      processLines(c);
      if (wantsToRead(c)) readLines(c);
    }
    --c.busy;
    afterProgress(c);
  }

  // unix: one read() is the command, as rtpproxy does ("\n" optional; two
  // lines in one write are one command).
  void readCommand(Connection& c) {
    if (pool_.exhausted()) {  // read it once a slot is free, or it is lost
      starve(c);
      return;
    }
    const ssize_t n = read(c.fd, c.in, sizeof c.in);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) closeConnection(c);
      return;
    }
    if (n == 0) {
      closeConnection(c);
      return;
    }
    c.got_command = true;
    updateReading(c);
    if (static_cast<size_t>(n) > kMaxCommandBytes) ++counters_.oversized;
    submit(c, std::string_view(c.in, static_cast<size_t>(n)));
  }

  void readLines(Connection& c) {
    const size_t room = sizeof c.in - c.in_length;
    const ssize_t n = read(c.fd, c.in + c.in_length, room);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) closeConnection(c);
      return;
    }
    if (n == 0) {
      // What was sent in full is still answered; a partial last line is not
      // a command (rtpproxy waits for its "\n" forever).
      c.eof = true;
      return;
    }
    c.in_length += static_cast<size_t>(n);
    processLines(c);
  }

  void processLines(Connection& c) {
    size_t start = 0;
    while (!c.close_pending && !c.starved && c.queue_count < per_connection_limit_) {
      const char* line = c.in + start;
      const auto* newline =
          static_cast<const char*>(std::memchr(line, '\n', c.in_length - start));
      if (newline == nullptr) break;
      const size_t length = static_cast<size_t>(newline - line);
      if (c.discarding) {
        c.discarding = false;
      } else if (!submit(c, std::string_view(line, length))) {
        break;
      }
      start += length + 1;
    }
    if (start != 0) {
      std::memmove(c.in, c.in + start, c.in_length - start);
      c.in_length -= start;
    }
    if (c.in_length == sizeof c.in && !c.close_pending) {
      // A full buffer without "\n": the line is longer than any command.
      if (c.discarding) {
        c.in_length = 0;
      } else if (!c.starved && c.queue_count < per_connection_limit_) {
        ++counters_.oversized;
        if (submit(c, std::string_view(c.in, c.in_length))) {
          c.discarding = true;
          c.in_length = 0;
        }
      }
    }
    c.backlog = c.in_length != 0 && (c.in_length == sizeof c.in ||
                                     std::memchr(c.in, '\n', c.in_length) != nullptr);
  }

  // Hands one command to the handler; false when no request slot is free.
  bool submit(Connection& c, std::string_view text) {
    RequestSlot* slot = pool_.acquire(this);
    if (slot == nullptr) {
      starve(c);
      return false;
    }
    ++counters_.received;
    slot->storage.assign(text.data(), text.size());
    slot->text = slot->storage;
    slot->parse = parseCommand(slot->text, Framing::kStream, slot->command);
    slot->received_ns = monotonicNs();
    slot->connection = &c;
    slot->done = false;
    c.queue[(c.queue_head + c.queue_count) % kMaxQueuePerConnection] = slot;
    ++c.queue_count;
    if (!slot->parse.ok) ++counters_.malformed;
    handler_->onCommand(slot);
    return true;
  }

  void starve(Connection& c) {
    if (c.starved) return;
    c.starved = true;
    c.next_starved = starved_;
    starved_ = &c;
    updateReading(c);
  }

  void popHead(Connection& c) {
    c.queue_head = (c.queue_head + 1) % kMaxQueuePerConnection;
    --c.queue_count;
  }

  void appendReply(Connection& c, std::string_view body) {
    if (c.close_pending) return;
    c.out.append(body.data(), body.size());
    c.out.push_back('\n');
  }

  void flushOut(Connection& c) {
    if (c.close_pending || c.fd < 0) return;
    while (c.out_sent < c.out.size()) {
      const ssize_t n = ::send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent,
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          if (!c.writing) {
            event_add(c.write_event, nullptr);
            c.writing = true;
          }
          return;
        }
        // The client is gone: what is left is dropped.
        ++counters_.send_errors;
        closeConnection(c);
        return;
      }
      c.out_sent += static_cast<size_t>(n);
    }
    c.out.clear();
    c.out_sent = 0;
    if (c.writing) {
      event_del(c.write_event);
      c.writing = false;
    }
  }

  // After anything that may have finished the connection's work.
  void afterProgress(Connection& c) {
    if (c.busy != 0 || c.fd < 0) return;
    if (c.close_pending) {
      finishClose(c);
      return;
    }
    const bool idle = c.queue_count == 0 && c.out.empty() && !c.backlog;
    if (idle && (c.eof || (one_shot_ && c.got_command))) {
      finishClose(c);
      return;
    }
    updateReading(c);
    // Clients wait in the backlog because every connection was busy: this
    // one is idle now and can make room for the next.
    if (paused_full_ && isIdle(c)) {
      paused_full_ = false;
      if (!accepting_) {
        event_add(listen_event_, nullptr);
        accepting_ = true;
      }
    }
    // Complete lines may wait in the buffer from when the connection was
    // paused; no readiness event will come for them.
    if (c.backlog && !c.starved && c.queue_count < per_connection_limit_) {
      c.backlog = false;
      event_active(c.read_event, EV_READ, 0);
    }
  }

  void closeConnection(Connection& c) {
    if (c.fd < 0) return;
    c.close_pending = true;
    if (c.busy == 0) finishClose(c);
  }

  void finishClose(Connection& c) {
    if (c.fd < 0) return;
    event_del(c.read_event);
    event_del(c.write_event);
    close(c.fd);
    c.fd = -1;
    c.reading = c.writing = false;
    // Answered requests waiting for their turn are dropped now; the rest are
    // released when the handler replies.
    while (c.queue_count != 0) {
      RequestSlot* slot = c.queue[c.queue_head];
      popHead(c);
      if (slot->done) {
        releaseSlot(slot);
      } else {
        slot->connection = nullptr;
      }
    }
    if (c.starved) {
      for (Connection** p = &starved_; *p != nullptr; p = &(*p)->next_starved) {
        if (*p == &c) {
          *p = c.next_starved;
          break;
        }
      }
      c.starved = false;
    }
    c.out.clear();
    c.out_sent = 0;
    c.in_length = 0;
    c.next_free = free_connections_;
    free_connections_ = &c;
    --active_connections_;
    paused_full_ = false;
    resumeAccepting();
  }

  void releaseSlot(RequestSlot* slot) {
    pool_.release(slot);
    // A connection that ran out of slots may go on.
    if (starved_ != nullptr) {
      Connection* c = starved_;
      starved_ = c->next_starved;
      c->next_starved = nullptr;
      c->starved = false;
      event_active(c->read_event, EV_READ, 0);
    }
  }

  const bool one_shot_;
  const size_t per_connection_limit_;
  const size_t max_connections_;
  std::vector<std::unique_ptr<Connection>> connections_;
  Connection* free_connections_ = nullptr;
  Connection* starved_ = nullptr;
  size_t active_connections_ = 0;
  uint64_t activity_seq_ = 0;  // orders connections by last activity (for eviction)
  LogLimiter log_evicted_{1, 10'000};
  bool accepting_ = true;
  bool paused_full_ = false;  // not accepting because every connection is busy
  event* accept_retry_event_ = nullptr;
};

bool checkSocket(int fd, const SocketAddress& address, std::string& error) {
  int type = 0;
  socklen_t length = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
    error = errnoText("not a socket");
    return false;
  }
  const bool datagram = isDatagram(address.transport);
  if (type != (datagram ? SOCK_DGRAM : SOCK_STREAM)) {
    error = std::string("inherited socket is not a ") + (datagram ? "datagram" : "stream") +
            " socket, as " + std::string(transportName(address.transport)) + " needs";
    return false;
  }
  int domain = 0;
  length = sizeof domain;
  const int expected = isUnixPath(address.transport) ? AF_UNIX
                       : isIpv6(address.transport)   ? AF_INET6
                                                     : AF_INET;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0 || domain != expected) {
    error = "inherited socket has the wrong address family for " +
            std::string(transportName(address.transport));
    return false;
  }
  if (!datagram) {
    int listening = 0;
    length = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 || listening == 0) {
      error = "inherited stream socket is not listening";
      return false;
    }
  }
  return true;
}

std::unique_ptr<ListenerBase> makeListener(event_base* base, const SocketAddress& address, int fd,
                                           CommandHandler* handler,
                                           const ControlListenerOptions& options,
                                           std::string& error) {
  std::unique_ptr<ListenerBase> listener;
  bool ok;
  if (isDatagram(address.transport)) {
    listener = std::make_unique<DatagramListener>(base, address, fd, handler, options);
    ok = listener->start(&DatagramListener::onReadable, error);
  } else {
    listener = std::make_unique<StreamListener>(base, address, fd, handler, options);
    ok = listener->start(&StreamListener::onAcceptable, error);
  }
  if (!ok) {
    listener->disownFd();
    return nullptr;
  }
  return listener;
}

}  // namespace

std::unique_ptr<ControlListener> ControlListener::adopt(event_base* base,
                                                        const SocketAddress& address, int fd,
                                                        CommandHandler* handler,
                                                        std::string& error,
                                                        const ControlListenerOptions& options) {
  if (!checkSocket(fd, address, error)) return nullptr;
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    error = errnoText("cannot make the inherited socket non-blocking");
    return nullptr;
  }
  auto listener = makeListener(base, address, fd, handler, options, error);
  if (listener == nullptr) return nullptr;
  return listener;
}

std::unique_ptr<ControlListener> ControlListener::bind(event_base* base,
                                                       const SocketAddress& address,
                                                       CommandHandler* handler,
                                                       std::string& error,
                                                       const ControlListenerOptions& options) {
  ControlBindOptions bind_options;
  bind_options.nonblocking = true;  // straight onto this process's loop
  SocketFileId file;
  const int fd = bindControlSocket(address, bind_options, file, error);
  if (fd < 0) return nullptr;
  auto listener = makeListener(base, address, fd, handler, options, error);
  if (listener == nullptr) {
    close(fd);
    removeSocketFileIfOurs(address.path, file);
    return nullptr;
  }
  listener->ownPath(address.path, file);
  return listener;
}

}  // namespace rtpc
