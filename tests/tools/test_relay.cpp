#include "tests/tools/test_relay.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <string_view>
#include <unordered_map>

#include "shared/address.h"
#include "shared/time_util.h"
#include "tests/tools/relay_reply_cache.h"

namespace rtpc {

namespace {

constexpr size_t kBatch = 64;
constexpr size_t kRecvBytes = kMaxCommandBytes + 1;  // one more: a longer datagram is E5
constexpr size_t kMaxStreamLine = kMaxCommandBytes;

uint64_t nowMs() { return monotonicNs() / 1'000'000; }

bool parseUnsigned(std::string_view s, uint64_t& v) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parsePercent(std::string_view s, double& v) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && v >= 0.0 && v <= 100.0;
}

bool parseOnOff(std::string_view s, bool& v) {
  if (s == "on" || s == "1" || s == "true") {
    v = true;
    return true;
  }
  if (s == "off" || s == "0" || s == "false") {
    v = false;
    return true;
  }
  return false;
}

std::string numericHost(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

uint16_t boundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

std::vector<std::string_view> splitWords(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

// Parses "tcp:host:port", "tcp:[v6]:port" or "unix:/path" (notify targets).
bool resolveNotifyTarget(const std::string& target, sockaddr_storage& ss, socklen_t& len) {
  ss = {};
  std::string_view t = target;
  if (t.starts_with("unix:")) {
    const std::string_view path = t.substr(5);
    sockaddr_un* un = reinterpret_cast<sockaddr_un*>(&ss);
    if (path.empty() || path.size() >= sizeof un->sun_path) return false;
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    len = sizeof(sockaddr_un);
    return true;
  }
  if (t.starts_with("tcp6:")) {
    t.remove_prefix(5);
  } else if (t.starts_with("tcp:")) {
    t.remove_prefix(4);
  } else {
    return false;
  }
  const size_t colon = t.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string host(t.substr(0, colon));
  uint64_t port = 0;
  if (!parseUnsigned(t.substr(colon + 1), port) || port == 0 || port > 65535) return false;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

// Small fast PRNG for drop decisions and garbage (no need for quality).
struct XorShift {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

struct AdminCommandSpec {
  std::string_view name;
  std::string_view usage;
};

// One table: `help` and every "usage:" answer come from it.
constexpr AdminCommandSpec kAdminCommands[] = {
    {"delay", "delay MS                  answer every command MS milliseconds late (0 = off)"},
    {"drop", "drop PERCENT              silently drop that share of commands"},
    {"mute", "mute on|off               stop answering (commands are read and ignored)"},
    {"garbage", "garbage on|off            answer random junk instead of the reply"},
    {"refuse", "refuse E98|E99|E72|off     refuse new U sessions with that error"},
    {"rtpengine-stats", "rtpengine-stats on|off    answer I and G with E8 as rtpengine does"},
    {"notify", "notify CALLID             time the call out: send its notifications"},
    {"stats", "stats                     counters as key=value"},
    {"reset", "reset                     clear every fault"},
    {"exit", "exit                      exit at once with code 0"},
    {"help", "help                      this list"},
};

}  // namespace

int parseRefuseCode(std::string_view text) {
  if (text == "off" || text == "0") return 0;
  if (!text.empty() && (text[0] == 'E' || text[0] == 'e')) text.remove_prefix(1);
  if (text == "98") return 98;
  if (text == "99") return 99;
  if (text == "72") return 72;
  return -1;
}

std::string relayUsage() {
  return "usage: rtpp_test_relay -s ADDR [-s ADDR ...] [options]\n"
         "  -s ADDR               control socket: udp:host:port, udp6:[::1]:port, unix:/path,\n"
         "                        cunix:/path, tcp:host:port (port 0 = any; printed as LISTENING)\n"
         "  -l ADDR               address in U/L replies (default 127.0.0.1; IPv6 adds \" 6\")\n"
         "  -6 ADDR               IPv6 address for U6/L6 (default: -l if it is IPv6)\n"
         "  -m PORT, -M PORT      media port range (default 35000-65000)\n"
         "  -n SOCK               permit notify target, e.g. tcp:%%CC_SELF%%:22297 (repeatable)\n"
         "  -T SECONDS            session ttl reported by Q (default 60)\n"
         "  --admin ADDR          admin socket: unix:/path or tcp:127.0.0.1:PORT\n"
         "  --delay-ms MS  --drop-percent P  --mute  --garbage  --refuse E98|E99|E72\n"
         "  --rtpengine-stats     faults at start (see `help` on the admin socket)\n"
         "  --cache-entries N     UDP reply cache capacity (default 524288)\n";
}

std::string parseRelayOptions(int argc, char** argv, RelayOptions& out, bool& help) {
  enum : int {
    kAdmin = 1000, kDelay, kDrop, kMute, kGarbage, kRefuse, kRtpengine, kCache,
  };
  static const option kLong[] = {
      {"admin", required_argument, nullptr, kAdmin},
      {"delay-ms", required_argument, nullptr, kDelay},
      {"drop-percent", required_argument, nullptr, kDrop},
      {"mute", no_argument, nullptr, kMute},
      {"garbage", no_argument, nullptr, kGarbage},
      {"refuse", required_argument, nullptr, kRefuse},
      {"rtpengine-stats", no_argument, nullptr, kRtpengine},
      {"cache-entries", required_argument, nullptr, kCache},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  help = false;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "s:l:6:m:M:n:T:h", kLong, nullptr)) != -1) {
    const std::string_view arg = optarg != nullptr ? optarg : "";
    uint64_t v = 0;
    switch (c) {
      case 's': out.listen.emplace_back(arg); break;
      case 'l': out.config.advertised.assign(arg); break;
      case '6': out.config.advertised6.assign(arg); break;
      case 'm':
      case 'M':
        if (!parseUnsigned(arg, v) || v == 0 || v > 65535) return "-m/-M: port must be 1..65535";
        (c == 'm' ? out.config.port_min : out.config.port_max) = static_cast<uint16_t>(v);
        break;
      case 'n': out.config.notify_sockets.emplace_back(arg); break;
      case 'T':
        if (!parseUnsigned(arg, v) || v == 0 || v > 86400) return "-T: seconds must be 1..86400";
        out.config.session_ttl_s = static_cast<int>(v);
        break;
      case kAdmin: out.admin.assign(arg); break;
      case kDelay:
        if (!parseUnsigned(arg, v) || v > 600000) return "--delay-ms: 0..600000";
        out.io_faults.delay_ms = static_cast<uint32_t>(v);
        break;
      case kDrop:
        if (!parsePercent(arg, out.io_faults.drop_percent)) return "--drop-percent: 0..100";
        break;
      case kMute: out.io_faults.mute = true; break;
      case kGarbage: out.io_faults.garbage = true; break;
      case kRefuse: {
        const int code = parseRefuseCode(arg);
        if (code < 0) return "--refuse: E98, E99, E72 or off";
        out.answer_faults.refuse_code = code;
        break;
      }
      case kRtpengine: out.answer_faults.rtpengine_stats = true; break;
      case kCache:
        if (!parseUnsigned(arg, v) || v < 16 || v > (1u << 26)) return "--cache-entries: 16..67108864";
        out.cache_entries = static_cast<size_t>(v);
        break;
      case 'h': help = true; return "";
      default:
        return std::string("unknown or incomplete option: ") + (optind > 0 ? argv[optind - 1] : "");
    }
  }
  if (optind < argc) return std::string("unexpected argument: ") + argv[optind];
  if (out.listen.empty()) return "at least one -s ADDR is needed";
  if (out.config.port_min + 1 > out.config.port_max) return "-m must be below -M";
  return "";
}

struct TestRelay::Impl {
  // A stream connection: unix (one command, then close) or cunix/tcp.
  struct Conn {
    Impl* impl = nullptr;
    uint64_t id = 0;
    bool one_shot = false;
    bool answered = false;  // one_shot: the command has been read
    bufferevent* bev = nullptr;
    std::string peer_ip;
  };
  struct Delayed {
    uint64_t due_ms;
    int udp_fd;  // -1: stream
    sockaddr_storage to;
    socklen_t to_len;
    uint64_t conn_id;
    std::string data;
  };
  struct NotifyConn {
    Impl* impl = nullptr;
    std::string target;
    bufferevent* bev = nullptr;
  };
  struct UdpSocket {
    Impl* impl;
    int fd;
    event* ev;
  };
  struct Listener {
    Impl* impl;
    evconnlistener* listener;
    Transport transport;
    bool admin;
  };

  explicit Impl(RelayOptions o)
      : options(std::move(o)), engine(options.config), cache(options.cache_entries * 64,
                                                              options.cache_entries) {
    engine.faults() = options.answer_faults;
    io = options.io_faults;
  }

  ~Impl() {
    for (auto& [id, c] : conns) {
      bufferevent_free(c->bev);
    }
    for (auto& [t, nc] : notify_conns) bufferevent_free(nc->bev);
    for (UdpSocket* u : udp) {
      event_free(u->ev);
      close(u->fd);
      delete u;
    }
    for (Listener* l : listeners) {
      evconnlistener_free(l->listener);
      delete l;
    }
    if (delay_timer != nullptr) event_free(delay_timer);
    for (event* e : signals) event_free(e);
    if (base != nullptr) event_base_free(base);
    removeUnixPaths();
  }

  void removeUnixPaths() {
    for (const std::string& p : unix_paths) unlink(p.c_str());
    unix_paths.clear();
  }

  bool start(std::string& error);
  bool bindOne(const std::string& uri, bool admin, std::string& error);
  static void onUdp(evutil_socket_t fd, short, void* arg);
  void readUdp(int fd);
  static void onAccept(evconnlistener*, evutil_socket_t fd, sockaddr* sa, int len, void* arg);
  static void onConnRead(bufferevent* bev, void* arg);
  static void onConnEvent(bufferevent* bev, short what, void* arg);
  static void onConnWritten(bufferevent* bev, void* arg);
  static void onAdminRead(bufferevent* bev, void* arg);
  static void onDelayTimer(evutil_socket_t, short, void* arg);
  static void onSignal(evutil_socket_t, short, void* arg);
  static void onNotifyRead(bufferevent* bev, void*);
  static void onNotifyEvent(bufferevent* bev, short what, void* arg);
  void closeConn(Conn* c);
  void handleStreamCommand(Conn* c, std::string_view text);
  // Returns false when the command gets no answer (mute, drop).
  bool admit(std::string_view text, Framing framing);
  void applyGarbage(RelayReplyBuffer& reply, std::string_view cookie);
  void sendStream(Conn* c, std::string_view data);
  void scheduleDelayed(Delayed d);
  void flushNotifications();
  void sendNotification(const PendingNotification& n);
  std::string adminCommand(std::string_view line, bool& exit_now);
  std::string statsLine() const;

  RelayOptions options;
  RelayEngine engine;
  RelayReplyCache cache;
  RelayIoFaults io;
  XorShift rng;
  event_base* base = nullptr;
  std::vector<UdpSocket*> udp;
  std::vector<Listener*> listeners;
  std::vector<event*> signals;
  std::vector<std::string> unix_paths;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns;
  uint64_t next_conn_id = 1;
  std::deque<Delayed> delayed;
  event* delay_timer = nullptr;
  std::unordered_map<std::string, std::unique_ptr<NotifyConn>> notify_conns;

  // UDP batch state, allocated once.
  std::vector<char> recv_buf = std::vector<char>(kBatch * kRecvBytes);
  std::vector<RelayReplyBuffer> replies = std::vector<RelayReplyBuffer>(kBatch);
  mmsghdr in_msgs[kBatch]{};
  iovec in_iov[kBatch]{};
  sockaddr_storage in_addr[kBatch]{};
  mmsghdr out_msgs[kBatch]{};
  iovec out_iov[kBatch]{};

  // Counters for `stats`.
  uint64_t received = 0, executed = 0, dups = 0, dropped = 0, muted = 0, garbage_sent = 0,
           delayed_sent = 0, notifies_sent = 0, notify_errors = 0, stream_overflows = 0;
  uint64_t by_letter[kLetterSlots]{};
};

bool TestRelay::Impl::bindOne(const std::string& uri, bool admin, std::string& error) {
  // parseAddressUri rejects port 0; here it means "any", so parse with a
  // stand-in port and put the 0 back.
  const bool any_port = uri.size() > 2 && uri.ends_with(":0") && !uri.starts_with("unix:") &&
                        !uri.starts_with("cunix:");
  const AddressResult parsed =
      parseAddressUri(any_port ? uri.substr(0, uri.size() - 1) + "1" : uri, Transport::kUnix);
  if (!parsed.address) {
    error = uri + ": " + parsed.error;
    return false;
  }
  SocketAddress addr = *parsed.address;
  if (any_port) addr.port = 0;
  if (admin && (isDatagram(addr.transport) || addr.transport == Transport::kUnix)) {
    addr.transport = isUnixPath(addr.transport) ? Transport::kCunix : Transport::kTcp;
  }
  ResolvedAddress ra;
  if (isUnixPath(addr.transport)) {
    sockaddr_un* un = reinterpret_cast<sockaddr_un*>(&ra.storage);
    if (addr.path.size() >= sizeof un->sun_path) {
      error = uri + ": path too long";
      return false;
    }
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, addr.path.c_str(), addr.path.size() + 1);
    ra.length = sizeof(sockaddr_un);
    ra.family = AF_UNIX;
    unlink(addr.path.c_str());
  } else if (!resolveAddress(addr, ra, error)) {
    error = uri + ": " + error;
    return false;
  }

  if (isDatagram(addr.transport)) {
    const int fd = socket(ra.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, ra.sa(), ra.length) != 0) {
      error = uri + ": " + std::strerror(errno);
      if (fd >= 0) close(fd);
      return false;
    }
    const int size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    auto* u = new UdpSocket{this, fd, nullptr};
    u->ev = event_new(base, fd, EV_READ | EV_PERSIST, &Impl::onUdp, u);
    event_add(u->ev, nullptr);
    udp.push_back(u);
    addr.port = boundPort(fd);
  } else {
    const unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    auto* l = new Listener{this, nullptr, addr.transport, admin};
    l->listener = evconnlistener_new_bind(base, &Impl::onAccept, l, flags, 128, ra.sa(),
                                          static_cast<int>(ra.length));
    if (l->listener == nullptr) {
      error = uri + ": " + std::strerror(errno);
      delete l;
      return false;
    }
    listeners.push_back(l);
    if (isUnixPath(addr.transport)) {
      unix_paths.push_back(addr.path);
    } else {
      addr.port = boundPort(evconnlistener_get_fd(l->listener));
    }
  }
  // Print what was asked for, with the real port (admin keeps its given prefix).
  SocketAddress shown = addr;
  if (admin) shown.transport = parsed.address->transport;
  std::printf("%s %s\n", admin ? "ADMIN" : "LISTENING", shown.uri().c_str());
  return true;
}

