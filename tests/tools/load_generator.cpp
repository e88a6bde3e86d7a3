#include "tests/tools/load_generator.h"

#include <getopt.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <string_view>

#include "shared/address.h"
#include "shared/fixed_buffer.h"
#include "shared/rtpp_reply.h"
#include "shared/time_util.h"

namespace rtpc {

namespace {

uint64_t nowNs() { return monotonicNs(); }

template <typename T>
bool parseNumber(std::string_view s, T& v) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

constexpr size_t kBatch = 64;
using Line = FixedBuffer<256>;

struct Slot {
  uint64_t call = 0;     // call number, part of the call-id
  uint64_t seq = 0;      // cookie sequence of the command in flight
  uint64_t sent_ns = 0;
  uint64_t last_send_ns = 0;  // --resend-ms: of the latest copy
  uint32_t sends = 0;         // --resend-ms: copies sent so far
  bool in_flight = false;
  bool deleting = false;  // the command in flight is the D
  uint8_t stage = 0;      // preload: 0 = the U, k = the D to release target k
};

class Driver {
 public:
  Driver(const LoadOptions& o, LoadResult& r)
      : o_(o), r_(r), slots_(o.window), preload_(o.preload != 0), budget_(o.preload) {
    prefix_ = "lg" + std::to_string(getpid()) + "_" + std::to_string(nowNs() % 1000000) + "_";
    // The relay caches replies by cookie alone for 35 s: a second run must not
    // reuse the first one's cookies. Sequences start at the (system-wide)
    // monotonic clock in ns, which moves faster than any run issues commands.
    next_seq_ = nowNs();
  }

  static bool resolveTarget(const std::string& uri, ResolvedAddress& ra, bool& datagram,
                            std::string& error) {
    const AddressResult parsed = parseAddressUri(uri, Transport::kUdp);
    if (!parsed.address) {
      error = uri + ": " + parsed.error;
      return false;
    }
    const SocketAddress& a = *parsed.address;
    if (a.transport == Transport::kUnix) {
      error = "unix: (one command per connection) is not supported; use cunix:";
      return false;
    }
    if (isUnixPath(a.transport)) {
      auto* un = reinterpret_cast<sockaddr_un*>(&ra.storage);
      if (a.path.size() >= sizeof un->sun_path) {
        error = "path too long";
        return false;
      }
      un->sun_family = AF_UNIX;
      std::memcpy(un->sun_path, a.path.c_str(), a.path.size() + 1);
      ra.length = sizeof(sockaddr_un);
      ra.family = AF_UNIX;
    } else if (!resolveAddress(a, ra, error)) {
      error = uri + ": " + error;
      return false;
    }
    datagram = isDatagram(a.transport);
    return true;
  }

