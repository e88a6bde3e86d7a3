#include "worker/member_link.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <limits>
#include <optional>
#include <vector>

#include "shared/rtpp_command.h"
#include "shared/rtpp_reply.h"

namespace rtpc {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr Clock::time_point kNever = Clock::time_point::max();

// Rounded up, so that a timer never fires before the instant it stands for.
timeval toTimeval(Clock::duration d) {
  if (d < Clock::duration::zero()) d = Clock::duration::zero();
  auto us = duration_cast<microseconds>(d);
  if (us < d) ++us;
  const auto count = us.count();
  return timeval{static_cast<time_t>(count / 1000000), static_cast<suseconds_t>(count % 1000000)};
}

bool isTransient(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ENOBUFS;
}

// Replies are short text; anything else means a confused or hostile peer.
// An empty body is text: `G` with no names answers an empty line.
bool isReplyText(std::string_view body) {
  if (body.size() > kReplyBufferBytes) return false;
  for (char c : body) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\r' && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

// Length of the first complete reply at the start of `avail` on a stream,
// where a multi-line reply has no delimiter: one line, or for an I command the
// lines rtpproxy prints (5, 6 with `l`) unless it answered an E line.
// npos while incomplete.
size_t framedReplyLength(std::string_view avail, MemberLink::ReplyShape shape) {
  const size_t first_nl = avail.find('\n');
  if (first_nl == std::string_view::npos) return std::string_view::npos;
  size_t lines = 1;
  if (shape != MemberLink::ReplyShape::kLine && avail[0] != 'E') {
    lines = shape == MemberLink::ReplyShape::kInfo ? 5 : 6;
  }
  size_t end = first_nl + 1;
  for (size_t l = 1; l < lines; ++l) {
    const size_t nl = avail.find('\n', end);
    if (nl == std::string_view::npos) return std::string_view::npos;
    end = nl + 1;
  }
  return end;
}

std::string_view trimTrailingNewlines(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

uint64_t randomBits() {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof v)) {
    // No entropy yet (early boot): time and pid still differ between restarts.
    v = static_cast<uint64_t>(Clock::now().time_since_epoch().count()) * 0x9e3779b97f4a7c15ull ^
        (static_cast<uint64_t>(getpid()) << 32);
  }
  return v;
}

constexpr char kHex[] = "0123456789abcdef";

void appendHex(std::string& out, uint32_t v, int digits) {
  for (int i = digits - 1; i >= 0; --i) out.push_back(kHex[(v >> (4 * i)) & 0xf]);
}

bool parseHex(std::string_view s, uint32_t& v) {
  v = 0;
  for (char c : s) {
    uint32_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint32_t>(c - 'a' + 10);
    } else {
      return false;
    }
    v = (v << 4) | d;
  }
  return true;
}

std::string errnoText(std::string_view what, int err) {
  std::string s(what);
  s += ": ";
  s += std::strerror(err);
  return s;
}