bool TestRelay::Impl::start(std::string& error) {
  base = event_base_new();
  if (base == nullptr) {
    error = "event_base_new failed";
    return false;
  }
  std::signal(SIGPIPE, SIG_IGN);
  for (int sig : {SIGTERM, SIGINT}) {
    event* e = evsignal_new(base, sig, &Impl::onSignal, this);
    event_add(e, nullptr);
    signals.push_back(e);
  }
  delay_timer = evtimer_new(base, &Impl::onDelayTimer, this);
  for (const std::string& uri : options.listen) {
    if (!bindOne(uri, false, error)) return false;
  }
  if (!options.admin.empty() && !bindOne(options.admin, true, error)) return false;
  for (int i = 0; i < static_cast<int>(kBatch); ++i) {
    in_iov[i] = iovec{recv_buf.data() + static_cast<size_t>(i) * kRecvBytes, kRecvBytes};
  }
  std::printf("READY\n");
  std::fflush(stdout);
  return true;
}

bool TestRelay::Impl::admit(std::string_view text, Framing framing) {
  ++received;
  ++by_letter[letterSlot(text, framing)];
  if (io.mute) {
    ++muted;
    return false;
  }
  if (io.drop_percent > 0.0 &&
      static_cast<double>(rng.next() % 1000000) < io.drop_percent * 10000.0) {
    ++dropped;
    return false;
  }
  return true;
}