  bool connectTarget(std::string& error) {
    dests_.resize(1 + o_.release.size());
    if (!resolveTarget(o_.target, dests_[0], datagram_, error)) return false;
    const ResolvedAddress& ra = dests_[0];
    if (preload_) {
      // One unconnected socket: U to the target, D to the release targets,
      // every reply matched by its cookie.
      if (!datagram_) {
        error = "--preload needs a udp/udp6 target";
        return false;
      }
      for (size_t k = 0; k < o_.release.size(); ++k) {
        bool dgram = false;
        if (!resolveTarget(o_.release[k], dests_[k + 1], dgram, error)) return false;
        if (!dgram || dests_[k + 1].family != ra.family) {
          error = o_.release[k] + ": --release must be a datagram address of the target's family";
          return false;
        }
      }
    } else if (!o_.release.empty()) {
      error = "--release only goes with --preload";
      return false;
    }
    fd_ = socket(ra.family, (datagram_ ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd_ < 0 || (!preload_ && connect(fd_, ra.sa(), ra.length) != 0)) {
      error = o_.target + ": " + std::strerror(errno);
      return false;
    }
    const int size = 4 << 20;
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    return true;
  }

  ~Driver() {
    if (fd_ >= 0) close(fd_);
  }

  void run() {
    const uint64_t start = nowNs();
    const uint64_t stop_at = start + static_cast<uint64_t>(o_.duration_s * 1e9);
    const uint64_t timeout_ns = uint64_t{o_.timeout_ms} * 1'000'000u;
    for (size_t i = 0; i < slots_.size(); ++i) startCall(i, start);
    uint64_t last_scan = start;
    for (;;) {
      flush();
      uint64_t now = nowNs();
      if (preload_) {
        stopping_ = budget_ == 0;  // the last calls' stages still run to completion
      } else {
        stopping_ = stopping_ || (o_.count == 0 ? now >= stop_at : issued_ >= o_.count);
      }
      if (stopping_ && inFlight() == 0) break;
      pollfd p{fd_, POLLIN, 0};
      poll(&p, 1, 5);
      receive();
      now = nowNs();
      if (now - last_scan > 5'000'000) {
        last_scan = now;
        scanTimeouts(now, timeout_ns);
        if (broken_) break;
      }
    }
    r_.seconds = static_cast<double>(nowNs() - start) / 1e9;
  }

  LatencyHistogram histogram;

 private:
  size_t inFlight() const {
    size_t n = 0;
    for (const Slot& s : slots_) n += s.in_flight ? 1 : 0;
    return n;
  }

  void startCall(size_t i, uint64_t now) {
    Slot& s = slots_[i];
    if (preload_) {
      if (budget_ == 0) {
        s.in_flight = false;
        return;
      }
      --budget_;
    }
    s.call = next_call_++;
    s.deleting = false;
    s.stage = 0;
    issue(i, now);
  }

  void issue(size_t i, uint64_t now) {
    Slot& s = slots_[i];
    if (!preload_ && (stopping_ || (o_.count != 0 && issued_ >= o_.count))) {
      s.in_flight = false;
      return;
    }
    ++issued_;
    s.seq = next_seq_++;
    s.sent_ns = now;
    s.last_send_ns = now;
    s.sends = 1;
    s.in_flight = true;
    out_dest_[nout_] = s.stage;
    Line& l = out_[nout_++];
    format(i, l);
    if (!datagram_) fifo_.push_back(i);
    if (nout_ == kBatch) flush();
  }

  // The wire text of slot i's command: the same bytes for every copy.
  void format(size_t i, Line& l) {
    const Slot& s = slots_[i];
    l.clear();
    if (datagram_) {
      l.appendUnsigned(i) && l.append('_') && l.appendUnsigned(s.seq) && l.append(' ');
    }
    if (!s.deleting) {
      l.append("U ") && l.append(prefix_) && l.appendUnsigned(s.call) &&
          l.append(" 192.0.2.1 10000 ft") && l.appendUnsigned(s.call);
    } else {
      l.append("D ") && l.append(prefix_) && l.appendUnsigned(s.call) && l.append(" ft") &&
          l.appendUnsigned(s.call);
    }
    l.append('\n');
  }

  // Kamailio's resend: the same datagram (cookie included) once more.
  void resend(size_t i, uint64_t now) {
    Slot& s = slots_[i];
    Line l;
    format(i, l);
    if (preload_) {
      const ResolvedAddress& d = dests_[s.stage];
      sendto(fd_, l.data(), l.size(), 0, reinterpret_cast<const sockaddr*>(&d.storage), d.length);
    } else {
      ::send(fd_, l.data(), l.size(), 0);
    }
    s.last_send_ns = now;
    ++s.sends;
    ++r_.resends;
  }

  void flush() {
    if (nout_ == 0) return;
    if (datagram_) {
      mmsghdr msgs[kBatch]{};
      iovec iov[kBatch];
      for (size_t i = 0; i < nout_; ++i) {
        iov[i] = iovec{const_cast<char*>(out_[i].data()), out_[i].size()};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if (preload_) {
          ResolvedAddress& d = dests_[out_dest_[i]];
          msgs[i].msg_hdr.msg_name = &d.storage;
          msgs[i].msg_hdr.msg_namelen = d.length;
        }
      }
      for (size_t sent = 0; sent < nout_;) {
        const int r = sendmmsg(fd_, msgs + sent, static_cast<unsigned>(nout_ - sent), 0);
        if (r <= 0) {
          if (r < 0 && errno == EINTR) continue;
          ++sent;  // lost (e.g. ECONNREFUSED): it will time out
          continue;
        }
        sent += static_cast<size_t>(r);
      }
    } else {
      std::string all;
      for (size_t i = 0; i < nout_; ++i) all.append(out_[i].view());
      size_t off = 0;
      while (off < all.size()) {
        const ssize_t w = send(fd_, all.data() + off, all.size() - off, MSG_NOSIGNAL);
        if (w <= 0) {
          if (w < 0 && errno == EINTR) continue;
          broken_ = true;
          break;
        }
        off += static_cast<size_t>(w);
      }
    }
    nout_ = 0;
  }

  void complete(size_t i, std::string_view body, uint64_t now) {
    Slot& s = slots_[i];
    s.in_flight = false;
    histogram.record((now - s.sent_ns) / 1000);
    ++r_.commands;
    if (preload_ && s.stage > 0) {
      // A release D: whatever the relay says (the other relays do not know
      // the call), the next release target or the next call.
      if (s.stage < o_.release.size()) {
        ++s.stage;
        issue(i, now);
      } else {
        ++r_.calls;
        startCall(i, now);
      }
      return;
    }
    const RtppReply reply = classifyReply(body);
    const bool ok = s.deleting ? (reply.kind == ReplyKind::kNumber && reply.number == 0)
                               : (reply.port > 0 && (reply.kind == ReplyKind::kPort ||
                                                     reply.kind == ReplyKind::kNumber));
    if (!ok && ++r_.errors <= 3) {
      // A few samples make an error count actionable.
      std::fprintf(stderr, "rtpp_loadgen: unexpected %s reply: %.*s\n", s.deleting ? "D" : "U",
                   static_cast<int>(std::min<size_t>(body.size(), 200)), body.data());
    }
    if (preload_) {
      if (!ok) {
        ++budget_;  // not created: try another call instead
      } else if (!o_.release.empty()) {
        s.stage = 1;
        s.deleting = true;
        issue(i, now);
        return;
      } else {
        ++r_.calls;
      }
      startCall(i, now);
    } else if (s.deleting) {
      ++r_.calls;
      startCall(i, now);
    } else if (ok) {
      s.deleting = true;
      issue(i, now);
    } else {
      startCall(i, now);  // the U failed: nothing to delete
    }
  }

  void receive() {
    if (datagram_) {
      receiveDatagrams();
    } else {
      receiveStream();
    }
  }

  void receiveDatagrams() {
    for (;;) {
      mmsghdr msgs[kBatch]{};
      iovec iov[kBatch];
      for (size_t i = 0; i < kBatch; ++i) {
        iov[i] = iovec{in_[i], sizeof in_[i]};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      const int n = recvmmsg(fd_, msgs, kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) return;
      const uint64_t now = nowNs();
      for (int k = 0; k < n; ++k) {
        std::string_view d(in_[k], msgs[k].msg_len);
        std::string_view cookie, body;
        if (!splitReplyCookie(d, cookie, body)) continue;
        const size_t us = cookie.find('_');
        size_t slot = 0;
        uint64_t seq = 0;
        if (us == std::string_view::npos || !parseNumber(cookie.substr(0, us), slot) ||
            !parseNumber(cookie.substr(us + 1), seq) || slot >= slots_.size()) {
          continue;
        }
        Slot& s = slots_[slot];
        if (!s.in_flight || s.seq != seq) continue;  // late answer to a timed-out command
        complete(slot, body, now);
      }
      if (static_cast<size_t>(n) < kBatch) return;
    }
  }

  void receiveStream() {
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) {
      broken_ = true;
      return;
    }
    if (n < 0) return;
    stream_in_.append(buf, static_cast<size_t>(n));
    const uint64_t now = nowNs();
    size_t pos = 0;
    for (;;) {
      const size_t nl = stream_in_.find('\n', pos);
      if (nl == std::string::npos || fifo_.empty()) break;
      const size_t slot = fifo_.front();
      fifo_.pop_front();
      complete(slot, std::string_view(stream_in_).substr(pos, nl - pos), now);
      pos = nl + 1;
    }
    stream_in_.erase(0, pos);
  }

  void scanTimeouts(uint64_t now, uint64_t timeout_ns) {
    const uint64_t resend_ns = uint64_t{o_.resend_ms} * 1'000'000u;
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (!s.in_flight) continue;
      if (resend_ns != 0 && datagram_) {
        if (now - s.last_send_ns < resend_ns) continue;
        if (s.sends < o_.tries) {
          resend(i, now);
          continue;
        }
      } else if (now - s.sent_ns < timeout_ns) {
        continue;
      }
      ++r_.timeouts;
      s.in_flight = false;
      if (preload_) {
        // A lost U may or may not have created the call: create another.
        // A lost release leaves the call created.
        if (s.stage == 0) {
          ++budget_;
        } else {
          ++r_.calls;
        }
      }
      if (!datagram_) {
        broken_ = true;  // replies are in order: a stream that lost one is out of step
        continue;
      }
      startCall(i, now);
    }
  }