// Opens a non-blocking socket, binds it to `source` when given and starts
// connecting. Returns the fd (with `in_progress` set when the connect has not
// finished yet), or -1 with `error`.
int openConnected(const ResolvedAddress& target, int type, const ResolvedAddress* source,
                  bool& in_progress, std::string& error) {
  in_progress = false;
  const int fd = socket(target.family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = errnoText("socket", errno);
    return -1;
  }
  if (source != nullptr && bind(fd, source->sa(), source->length) != 0) {
    error = errnoText("bind cmd_out_address", errno);
    close(fd);
    return -1;
  }
  if (type == SOCK_STREAM && target.family != AF_UNIX) {
    // Commands are small and latency-bound.
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (connect(fd, target.sa(), target.length) != 0) {
    if (errno == EINPROGRESS) {
      in_progress = true;
      return fd;
    }
    error = errnoText("connect", errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

SocketAddress cmdOutSocketAddress(const SocketAddress& member, const std::string& cmd_out_address) {
  SocketAddress src;
  src.transport = member.transport;
  src.host = cmd_out_address;
  if (src.host.size() > 2 && src.host.front() == '[' && src.host.back() == ']') {
    src.host = src.host.substr(1, src.host.size() - 2);
  }
  return src;
}

namespace {

// What every transport shares: where to send, whom to tell, what was counted.
class LinkBase : public MemberLink {
 public:
  LinkBase(event_base* base, const MemberLinkOptions& options, MemberLinkClient* client)
      : base_(base), options_(options), client_(client) {
    options_.max_retry = std::max(options_.max_retry, options_.min_retry);
    resolveTarget();
    if (!options_.cmd_out_address.empty() && !isUnixPath(options_.address.transport)) {
      const SocketAddress src = cmdOutSocketAddress(options_.address, options_.cmd_out_address);
      std::string error;
      if (options_.source) {
        source_ = *options_.source;
        has_source_ = true;
      } else if (needsNameResolution(src)) {
        target_ok_ = false;
        target_error_ = "cmd_out_address " + options_.cmd_out_address + ": host name not resolved";
      } else if (!resolveAddress(src, source_, error)) {
        target_ok_ = false;
        target_error_ = "cmd_out_address " + options_.cmd_out_address + ": " + error;
      } else {
        has_source_ = true;
      }
    }
  }

  std::chrono::microseconds smoothedRtt() const override { return srtt_; }
  const MemberLinkCounters& counters() const override { return counters_; }

 protected:
  // The one place a command ends: counts the outcome, then tells the client.
  void complete(uint64_t token, LinkOutcome outcome, std::string_view body) {
    switch (outcome) {
      case LinkOutcome::kReply: ++counters_.replies; break;
      case LinkOutcome::kTimeout: ++counters_.timeouts; break;
      case LinkOutcome::kError: ++counters_.errors; break;
    }
    client_->onMemberReply(token, outcome, body);
  }

  // Karn: only commands answered without a retransmission give a sample,
  // since a reply to a retransmitted one cannot be matched to its send.
  void addRttSample(Clock::duration sample) {
    const auto us = std::max(duration_cast<microseconds>(sample), microseconds(1));
    counters_.rtt.observe(static_cast<uint64_t>(us.count()));
    if (srtt_ == microseconds::zero()) {
      srtt_ = us;
    } else {
      srtt_ += (us - srtt_) / 8;
      if (srtt_ <= microseconds::zero()) srtt_ = microseconds(1);
    }
  }

  const ResolvedAddress* source() const { return has_source_ ? &source_ : nullptr; }

  // A deadline that passed while the worker's loop was not running (a stall)
  // moves to after the stall: the reply may be queued unread. True when moved.
  bool postponed(Clock::time_point& deadline, Clock::time_point now) {
    if (options_.stall == nullptr) return false;
    const auto ms = [](Clock::time_point t) {
      return static_cast<uint64_t>(duration_cast<milliseconds>(t.time_since_epoch()).count());
    };
    const std::optional<uint64_t> until = options_.stall->postpone(ms(deadline), ms(now));
    if (!until) return false;
    deadline = Clock::time_point(milliseconds(*until));
    return true;
  }

  // Never asks the resolver: a host name comes resolved in options_.target.
  void resolveTarget() {
    if (options_.target) {
      target_ = *options_.target;
      target_ok_ = true;
    } else if (needsNameResolution(options_.address)) {
      target_error_ = "member address " + options_.address.uri() + ": host name not resolved";
    } else if (!resolveAddress(options_.address, target_, target_error_)) {
      target_error_ = "member address " + options_.address.uri() + ": " + target_error_;
    } else {
      target_ok_ = true;
    }
  }

  event_base* base_;
  MemberLinkOptions options_;
  MemberLinkClient* client_;
  ResolvedAddress target_;
  ResolvedAddress source_;
  bool target_ok_ = false;
  bool has_source_ = false;
  std::string target_error_;
  MemberLinkCounters counters_;
  microseconds srtt_{0};
  // Commands sent before a cancelAll()/failure sweep carry an older epoch, so
  // a sweep skips the commands its own callbacks send.
  uint64_t epoch_ = 0;
};

// ---------------------------------------------------------------------------
// udp / udp6

// Replies are read into one area per thread: every link of a worker runs on
// its thread's event loop, and reads never nest (a client callback may send,
// but only the loop reads), so links need not each own a batch.
struct RecvBatch {
  static constexpr size_t kMessages = 32;
  // Larger than any acceptable reply, so that an over-long one is seen as such.
  static constexpr size_t kBytes = 4096;
  char data[kMessages][kBytes];
  iovec iov[kMessages];
  mmsghdr msgs[kMessages];
};

RecvBatch& recvBatch() {
  thread_local std::unique_ptr<RecvBatch> batch;
  if (!batch) {
    batch = std::make_unique<RecvBatch>();
    for (size_t i = 0; i < RecvBatch::kMessages; ++i) {
      batch->iov[i] = iovec{batch->data[i], RecvBatch::kBytes};
    }
  }
  return *batch;
}

class UdpLink final : public LinkBase {
 public:
  // Cookie: 8 hex nonce, 4 hex slot, 8 hex sequence. The slot gives the
  // pending command directly; the sequence tells a late reply from the slot's
  // current command; the nonce (random per link, and the sequence starts at a
  // random value) keeps a restarted worker from reusing a cookie that a
  // member still caches.
  static constexpr size_t kCookieBytes = 20;
  static constexpr size_t kMaxSlots = 0x10000;

  UdpLink(event_base* base, const MemberLinkOptions& options, MemberLinkClient* client)
      : LinkBase(base, options, client) {
    const uint64_t r = randomBits();
    nonce_ = static_cast<uint32_t>(r >> 32);
    next_seq_ = static_cast<uint32_t>(r);
    event_assign(&flush_ev_, base_, -1, 0, &UdpLink::onFlush, this);
  }

  ~UdpLink() override {
    event_del(&flush_ev_);
    for (Slot& s : slots_) event_del(&s.timer);
    if (fd_ >= 0) {
      event_del(&read_ev_);
      close(fd_);
    }
  }

  void send(std::string_view command, milliseconds timeout, uint64_t token, ReplyShape) override {
    if (!target_ok_) return complete(token, LinkOutcome::kError, target_error_);
    if (command.size() > kMaxCommandBytes) {
      return complete(token, LinkOutcome::kError, "command too long");
    }
    if (fd_ < 0) {
      std::string error;
      if (!openSocket(error)) return complete(token, LinkOutcome::kError, error);
    }
    if (free_.empty()) {
      if (slots_.size() >= kMaxSlots) {
        return complete(token, LinkOutcome::kError, "too many commands in flight");
      }
      // Growth only: slots are reused, so steady state allocates nothing.
      Slot& s = slots_.emplace_back();
      s.link = this;
      s.index = static_cast<uint16_t>(slots_.size() - 1);
      evtimer_assign(&s.timer, base_, &UdpLink::onTimer, &s);
      free_.push_back(s.index);
    }
    Slot& s = slots_[free_.back()];
    free_.pop_back();
    s.busy = true;
    s.seq = next_seq_++;
    s.token = token;
    s.epoch = epoch_;
    s.retransmits = 0;
    s.wire.clear();
    appendHex(s.wire, nonce_, 8);
    appendHex(s.wire, s.index, 4);
    appendHex(s.wire, s.seq, 8);
    s.wire.push_back(' ');
    s.wire.append(command);
    ++in_flight_;
    ++counters_.sent;

    const Clock::time_point now = Clock::now();
    s.sent_at = now;
    s.deadline = now + timeout;
    s.interval = firstInterval();
    s.next_retry = options_.max_retransmits > 0 ? now + s.interval : kNever;
    arm(s, now);
    // The first transmission waits for the flush event, which libevent runs
    // right after the current callback: the commands of one upstream receive
    // batch leave in one sendmmsg instead of one send each.
    pending_.push_back(Pending{s.index, s.seq});
    if (!flush_scheduled_) {
      flush_scheduled_ = true;
      event_active(&flush_ev_, 0, 0);
    }
  }

  void cancelAll() override { failSwept(LinkOutcome::kError, "cancelled"); }

  size_t inFlight() const override { return in_flight_; }

 private:
  struct Slot {
    UdpLink* link = nullptr;
    uint16_t index = 0;
    bool busy = false;
    uint32_t seq = 0;
    uint32_t retransmits = 0;
    uint64_t token = 0;
    uint64_t epoch = 0;
    Clock::time_point sent_at;
    Clock::time_point deadline;
    Clock::time_point next_retry;
    Clock::duration interval{};
    std::string wire;  // cookie, space, command: kept for retransmission, capacity reused
    // One timer per slot, assigned once: libevent's timer heap already orders
    // retries and deadlines in O(log n) without allocating, which a single
    // link timer would need a heap of its own to do.
    event timer{};
  };

  Clock::duration firstInterval() const {
    if (srtt_ == microseconds::zero()) return options_.first_retry;
    return std::clamp<Clock::duration>(2 * srtt_, options_.min_retry, options_.max_retry);
  }

  bool openSocket(std::string& error) {
    bool in_progress = false;
    const int fd = openConnected(target_, SOCK_DGRAM, source(), in_progress, error);
    if (fd < 0) return false;
    // Room for a burst of replies between two loop iterations.
    const int size = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    fd_ = fd;
    event_assign(&read_ev_, base_, fd_, EV_READ | EV_PERSIST, &UdpLink::onReadable, this);
    event_add(&read_ev_, nullptr);
    return true;
  }

  // Sends the slot's datagram. A full socket buffer is a lost datagram for the
  // retransmit timer to repair. Returns whether the command is still pending.
  bool transmit(Slot& s) {
    if (::send(fd_, s.wire.data(), s.wire.size(), 0) >= 0) return true;
    return sendFailed(s, errno);
  }

  // What a failed send of the slot's datagram means; as transmit().
  bool sendFailed(Slot& s, int err) {
    if (isTransient(err)) return true;
    if (err == ECONNREFUSED) {
      // The ICMP error of an earlier datagram: nobody listens on the member's
      // port, so nothing in flight will be answered.
      failSwept(LinkOutcome::kError, "connection refused");
      return false;
    }
    finish(s, LinkOutcome::kError, errnoText("send", err));
    return false;
  }

  void arm(Slot& s, Clock::time_point now) {
    const Clock::time_point at = std::min(s.next_retry, s.deadline);
    const timeval tv = toTimeval(at - now);
    evtimer_add(&s.timer, &tv);
  }

  void finish(Slot& s, LinkOutcome outcome, std::string_view body) {
    evtimer_del(&s.timer);
    s.busy = false;
    free_.push_back(s.index);
    --in_flight_;
    // The slot is free before the call, so the client may send again at once.
    complete(s.token, outcome, body);
  }

  // Fails every command sent before the sweep began; commands the callbacks
  // send meanwhile are newer and stay.
  void failSwept(LinkOutcome outcome, std::string_view reason) {
    const uint64_t epoch = ++epoch_;
    // Index loop: a callback's send() may grow the table (deque: no moves).
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.busy && s.epoch < epoch) finish(s, outcome, reason);
    }
  }

  static void onTimer(evutil_socket_t, short, void* arg) {
    Slot& s = *static_cast<Slot*>(arg);
    s.link->onSlotTimer(s);
  }

  static void onFlush(evutil_socket_t, short, void* arg) {
    static_cast<UdpLink*>(arg)->flushPending();
  }

  void flushPending() {
    flush_scheduled_ = false;
    // Sends made by the callbacks below go to pending_ and a new flush.
    flushing_.swap(pending_);
    pending_.clear();
    constexpr size_t kMax = 64;
    mmsghdr msgs[kMax];
    iovec iov[kMax];
    Pending batch[kMax];
    size_t next = 0;
    while (next < flushing_.size()) {
      size_t n = 0;
      for (; next < flushing_.size() && n < kMax; ++next) {
        Slot& s = slots_[flushing_[next].index];
        // Finished meanwhile (sweep, cancel), maybe reused by a newer command.
        if (!s.busy || s.seq != flushing_[next].seq) continue;
        iov[n] = iovec{s.wire.data(), s.wire.size()};
        msgs[n] = mmsghdr{};
        msgs[n].msg_hdr.msg_iov = &iov[n];
        msgs[n].msg_hdr.msg_iovlen = 1;
        batch[n] = flushing_[next];
        ++n;
      }
      for (size_t done = 0; done < n;) {
        const int r = sendmmsg(fd_, msgs + done, static_cast<unsigned>(n - done), 0);
        if (r > 0) {
          done += static_cast<size_t>(r);
          continue;
        }
        const int err = r < 0 ? errno : EAGAIN;
        if (r < 0 && err == EINTR) continue;
        // The first of the rest failed. Its callback may finish (and reuse)
        // any slot, so the ones after it are checked again one by one.
        Slot& s = slots_[batch[done].index];
        ++done;
        if (!sendFailed(s, err)) {
          for (; done < n; ++done) {
            Slot& rest = slots_[batch[done].index];
            if (rest.busy && rest.seq == batch[done].seq) transmit(rest);
          }
        }
      }
    }
    flushing_.clear();
  }

  void onSlotTimer(Slot& s) {
    if (!s.busy) return;
    const Clock::time_point now = Clock::now();
    if (now >= s.deadline && !postponed(s.deadline, now)) {
      finish(s, LinkOutcome::kTimeout, "timeout");
      return;
    }
    if (now >= s.next_retry) {
      ++s.retransmits;
      ++counters_.retransmits;
      s.interval = std::min<Clock::duration>(2 * s.interval, options_.max_retry);
      s.next_retry = s.retransmits < options_.max_retransmits ? now + s.interval : kNever;
      // Same cookie: the member's reply cache answers a duplicate without
      // running the command twice.
      if (!transmit(s)) return;
    }
    arm(s, now);
  }

  static void onReadable(evutil_socket_t, short, void* arg) {
    static_cast<UdpLink*>(arg)->readReplies();
  }

  void readReplies() {
    RecvBatch& b = recvBatch();
    // Bounded, so that one busy member cannot starve the rest of the loop.
    for (int round = 0; round < 8; ++round) {
      for (size_t i = 0; i < RecvBatch::kMessages; ++i) {
        b.msgs[i].msg_hdr = msghdr{};
        b.msgs[i].msg_hdr.msg_iov = &b.iov[i];
        b.msgs[i].msg_hdr.msg_iovlen = 1;
      }
      const int n = recvmmsg(fd_, b.msgs, RecvBatch::kMessages, MSG_DONTWAIT, nullptr);
      if (n < 0) {
        if (errno == ECONNREFUSED) {
          failSwept(LinkOutcome::kError, "connection refused");
          continue;
        }
        return;
      }
      const Clock::time_point now = Clock::now();
      for (int i = 0; i < n; ++i) {
        const bool truncated = (b.msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        handleDatagram(std::string_view(b.data[i], b.msgs[i].msg_len), truncated, now);
      }
      if (static_cast<size_t>(n) < RecvBatch::kMessages) return;
    }
  }

  void handleDatagram(std::string_view datagram, bool truncated, Clock::time_point now) {
    std::string_view cookie;
    std::string_view body;
    uint32_t nonce = 0;
    uint32_t slot = 0;
    uint32_t seq = 0;
    if (truncated || !splitReplyCookie(datagram, cookie, body) || cookie.size() != kCookieBytes ||
        !parseHex(cookie.substr(0, 8), nonce) || !parseHex(cookie.substr(8, 4), slot) ||
        !parseHex(cookie.substr(12, 8), seq) || nonce != nonce_ || slot >= slots_.size()) {
      ++counters_.malformed;
      return;
    }
    Slot& s = slots_[slot];
    if (!s.busy || s.seq != seq) {
      ++counters_.late;
      return;
    }
    if (!isReplyText(body)) {
      // Keep waiting: a retransmission may still bring a proper answer.
      ++counters_.malformed;
      return;
    }
    if (s.retransmits == 0) addRttSample(now - s.sent_at);
    finish(s, LinkOutcome::kReply, trimTrailingNewlines(body));
  }

  int fd_ = -1;
  event read_ev_{};
  uint32_t nonce_ = 0;
  uint32_t next_seq_ = 0;
  std::deque<Slot> slots_;  // deque: a slot's address (its timer's) never moves
  std::vector<uint16_t> free_;
  size_t in_flight_ = 0;
  struct Pending {
    uint16_t index;
    uint32_t seq;
  };
  std::vector<Pending> pending_;   // sent by the next flush; capacity reused
  std::vector<Pending> flushing_;
  event flush_ev_{};
  bool flush_scheduled_ = false;
};

// ---------------------------------------------------------------------------
// unix: one connection per command. As the reference does, the reply ends at
// its newline (its line count for I) or where the peer closes, whichever comes
// first: rtpproxy's `unix:` closes after each answer, its `cunix:` keeps the
// connection open, and a `unix` member serves either.

class UnixLink final : public LinkBase {
 public:
  // rtpproxy's replies are at most 1 KiB; more is a confused peer.
  static constexpr size_t kMaxReplyBytes = 2 * kReplyBufferBytes;
  // A full listen backlog answers EAGAIN, not EINPROGRESS: try again soon.
  static constexpr microseconds kBacklogRetry{2000};

  using LinkBase::LinkBase;

  ~UnixLink() override {
    for (auto& c : conns_) {
      if (c->busy) release(*c);
    }
  }

  void send(std::string_view command, milliseconds timeout, uint64_t token,
            ReplyShape shape) override {
    if (!target_ok_) return complete(token, LinkOutcome::kError, target_error_);
    if (command.size() > kMaxCommandBytes) {
      return complete(token, LinkOutcome::kError, "command too long");
    }
    Conn* c;
    if (free_.empty()) {
      auto conn = std::make_unique<Conn>();
      conn->link = this;
      c = conn.get();
      conns_.push_back(std::move(conn));
      evtimer_assign(&c->timer, base_, &UnixLink::onTimer, c);
      // Assigned once with no fd, so that release() may always event_del it.
      event_assign(&c->io, base_, -1, 0, &UnixLink::onIo, c);
    } else {
      c = free_.back();
      free_.pop_back();
    }
    c->busy = true;
    c->token = token;
    c->shape = shape;
    c->epoch = epoch_;
    c->sent_at = Clock::now();
    c->deadline = c->sent_at + timeout;
    c->out.assign(command);
    c->out.push_back('\n');
    c->written = 0;
    c->in.clear();
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ++in_flight_;
    ++counters_.sent;
    if (c->fd < 0) return finish(*c, LinkOutcome::kError, errnoText("socket", errno));
    armDeadline(*c, Clock::now());
    tryConnect(*c);
  }

  void cancelAll() override {
    const uint64_t epoch = ++epoch_;
    for (size_t i = 0; i < conns_.size(); ++i) {
      Conn& c = *conns_[i];
      if (c.busy && c.epoch < epoch) finish(c, LinkOutcome::kError, "cancelled");
    }
  }

  size_t inFlight() const override { return in_flight_; }

 private:
  enum class Phase : uint8_t { kConnecting, kBacklogWait, kWriting, kReading };

  struct Conn {
    UnixLink* link = nullptr;
    bool busy = false;
    Phase phase = Phase::kConnecting;
    ReplyShape shape = ReplyShape::kLine;
    int fd = -1;
    uint64_t token = 0;
    uint64_t epoch = 0;
    Clock::time_point sent_at;
    Clock::time_point deadline;
    std::string out;
    size_t written = 0;
    std::string in;
    event io{};
    event timer{};
  };

  void armDeadline(Conn& c, Clock::time_point now) {
    const timeval tv = toTimeval(c.deadline - now);
    evtimer_add(&c.timer, &tv);
  }

  void watch(Conn& c, short what) {
    event_del(&c.io);
    event_assign(&c.io, base_, c.fd, static_cast<short>(what | EV_PERSIST), &UnixLink::onIo, &c);
    event_add(&c.io, nullptr);
  }

  void tryConnect(Conn& c) {
    if (connect(c.fd, target_.sa(), target_.length) == 0) {
      c.phase = Phase::kWriting;
      return writeCommand(c);
    }
    const int err = errno;
    if (err == EINPROGRESS) {
      c.phase = Phase::kConnecting;
      return watch(c, EV_WRITE);
    }
    if (err == EAGAIN) {
      c.phase = Phase::kBacklogWait;
      const Clock::time_point now = Clock::now();
      const Clock::time_point at = std::min(c.deadline, now + kBacklogRetry);
      const timeval tv = toTimeval(at - now);
      evtimer_add(&c.timer, &tv);
      return;
    }
    finish(c, LinkOutcome::kError, errnoText("connect", err));
  }

  void writeCommand(Conn& c) {
    while (c.written < c.out.size()) {
      const ssize_t n = ::send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return watch(c, EV_WRITE);
        return finish(c, LinkOutcome::kError, errnoText("send", errno));
      }
      c.written += static_cast<size_t>(n);
    }
    c.phase = Phase::kReading;
    watch(c, EV_READ);
  }

  void readReply(Conn& c) {
    char buf[4096];
    for (;;) {
      const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        if (c.in.size() + static_cast<size_t>(n) > kMaxReplyBytes) {
          ++counters_.malformed;
          return finish(c, LinkOutcome::kError, "reply too long");
        }
        c.in.append(buf, static_cast<size_t>(n));
        const size_t end = framedReplyLength(c.in, c.shape);
        if (end == std::string::npos) continue;
        c.in.resize(end);  // the connection is closed next: nothing may follow
        break;
      }
      if (n == 0) break;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return finish(c, LinkOutcome::kError, errnoText("recv", errno));
    }
    if (c.in.empty()) return finish(c, LinkOutcome::kError, "connection closed without a reply");
    if (!isReplyText(c.in)) {
      ++counters_.malformed;
      return finish(c, LinkOutcome::kError, "malformed reply");
    }
    // Includes the connection set-up, which every unix command pays.
    addRttSample(Clock::now() - c.sent_at);
    finish(c, LinkOutcome::kReply, trimTrailingNewlines(c.in));
  }

  static void onIo(evutil_socket_t, short, void* arg) {
    Conn& c = *static_cast<Conn*>(arg);
    UnixLink* self = c.link;
    if (c.phase == Phase::kConnecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return self->finish(c, LinkOutcome::kError, errnoText("connect", err));
      c.phase = Phase::kWriting;
    }
    if (c.phase == Phase::kWriting) return self->writeCommand(c);
    self->readReply(c);
  }

  static void onTimer(evutil_socket_t, short, void* arg) {
    Conn& c = *static_cast<Conn*>(arg);
    UnixLink* self = c.link;
    const Clock::time_point now = Clock::now();
    if (now >= c.deadline && !self->postponed(c.deadline, now)) {
      return self->finish(c, LinkOutcome::kTimeout, "timeout");
    }
    if (c.phase == Phase::kBacklogWait) {
      self->armDeadline(c, now);
      return self->tryConnect(c);
    }
    self->armDeadline(c, now);
  }

  // Closes the connection and returns the entry to the pool.
  void release(Conn& c) {
    event_del(&c.io);
    evtimer_del(&c.timer);
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    c.busy = false;
  }

  void finish(Conn& c, LinkOutcome outcome, std::string_view body) {
    release(c);
    --in_flight_;
    // The body may live in c.in: hand the entry back only after the call, so
    // that a send() from the callback cannot overwrite it.
    complete(c.token, outcome, body);
    free_.push_back(&c);
  }

  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> free_;
  size_t in_flight_ = 0;
};

// ---------------------------------------------------------------------------
// cunix / tcp / tcp6: one persistent connection, newline framing, FIFO replies.

// A growable FIFO that keeps its storage: no allocation per command once warm.
template <typename T>
class Ring {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  T& front() { return items_[head_]; }
  T& at(size_t i) { return items_[(head_ + i) & (items_.size() - 1)]; }
  void push(const T& v) {
    if (size_ == items_.size()) grow();
    items_[(head_ + size_) & (items_.size() - 1)] = v;
    ++size_;
  }
  void pop() {
    head_ = (head_ + 1) & (items_.size() - 1);
    --size_;
  }

 private:
  void grow() {
    std::vector<T> bigger(items_.empty() ? 16 : items_.size() * 2);
    for (size_t i = 0; i < size_; ++i) bigger[i] = at(i);
    items_.swap(bigger);
    head_ = 0;
  }
  std::vector<T> items_;
  size_t head_ = 0;
  size_t size_ = 0;
};

class StreamLink final : public LinkBase {
 public:
  // Enough for any reply rtpproxy writes (an I reply is 6 short lines) with a
  // burst of them behind it; a line that does not fit is a broken peer.
  static constexpr size_t kInBytes = 64 * 1024;

  StreamLink(event_base* base, const MemberLinkOptions& options, MemberLinkClient* client)
      : LinkBase(base, options, client), in_(new char[kInBytes]) {
    evtimer_assign(&timer_, base_, &StreamLink::onTimer, this);
  }

  ~StreamLink() override {
    evtimer_del(&timer_);
    closeSocket();
  }

  void send(std::string_view command, milliseconds timeout, uint64_t token, ReplyShape shape) override {
    if (!target_ok_) return complete(token, LinkOutcome::kError, target_error_);
    if (command.size() > kMaxCommandBytes) {
      return complete(token, LinkOutcome::kError, "command too long");
    }
    if (command.find('\n') != std::string_view::npos) {
      // It would become two commands and shift every later reply.
      return complete(token, LinkOutcome::kError, "command contains a newline");
    }
    if (fd_ < 0) {
      std::string error;
      if (!openSocket(error)) return complete(token, LinkOutcome::kError, error);
    }
    const Clock::time_point now = Clock::now();
    pending_.push(Pending{token, now, now + timeout, generation_, shape});
    ++counters_.sent;
    if (now + timeout < timer_at_) armTimer(now + timeout, now);
    out_.append(command);
    out_.push_back('\n');
    if (!connecting_) flush();
  }

  void cancelAll() override { reset(LinkOutcome::kError, "cancelled"); }

  size_t inFlight() const override { return pending_.size(); }

 private:
  struct Pending {
    uint64_t token = 0;
    Clock::time_point sent_at;
    Clock::time_point deadline;
    uint64_t generation = 0;  // the connection it was written to
    ReplyShape shape = ReplyShape::kLine;
  };

  bool openSocket(std::string& error) {
    bool in_progress = false;
    const int fd = openConnected(target_, SOCK_STREAM, source(), in_progress, error);
    if (fd < 0) return false;
    fd_ = fd;
    ++generation_;
    connecting_ = in_progress;
    event_assign(&read_ev_, base_, fd_, EV_READ | EV_PERSIST, &StreamLink::onReadable, this);
    event_assign(&write_ev_, base_, fd_, EV_WRITE, &StreamLink::onWritable, this);
    if (connecting_) {
      event_add(&write_ev_, nullptr);
    } else {
      event_add(&read_ev_, nullptr);
    }
    return true;
  }

  void closeSocket() {
    if (fd_ < 0) return;
    event_del(&read_ev_);
    event_del(&write_ev_);
    close(fd_);
    fd_ = -1;
    connecting_ = false;
    out_.clear();
    out_off_ = 0;
    in_begin_ = in_end_ = 0;
  }

  // The stream is unusable (timeout, error, junk): close it and fail every
  // command written to it. Commands the callbacks send go to a new connection.
  void reset(LinkOutcome outcome, std::string_view reason) {
    const uint64_t dead = generation_;
    closeSocket();
    timer_at_ = kNever;
    evtimer_del(&timer_);
    const Clock::time_point now = Clock::now();
    // Newer commands sit behind older ones, and a nested reset pops the
    // older ones itself, so each command still ends exactly once.
    while (!pending_.empty() && pending_.front().generation <= dead) {
      const Pending p = pending_.front();
      pending_.pop();
      const bool expired = now >= p.deadline;
      if (outcome == LinkOutcome::kTimeout) {
        complete(p.token, expired ? LinkOutcome::kTimeout : LinkOutcome::kError,
                 expired ? std::string_view("timeout") : std::string_view("stream reset after a timeout"));
      } else {
        complete(p.token, outcome, reason);
      }
    }
    rearmTimer(Clock::now());
  }

  void flush() {
    while (out_off_ < out_.size()) {
      const ssize_t n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          event_add(&write_ev_, nullptr);
          return;
        }
        return reset(LinkOutcome::kError, errnoText("send", errno));
      }
      out_off_ += static_cast<size_t>(n);
    }
    out_.clear();
    out_off_ = 0;
  }

  static void onWritable(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<StreamLink*>(arg);
    if (self->connecting_) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return self->reset(LinkOutcome::kError, errnoText("connect", err));
      self->connecting_ = false;
      event_add(&self->read_ev_, nullptr);
    }
    self->flush();
  }

  static void onReadable(evutil_socket_t, short, void* arg) {
    static_cast<StreamLink*>(arg)->readReplies();
  }

  void readReplies() {
    for (;;) {
      if (in_end_ == kInBytes) {
        if (in_begin_ == 0) {
          ++counters_.malformed;
          return reset(LinkOutcome::kError, "reply line too long");
        }
        std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
        in_end_ -= in_begin_;
        in_begin_ = 0;
      }
      const ssize_t n = recv(fd_, in_.get() + in_end_, kInBytes - in_end_, 0);
      if (n == 0) return reset(LinkOutcome::kError, "connection closed by member");
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        return reset(LinkOutcome::kError, errnoText("recv", errno));
      }
      in_end_ += static_cast<size_t>(n);
      if (!deliverReplies()) return;
      if (in_begin_ == in_end_) in_begin_ = in_end_ = 0;
      if (static_cast<size_t>(n) < kInBytes / 2) return;  // drained, most likely
    }
  }

  // Hands out every complete reply in the buffer. False when the connection
  // was reset meanwhile (by junk or by a callback's send()).
  bool deliverReplies() {
    const uint64_t generation = generation_;
    while (in_begin_ < in_end_) {
      if (pending_.empty() || pending_.front().generation != generation) {
        ++counters_.malformed;
        reset(LinkOutcome::kError, "unexpected data from member");
        return false;
      }
      const Pending& head = pending_.front();
      const std::string_view avail(in_.get() + in_begin_, in_end_ - in_begin_);
      const size_t end = framedReplyLength(avail, head.shape);
      if (end == std::string_view::npos) return true;
      const std::string_view body = avail.substr(0, end);
      if (!isReplyText(body)) {
        ++counters_.malformed;
        reset(LinkOutcome::kError, "malformed reply");
        return false;
      }
      const Pending p = head;
      pending_.pop();
      in_begin_ += end;
      const Clock::time_point now = Clock::now();
      addRttSample(now - p.sent_at);
      // The body stays valid through the call: nothing the callback can do
      // writes into the input buffer (a reset only moves the indices).
      complete(p.token, LinkOutcome::kReply, trimTrailingNewlines(body));
      if (generation_ != generation || fd_ < 0) return false;
    }
    return true;
  }

  void armTimer(Clock::time_point at, Clock::time_point now) {
    timer_at_ = at;
    const timeval tv = toTimeval(at - now);
    evtimer_add(&timer_, &tv);
  }

  void rearmTimer(Clock::time_point now) {
    Clock::time_point earliest = kNever;
    for (size_t i = 0; i < pending_.size(); ++i) earliest = std::min(earliest, pending_.at(i).deadline);
    if (earliest == kNever) {
      timer_at_ = kNever;
      evtimer_del(&timer_);
    } else {
      armTimer(earliest, now);
    }
  }

  // One link timer at the earliest deadline: any expiry kills the whole
  // connection, so per-command timers would buy nothing. Replies do not move
  // it; when it fires with nothing expired it moves to the next deadline.
  static void onTimer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<StreamLink*>(arg);
    const Clock::time_point now = Clock::now();
    self->timer_at_ = kNever;
    for (size_t i = 0; i < self->pending_.size(); ++i) {
      Pending& p = self->pending_.at(i);
      if (p.deadline <= now && !self->postponed(p.deadline, now)) {
        return self->reset(LinkOutcome::kTimeout, "timeout");
      }
    }
    self->rearmTimer(now);
  }

  int fd_ = -1;
  bool connecting_ = false;
  uint64_t generation_ = 0;
  event read_ev_{};
  event write_ev_{};
  event timer_{};
  Clock::time_point timer_at_ = kNever;
  Ring<Pending> pending_;
  std::string out_;
  size_t out_off_ = 0;
  std::unique_ptr<char[]> in_;
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
};

}  // namespace

std::unique_ptr<MemberLink> MemberLink::create(event_base* base, const MemberLinkOptions& options,
                                               MemberLinkClient* client) {
  switch (options.address.transport) {
    case Transport::kUdp:
    case Transport::kUdp6:
      return std::make_unique<UdpLink>(base, options, client);
    case Transport::kUnix:
      return std::make_unique<UnixLink>(base, options, client);
    case Transport::kCunix:
    case Transport::kTcp:
    case Transport::kTcp6:
      return std::make_unique<StreamLink>(base, options, client);
  }
  return nullptr;
}

}  // namespace rtpc