void TestRelay::Impl::applyGarbage(RelayReplyBuffer& reply, std::string_view cookie) {
  // Keep the cookie sometimes, so that a client matching on it still has to
  // cope with the junk body.
  std::string saved(cookie);
  reply.clear();
  const uint64_t kind = rng.next() % 4;
  if (kind != 3 && !saved.empty()) reply.append(saved) && reply.append(' ');
  const size_t len = kind == 2 ? 3000 + rng.next() % 4000 : 5 + rng.next() % 60;
  for (size_t i = 0; i < len; ++i) {
    const uint64_t r = rng.next();
    char c = kind == 1 ? static_cast<char>(r & 0xff) : static_cast<char>(' ' + 1 + r % 94);
    reply.append(c);
  }
  reply.append('\n');
  ++garbage_sent;
}

void TestRelay::Impl::onUdp(evutil_socket_t fd, short, void* arg) {
  auto* u = static_cast<UdpSocket*>(arg);
  u->impl->readUdp(static_cast<int>(fd));
}

void TestRelay::Impl::readUdp(int fd) {
  // Bounded rounds so the stream sockets and timers are not starved.
  for (int round = 0; round < 16; ++round) {
    for (size_t i = 0; i < kBatch; ++i) {
      in_msgs[i].msg_hdr = msghdr{};
      in_msgs[i].msg_hdr.msg_name = &in_addr[i];
      in_msgs[i].msg_hdr.msg_namelen = sizeof in_addr[i];
      in_msgs[i].msg_hdr.msg_iov = &in_iov[i];
      in_msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(fd, in_msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) return;
    const uint64_t now = nowMs();
    cache.expire(now);
    unsigned nsend = 0;
    for (int i = 0; i < n; ++i) {
      const msghdr& h = in_msgs[i].msg_hdr;
      size_t len = in_msgs[i].msg_len;
      if ((h.msg_flags & MSG_TRUNC) != 0) len = kRecvBytes;
      const std::string_view text(static_cast<const char*>(in_iov[i].iov_base), len);
      if (!admit(text, Framing::kDatagram)) continue;
      RelayReplyBuffer& reply = replies[nsend];
      reply.clear();

      // The cookie alone is the cache key (rtpp_command_rcache.c).
      size_t a = 0;
      while (a < len && (text[a] == ' ' || text[a] == '\t' || text[a] == '\n' || text[a] == '\r')) ++a;
      size_t b = a;
      while (b < len && text[b] != ' ' && text[b] != '\t' && text[b] != '\n' && text[b] != '\r' &&
             text[b] != '\0') {
        ++b;
      }
      const std::string_view cookie = text.substr(a, b - a);
      bool from_cache = false;
      if (!cookie.empty()) {
        if (const auto hit = cache.find(cookie, now)) {
          reply.append(*hit);
          engine.countDuplicate();
          ++dups;
          from_cache = true;
        }
      }
      if (!from_cache) {
        std::string source;
        if (text.find("%%CC_SELF%%") != std::string_view::npos) {
          source = numericHost(reinterpret_cast<const sockaddr*>(&in_addr[i]));
        }
        engine.handle(text, Framing::kDatagram, source, now, reply);
        ++executed;
        if (io.garbage) applyGarbage(reply, cookie);
        if (!cookie.empty()) cache.insert(cookie, reply.view(), now);
      }
      if (io.delay_ms != 0) {
        scheduleDelayed(Delayed{now + io.delay_ms, fd, in_addr[i], h.msg_namelen, 0,
                                std::string(reply.view())});
        continue;
      }
      out_iov[nsend] = iovec{const_cast<char*>(reply.data()), reply.size()};
      out_msgs[nsend].msg_hdr = msghdr{};
      out_msgs[nsend].msg_hdr.msg_name = &in_addr[i];
      out_msgs[nsend].msg_hdr.msg_namelen = h.msg_namelen;
      out_msgs[nsend].msg_hdr.msg_iov = &out_iov[nsend];
      out_msgs[nsend].msg_hdr.msg_iovlen = 1;
      ++nsend;
    }
    for (unsigned sent = 0; sent < nsend;) {
      const int r = sendmmsg(fd, out_msgs + sent, nsend - sent, 0);
      if (r <= 0) {
        if (r < 0 && errno == EINTR) continue;
        ++sent;  // skip the one that failed (e.g. unreachable peer)
        continue;
      }
      sent += static_cast<unsigned>(r);
    }
    if (!engine.pendingNotifications().empty()) flushNotifications();
    if (static_cast<size_t>(n) < kBatch) return;
  }
}

void TestRelay::Impl::onAccept(evconnlistener*, evutil_socket_t fd, sockaddr* sa, int, void* arg) {
  auto* l = static_cast<Listener*>(arg);
  Impl* self = l->impl;
  evutil_make_socket_nonblocking(fd);
  bufferevent* bev = bufferevent_socket_new(self->base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) {
    close(fd);
    return;
  }
  auto conn = std::make_unique<Conn>();
  conn->impl = self;
  conn->id = self->next_conn_id++;
  conn->one_shot = l->transport == Transport::kUnix && !l->admin;
  conn->bev = bev;
  if (sa != nullptr) conn->peer_ip = numericHost(sa);
  Conn* c = conn.get();
  self->conns.emplace(c->id, std::move(conn));
  bufferevent_setcb(bev, l->admin ? &Impl::onAdminRead : &Impl::onConnRead, nullptr,
                    &Impl::onConnEvent, c);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

void TestRelay::Impl::closeConn(Conn* c) {
  bufferevent_free(c->bev);
  conns.erase(c->id);
}

void TestRelay::Impl::onConnEvent(bufferevent*, short what, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) != 0) c->impl->closeConn(c);
}