  const LoadOptions& o_;
  LoadResult& r_;
  std::vector<Slot> slots_;
  const bool preload_;
  uint64_t budget_;  // preload: calls still to start (a failed U gives its call back)
  std::vector<ResolvedAddress> dests_;  // [0] the target, [k] release target k
  uint8_t out_dest_[kBatch]{};
  std::string prefix_;
  int fd_ = -1;
  bool datagram_ = true;
  bool stopping_ = false;
  bool broken_ = false;
  uint64_t issued_ = 0;
  uint64_t next_call_ = 1;
  uint64_t next_seq_ = 0;
  Line out_[kBatch];
  size_t nout_ = 0;
  char in_[kBatch][2048];
  std::deque<size_t> fifo_;
  std::string stream_in_;
};

}  // namespace

uint64_t LatencyHistogram::percentile(double q) const {
  if (count_ == 0) return 0;
  const double want = q * static_cast<double>(count_);
  uint64_t seen = 0;
  for (uint64_t v = 0; v < buckets_.size(); ++v) {
    seen += buckets_[v];
    if (static_cast<double>(seen) >= want && seen != 0) return v == kMaxUs ? max_ : v;
  }
  return max_;
}

std::string loadUsage() {
  return "usage: rtpp_loadgen -t ADDR [-w WINDOW] [-d SECONDS | -n COMMANDS] [--timeout-ms MS]\n"
         "       rtpp_loadgen -t ADDR --preload N [--release ADDR ...] [-w WINDOW]\n"
         "       rtpp_loadgen -t ADDR --resend-ms MS [--tries N] [-w WINDOW] [-d SECONDS]\n"
         "  -t ADDR   udp:host:port, udp6:[::1]:port, cunix:/path or tcp:host:port\n"
         "  -w N      commands in flight (default 64)\n"
         "  -d S      run time in seconds (default 5)\n"
         "  -n N      stop after N commands instead\n"
         "  --timeout-ms MS  give up on a command after MS (default 1000)\n"
         "  --preload N      create N calls through -t and keep them there (udp only)\n"
         "  --release ADDR   preload: send each call's D here instead (repeatable), so\n"
         "                   relays behind a cluster free their sessions\n"
         "  --resend-ms MS   resend like Kamailio: the same datagram every MS until\n"
         "                   --tries N (default 5) copies went unanswered (udp only)\n";
}

std::string parseLoadOptions(int argc, char** argv, LoadOptions& out, bool& help) {
  static const option kLong[] = {
      {"timeout-ms", required_argument, nullptr, 1000},
      {"preload", required_argument, nullptr, 1001},
      {"release", required_argument, nullptr, 1002},
      {"resend-ms", required_argument, nullptr, 1003},
      {"tries", required_argument, nullptr, 1004},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  help = false;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "t:w:d:n:h", kLong, nullptr)) != -1) {
    const std::string_view arg = optarg != nullptr ? optarg : "";
    switch (c) {
      case 't': out.target.assign(arg); break;
      case 'w':
        if (!parseNumber(arg, out.window) || out.window == 0 || out.window > 100000) return "-w: 1..100000";
        break;
      case 'd':
        if (!parseNumber(arg, out.duration_s) || out.duration_s <= 0) return "-d: seconds > 0";
        break;
      case 'n':
        if (!parseNumber(arg, out.count) || out.count == 0) return "-n: count > 0";
        break;
      case 1000:
        if (!parseNumber(arg, out.timeout_ms) || out.timeout_ms == 0) return "--timeout-ms: > 0";
        break;
      case 1001:
        if (!parseNumber(arg, out.preload) || out.preload == 0) return "--preload: count > 0";
        break;
      case 1002:
        if (out.release.size() >= 16) return "--release: at most 16";
        out.release.emplace_back(arg);
        break;
      case 1003:
        if (!parseNumber(arg, out.resend_ms) || out.resend_ms == 0) return "--resend-ms: > 0";
        break;
      case 1004:
        if (!parseNumber(arg, out.tries) || out.tries == 0 || out.tries > 100) return "--tries: 1..100";
        break;
      case 'h': help = true; return "";
      default: return "unknown or incomplete option";
    }
  }
  if (optind < argc) return std::string("unexpected argument: ") + argv[optind];
  if (out.target.empty()) return "-t ADDR is needed";
  return "";
}

