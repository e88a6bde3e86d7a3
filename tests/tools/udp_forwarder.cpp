// udp_forwarder: the floor for any UDP proxy on this machine (benchmark only).
//
// It does the minimum a proxy between rtpp_loadgen and two relays must do in
// the kernel: per command, one receive and one send towards a relay, one
// receive and one send back. No parsing, no cookie rewriting (the call-id is hashed, as the worker does, to pick the relay), no session or
// reply cache, no event library: batched recvmmsg/sendmmsg on a bare epoll
// loop. Relays echo the client's cookie, so answers go back unchanged to the
// last client address seen (the bench has one client).
//
// worker_bench.py runs it side by side with the worker: the gap between the
// two is what the worker's own logic costs, and the forwarder's throughput is
// the most any proxy of this shape can reach on the machine.
//
// usage: udp_forwarder -l PORT -r HOST:PORT -r HOST:PORT ...
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shared/address.h"
#include "shared/rtpp_command.h"
#include "shared/session_table.h"

using namespace rtpc;

namespace {

constexpr int kBatch = 64;
constexpr size_t kDatagramBytes = 2048;

struct Batch {
  mmsghdr msgs[kBatch];
  iovec iovs[kBatch];
  sockaddr_in addrs[kBatch];
  char bufs[kBatch][kDatagramBytes];

  void prepareReceive() {
    for (int i = 0; i < kBatch; ++i) {
      iovs[i] = {bufs[i], kDatagramBytes};
      msgs[i].msg_hdr = {};
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &addrs[i];
      msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
    }
  }
};

// The relay of a command: by a hash of its call-id (the third word), so a
// call's U and D meet on the same relay, as behind the worker.
size_t relayFor(const char* data, size_t length, size_t relays) {
  const DatagramGlance g = glanceAtDatagram(std::string_view(data, length));
  return static_cast<size_t>(hashCallId(g.call_id, 0) % relays);
}

// Sends msgs[0..n) with as few syscalls as the kernel allows; a datagram the
// kernel refuses (buffer full) is dropped, as a real proxy's would be, and
// the load generator's retransmission covers it.
void sendAll(int fd, mmsghdr* msgs, int n) {
  int done = 0;
  while (done < n) {
    const int sent = sendmmsg(fd, msgs + done, static_cast<unsigned>(n - done), 0);
    if (sent <= 0) {
      if (sent < 0 && errno == EINTR) continue;
      ++done;  // skip the one that failed
      continue;
    }
    done += sent;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = -1;
  std::vector<ResolvedAddress> relays;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "-l") == 0) {
      port = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "-r") == 0) {
      const AddressResult parsed = parseAddressUri(argv[i + 1], Transport::kUdp);
      ResolvedAddress a;
      std::string error;
      if (!parsed.address || parsed.address->transport != Transport::kUdp ||
          !resolveAddress(*parsed.address, a, error)) {
        std::fprintf(stderr, "udp_forwarder: bad relay address %s (want udp HOST:PORT)\n", argv[i + 1]);
        return 2;
      }
      relays.push_back(a);
    }
  }
  if (port < 0 || relays.empty()) {
    std::fprintf(stderr, "usage: udp_forwarder -l PORT -r HOST:PORT [-r HOST:PORT ...]\n");
    return 2;
  }

  const int listen_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_port = htons(static_cast<uint16_t>(port));
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listen_fd < 0 || bind(listen_fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    std::perror("udp_forwarder: bind");
    return 1;
  }
  socklen_t len = sizeof local;
  getsockname(listen_fd, reinterpret_cast<sockaddr*>(&local), &len);

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = 0;
  epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev);
  std::vector<int> relay_fds;
  for (const ResolvedAddress& r : relays) {
    const int fd = socket(r.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, r.sa(), r.length) != 0) {
      std::perror("udp_forwarder: connect");
      return 1;
    }
    ev.data.u32 = static_cast<uint32_t>(relay_fds.size() + 1);
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    relay_fds.push_back(fd);
  }
  std::printf("LISTENING udp:127.0.0.1:%d\n", ntohs(local.sin_port));
  std::fflush(stdout);

  static Batch in;
  static Batch back;
  std::vector<std::vector<mmsghdr>> out(relay_fds.size(), std::vector<mmsghdr>(kBatch));
  sockaddr_in client{};
  bool have_client = false;
  std::vector<int> counts(relay_fds.size(), 0);
  epoll_event events[8];
  for (;;) {
    const int n = epoll_wait(ep, events, 8, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::perror("udp_forwarder: epoll_wait");
      return 1;
    }
    for (int e = 0; e < n; ++e) {
      const uint32_t which = events[e].data.u32;
      if (which == 0) {
        in.prepareReceive();
        const int got = recvmmsg(listen_fd, in.msgs, kBatch, MSG_DONTWAIT, nullptr);
        if (got <= 0) continue;
        client = in.addrs[got - 1];
        have_client = true;
        std::fill(counts.begin(), counts.end(), 0);
        for (int i = 0; i < got; ++i) {
          const size_t r = relayFor(in.bufs[i], in.msgs[i].msg_len, relay_fds.size());
          mmsghdr& m = out[r][static_cast<size_t>(counts[r]++)];
          m.msg_hdr = {};
          in.iovs[i].iov_len = in.msgs[i].msg_len;
          m.msg_hdr.msg_iov = &in.iovs[i];
          m.msg_hdr.msg_iovlen = 1;
        }
        for (size_t r = 0; r < relay_fds.size(); ++r) {
          if (counts[r] > 0) sendAll(relay_fds[r], out[r].data(), counts[r]);
        }
      } else {
        back.prepareReceive();
        const int got = recvmmsg(relay_fds[which - 1], back.msgs, kBatch, MSG_DONTWAIT, nullptr);
        if (got <= 0 || !have_client) continue;
        for (int i = 0; i < got; ++i) {
          back.iovs[i].iov_len = back.msgs[i].msg_len;
          back.msgs[i].msg_hdr.msg_name = &client;
          back.msgs[i].msg_hdr.msg_namelen = sizeof client;
        }
        sendAll(listen_fd, back.msgs, got);
      }
    }
  }
}