void TestRelay::Impl::onConnWritten(bufferevent* bev, void* arg) {
  // One-shot unix connections close once the reply has left.
  if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
    auto* c = static_cast<Conn*>(arg);
    c->impl->closeConn(c);
  }
}

void TestRelay::Impl::sendStream(Conn* c, std::string_view data) {
  bufferevent_write(c->bev, data.data(), data.size());
  if (c->one_shot) {
    bufferevent_setcb(c->bev, &Impl::onConnRead, &Impl::onConnWritten, &Impl::onConnEvent, c);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) closeConn(c);
  }
}

void TestRelay::Impl::handleStreamCommand(Conn* c, std::string_view text) {
  if (!admit(text, Framing::kStream)) return;
  RelayReplyBuffer& reply = replies[0];
  const uint64_t now = nowMs();
  engine.handle(text, Framing::kStream, c->peer_ip, now, reply);
  ++executed;
  if (io.garbage) applyGarbage(reply, {});
  if (!engine.pendingNotifications().empty()) flushNotifications();
  if (io.delay_ms != 0) {
    scheduleDelayed(Delayed{now + io.delay_ms, -1, {}, 0, c->id, std::string(reply.view())});
    return;
  }
  sendStream(c, reply.view());
}

void TestRelay::Impl::onConnRead(bufferevent* bev, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  Impl* self = c->impl;
  evbuffer* in = bufferevent_get_input(bev);
  if (c->one_shot) {
    // unix: one read() is one command, newline or not (rtpp_command.c:282-295).
    if (c->answered) {
      evbuffer_drain(in, evbuffer_get_length(in));
      return;
    }
    c->answered = true;
    char buf[kMaxStreamLine];
    const int n = evbuffer_remove(in, buf, sizeof buf);
    evbuffer_drain(in, evbuffer_get_length(in));
    self->handleStreamCommand(c, std::string_view(buf, n > 0 ? static_cast<size_t>(n) : 0));
    return;
  }
  // cunix/tcp: `\n`-framed, replies in order.
  for (;;) {
    evbuffer_ptr eol = evbuffer_search_eol(in, nullptr, nullptr, EVBUFFER_EOL_LF);
    if (eol.pos < 0) break;
    const size_t line_len = static_cast<size_t>(eol.pos);
    if (line_len >= kMaxStreamLine) {
      ++self->stream_overflows;
      self->closeConn(c);
      return;
    }
    char buf[kMaxStreamLine];
    evbuffer_remove(in, buf, line_len);
    evbuffer_drain(in, 1);
    // A connection whose reply is delayed stays valid: replies are looked up by id.
    const uint64_t id = c->id;
    self->handleStreamCommand(c, std::string_view(buf, line_len));
    if (self->conns.find(id) == self->conns.end()) return;
  }
  if (evbuffer_get_length(in) >= kMaxStreamLine) {
    // rtpproxy would wait forever for a newline; a test double closes instead.
    ++self->stream_overflows;
    self->closeConn(c);
  }
}

