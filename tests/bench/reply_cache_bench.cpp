// ns per command in the worker's reply cache, the way DatagramListener uses
// it: begin() on arrival, complete() with the answer, 64 commands in flight.
// Side by side in one run: completing by key (a second record and a second
// lookup per command) and completing with begin()'s ticket (the reply written
// into the in-flight record). Not a test: prints numbers for docs/benchmarks.md
// (run: build-release/tests/bench/reply_cache_bench).

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "worker/reply_cache.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kWindow = 64;
constexpr size_t kCommands = 4'000'000;

// Cookies shaped like Kamailio's ("<pid>_<counter>"), made beforehand.
std::vector<std::string> makeCookies() {
  std::vector<std::string> cookies;
  cookies.reserve(kCommands);
  char buf[32];
  for (size_t i = 0; i < kCommands; ++i) {
    std::snprintf(buf, sizeof buf, "%u_%zu", 4242u + static_cast<unsigned>(i % 8), i);
    cookies.emplace_back(buf);
  }
  return cookies;
}

double run(bool ticket, const std::vector<std::string>& cookies, uint64_t& in_place) {
  rtpc::ReplyCache cache;  // the worker's default: 64 MiB, 30 s
  const std::string client("\x02\x13\xc4\x7f\x00\x00\x01", 7);
  const std::string reply = "40144 192.0.2.10";
  std::vector<uint64_t> tickets(kWindow, rtpc::ReplyCache::kNoTicket);
  uint64_t now = 1'000'000'000;
  // One lap untimed: the ring's pages are resident and it wraps, as in a
  // worker that has run for a while.
  for (int lap = 0; lap < 2; ++lap) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < kCommands; ++i) {
      now += 1000;  // 1M commands/s: the ring, not the retention, limits it
      const size_t w = i % kWindow;
      if (i >= kWindow) {
        const std::string& done = cookies[i - kWindow];
        if (ticket) {
          cache.complete(tickets[w], client, done, reply, now);
        } else {
          cache.complete(client, done, reply, now);
        }
      }
      // The second lap reuses the cookies with a later clock: all new again
      // once the first lap's records have left the ring.
      tickets[w] = cache.begin(client, cookies[i], now).ticket;
    }
    if (lap == 1) {
      in_place = cache.completedInPlace();
      return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / kCommands;
    }
    now += 31'000'000'000ULL;  // past the retention: the second lap starts clean
  }
  return 0;
}

}  // namespace

int main() {
  const std::vector<std::string> cookies = makeCookies();
  for (int round = 1; round <= 3; ++round) {
    uint64_t keyed_in_place = 0;
    uint64_t ticket_in_place = 0;
    const double keyed = run(false, cookies, keyed_in_place);
    const double ticketed = run(true, cookies, ticket_in_place);
    std::printf(
        "REPLY_CACHE round=%d commands=%zu window=%zu keyed_ns_per_cmd=%.1f "
        "ticket_ns_per_cmd=%.1f ratio=%.2f completed_in_place=%llu\n",
        round, kCommands, kWindow, keyed, ticketed, ticketed / keyed,
        static_cast<unsigned long long>(ticket_in_place));
  }
  return 0;
}