bool runLoad(const LoadOptions& options, LoadResult& result, std::string& error) {
  result = LoadResult{};
  Driver d(options, result);
  if (!d.connectTarget(error)) return false;
  d.run();
  result.cps = result.seconds > 0 ? static_cast<double>(result.commands) / result.seconds : 0.0;
  result.p50_us = d.histogram.percentile(0.50);
  result.p99_us = d.histogram.percentile(0.99);
  result.p999_us = d.histogram.percentile(0.999);
  result.max_us = d.histogram.max();
  return true;
}

std::string formatHuman(const LoadResult& r) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "commands answered: %llu in %.2f s = %.0f commands/s (%llu calls)\n"
                "latency us: p50 %llu  p99 %llu  p99.9 %llu  max %llu\n"
                "errors: %llu  timeouts: %llu\n",
                static_cast<unsigned long long>(r.commands), r.seconds, r.cps,
                static_cast<unsigned long long>(r.calls), static_cast<unsigned long long>(r.p50_us),
                static_cast<unsigned long long>(r.p99_us), static_cast<unsigned long long>(r.p999_us),
                static_cast<unsigned long long>(r.max_us), static_cast<unsigned long long>(r.errors),
                static_cast<unsigned long long>(r.timeouts));
  return buf;
}

std::string formatMachine(const LoadResult& r) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "RESULT cmds=%llu cps=%.0f p50_us=%llu p99_us=%llu p999_us=%llu max_us=%llu "
                "errors=%llu timeouts=%llu calls=%llu seconds=%.3f resends=%llu",
                static_cast<unsigned long long>(r.commands), r.cps,
                static_cast<unsigned long long>(r.p50_us), static_cast<unsigned long long>(r.p99_us),
                static_cast<unsigned long long>(r.p999_us), static_cast<unsigned long long>(r.max_us),
                static_cast<unsigned long long>(r.errors), static_cast<unsigned long long>(r.timeouts),
                static_cast<unsigned long long>(r.calls), r.seconds,
                static_cast<unsigned long long>(r.resends));
  return buf;
}

}  // namespace rtpc