void TestRelay::Impl::scheduleDelayed(Delayed d) {
  ++delayed_sent;
  const bool was_empty = delayed.empty();
  delayed.push_back(std::move(d));
  if (was_empty) {
    const uint64_t wait = delayed.front().due_ms - std::min(delayed.front().due_ms, nowMs());
    timeval tv{static_cast<time_t>(wait / 1000), static_cast<suseconds_t>((wait % 1000) * 1000)};
    evtimer_add(delay_timer, &tv);
  }
}

void TestRelay::Impl::onDelayTimer(evutil_socket_t, short, void* arg) {
  Impl* self = static_cast<Impl*>(arg);
  const uint64_t now = nowMs();
  while (!self->delayed.empty() && self->delayed.front().due_ms <= now) {
    Delayed d = std::move(self->delayed.front());
    self->delayed.pop_front();
    if (d.udp_fd >= 0) {
      sendto(d.udp_fd, d.data.data(), d.data.size(), 0, reinterpret_cast<sockaddr*>(&d.to), d.to_len);
    } else if (auto it = self->conns.find(d.conn_id); it != self->conns.end()) {
      self->sendStream(it->second.get(), d.data);
    }
  }
  if (!self->delayed.empty()) {
    const uint64_t wait = self->delayed.front().due_ms - std::min(self->delayed.front().due_ms, now);
    timeval tv{static_cast<time_t>(wait / 1000), static_cast<suseconds_t>((wait % 1000) * 1000)};
    evtimer_add(self->delay_timer, &tv);
  }
}

void TestRelay::Impl::flushNotifications() {
  std::vector<PendingNotification> pending;
  pending.swap(engine.pendingNotifications());
  for (const PendingNotification& n : pending) sendNotification(n);
}

void TestRelay::Impl::sendNotification(const PendingNotification& n) {
  // One connection per target, kept open as rtpproxy does (rtpp_notify.c);
  // dropped on error and made again by the next notification.
  auto it = notify_conns.find(n.target);
  if (it == notify_conns.end()) {
    sockaddr_storage ss;
    socklen_t len = 0;
    if (!resolveNotifyTarget(n.target, ss, len)) {
      ++notify_errors;
      return;
    }
    auto nc = std::make_unique<NotifyConn>();
    nc->impl = this;
    nc->target = n.target;
    nc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (nc->bev == nullptr) {
      ++notify_errors;
      return;
    }
    bufferevent_setcb(nc->bev, &Impl::onNotifyRead, nullptr, &Impl::onNotifyEvent, nc.get());
    if (bufferevent_socket_connect(nc->bev, reinterpret_cast<sockaddr*>(&ss), static_cast<int>(len)) != 0) {
      bufferevent_free(nc->bev);
      ++notify_errors;
      return;
    }
    bufferevent_enable(nc->bev, EV_READ | EV_WRITE);
    it = notify_conns.emplace(n.target, std::move(nc)).first;
  }
  std::string line = n.tag;
  line.push_back('\n');
  bufferevent_write(it->second->bev, line.data(), line.size());
  ++notifies_sent;
}

std::string TestRelay::Impl::statsLine() const {
  std::string s = "OK";
  auto add = [&s](std::string_view k, uint64_t v) {
    s += ' ';
    s += k;
    s += '=';
    s += std::to_string(v);
  };
  add("received", received);
  add("executed", executed);
  add("dups", dups);
  add("dropped", dropped);
  add("muted", muted);
  add("garbage", garbage_sent);
  add("delayed", delayed_sent);
  add("sessions", engine.sessions().activeSessions());
  add("streams", engine.sessions().activeStreams());
  add("sessions_created", engine.sessions().created());
  add("notifies", notifies_sent);
  add("notify_errors", notify_errors);
  add("cached", cache.size());
  for (std::string_view letter : {"U", "L", "D", "P", "S", "R", "C", "N", "Q", "V", "VF", "I", "G", "X"}) {
    size_t slot = letter == "VF" ? 26 : static_cast<size_t>(letter[0] - 'A');
    add(std::string("cmd_") + std::string(letter), by_letter[slot]);
  }
  uint64_t other = by_letter[kLetterSlots - 1];
  for (char ch : std::string_view("ABEFHJKMOTWYZ")) other += by_letter[static_cast<size_t>(ch - 'A')];
  add("cmd_other", other);
  return s;
}

std::string TestRelay::Impl::adminCommand(std::string_view line, bool& exit_now) {
  exit_now = false;
  const std::vector<std::string_view> w = splitWords(line);
  if (w.empty()) return "ERROR empty command; try help";
  const AdminCommandSpec* spec = nullptr;
  for (const AdminCommandSpec& s : kAdminCommands) {
    if (s.name == w[0]) spec = &s;
  }
  if (spec == nullptr) return "ERROR unknown command " + std::string(w[0]) + "; try help";
  const std::string usage = "ERROR usage: " + std::string(spec->usage.substr(0, spec->usage.find("  ")));
  const std::string_view name = spec->name;
  const size_t want_args = (name == "stats" || name == "reset" || name == "exit" || name == "help") ? 1 : 2;
  if (w.size() != want_args) return usage;
  if (name == "delay") {
    uint64_t v = 0;
    if (!parseUnsigned(w[1], v) || v > 600000) return usage;
    io.delay_ms = static_cast<uint32_t>(v);
    return "OK delay_ms=" + std::to_string(v);
  }
  if (name == "drop") {
    double v = 0;
    if (!parsePercent(w[1], v)) return usage;
    io.drop_percent = v;
    return "OK drop_percent=" + std::string(w[1]);
  }
  if (name == "mute" || name == "garbage" || name == "rtpengine-stats") {
    bool v = false;
    if (!parseOnOff(w[1], v)) return usage;
    if (name == "mute") io.mute = v;
    if (name == "garbage") io.garbage = v;
    if (name == "rtpengine-stats") engine.faults().rtpengine_stats = v;
    return "OK " + std::string(name) + "=" + (v ? "on" : "off");
  }
  if (name == "refuse") {
    const int code = parseRefuseCode(w[1]);
    if (code < 0) return usage;
    engine.faults().refuse_code = code;
    return code == 0 ? std::string("OK refuse=off") : "OK refuse=E" + std::to_string(code);
  }
  if (name == "notify") {
    const size_t n = engine.timeoutCall(w[1], nowMs());
    const size_t queued = engine.pendingNotifications().size();
    flushNotifications();
    if (n == 0) return "ERROR no session for call-id " + std::string(w[1]);
    return "OK sessions=" + std::to_string(n) + " notifications=" + std::to_string(queued);
  }
  if (name == "stats") return statsLine();
  if (name == "reset") {
    io = RelayIoFaults{};
    engine.faults() = RelayAnswerFaults{};
    return "OK reset";
  }
  if (name == "exit") {
    exit_now = true;
    return "OK exiting";
  }
  std::string help = "OK commands:";
  for (const AdminCommandSpec& s : kAdminCommands) {
    help += " | ";
    help += s.usage.substr(0, s.usage.find("  "));
  }
  return help;
}

void TestRelay::Impl::onAdminRead(bufferevent* bev, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  Impl* self = c->impl;
  evbuffer* in = bufferevent_get_input(bev);
  for (;;) {
    size_t len = 0;
    char* line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
    if (line == nullptr) break;
    bool exit_now = false;
    std::string reply = self->adminCommand(std::string_view(line, len), exit_now);
    std::free(line);
    reply.push_back('\n');
    if (exit_now) {
      // Written directly: the process is gone before the loop would flush.
      const int fd = bufferevent_getfd(bev);
      evbuffer_add(bufferevent_get_output(bev), reply.data(), reply.size());
      // Earlier answers on this connection go first; the socket buffer takes a
      // few lines. A socket bufferevent keeps its output front frozen.
      evbuffer_unfreeze(bufferevent_get_output(bev), 1);
      if (evbuffer_write(bufferevent_get_output(bev), fd) < 0) {
        // nothing to do: exiting anyway
      }
      std::fflush(stdout);
      self->removeUnixPaths();
      _exit(0);
    }
    bufferevent_write(bev, reply.data(), reply.size());
  }
  if (evbuffer_get_length(in) > 4096) self->closeConn(c);
}

void TestRelay::Impl::onNotifyRead(bufferevent* bev, void*) {
  evbuffer* in = bufferevent_get_input(bev);
  evbuffer_drain(in, evbuffer_get_length(in));
}

void TestRelay::Impl::onNotifyEvent(bufferevent* bev, short what, void* arg) {
  auto* nc = static_cast<NotifyConn*>(arg);
  if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) == 0) return;
  Impl* self = nc->impl;
  // Data still queued was never delivered.
  if ((what & BEV_EVENT_ERROR) != 0 || evbuffer_get_length(bufferevent_get_output(bev)) != 0) {
    ++self->notify_errors;
  }
  bufferevent_free(bev);
  const std::string key = nc->target;  // nc dies inside erase()
  self->notify_conns.erase(key);
}

void TestRelay::Impl::onSignal(evutil_socket_t, short, void* arg) {
  event_base_loopexit(static_cast<Impl*>(arg)->base, nullptr);
}

TestRelay::TestRelay(RelayOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
TestRelay::~TestRelay() = default;

bool TestRelay::start(std::string& error) { return impl_->start(error); }

int TestRelay::run() {
  event_base_dispatch(impl_->base);
  impl_->removeUnixPaths();
  return 0;
}

}  // namespace rtpc
