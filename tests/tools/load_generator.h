#pragma once
// rtpp_loadgen: a closed-loop RTPproxy load generator. W commands are in
// flight at all times; each "call" is a U with a fresh call-id followed by a
// D of it. Every command carries its own cookie, so the relay's reply cache
// never answers for another command.
//
// Preload mode (--preload N): creates N calls with a U through the target and
// keeps them there (no D to the target). Each --release ADDR then gets a D of
// the call straight away, so relays behind a cluster free the session (and
// its media port) while the cluster keeps tracking the call: that is how the
// benchmark fills a worker's session table with 1,000,000 live calls from two
// relay doubles that have only ~15,000 ports each. Datagram targets only.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rtpc {

struct LoadOptions {
  std::string target;         // -t udp:host:port | udp6: | cunix:/path | tcp:host:port
  size_t window = 64;         // -w: commands in flight
  double duration_s = 5.0;    // -d: stop issuing after this long (when count == 0)
  uint64_t count = 0;         // -n: stop after this many commands (0 = use duration)
  uint32_t timeout_ms = 1000; // give up on a command after this long
  uint64_t preload = 0;       // --preload: create this many calls, keep them (0 = U/D loop)
  std::vector<std::string> release;  // --release: send each preloaded call's D here instead
  // --resend-ms/--tries: resend like Kamailio's rtpproxy module (the same
  // datagram, cookie included, every resend_ms until `tries` sends went
  // unanswered; then a timeout). 0 = no resend, give up after timeout_ms.
  uint32_t resend_ms = 0;
  uint32_t tries = 5;
};

std::string parseLoadOptions(int argc, char** argv, LoadOptions& out, bool& help);
std::string loadUsage();

// Latencies in microseconds: exact below 1 s, one overflow bucket above.
class LatencyHistogram {
 public:
  static constexpr uint64_t kMaxUs = 1'000'000;
  LatencyHistogram() : buckets_(kMaxUs + 1, 0) {}
  void record(uint64_t us) {
    ++buckets_[us < kMaxUs ? us : kMaxUs];
    ++count_;
    if (us > max_) max_ = us;
  }
  // Smallest value v such that at least q of the samples are <= v (q in (0, 1]).
  uint64_t percentile(double q) const;
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }

 private:
  std::vector<uint32_t> buckets_;
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

struct LoadResult {
  uint64_t commands = 0;  // answered
  uint64_t errors = 0;    // answered, but not what a healthy relay says
  uint64_t timeouts = 0;
  uint64_t resends = 0;   // --resend-ms: datagrams sent again
  uint64_t calls = 0;     // U+D pairs completed (preload: calls created and released)
  double seconds = 0.0;
  double cps = 0.0;
  uint64_t p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
};

bool runLoad(const LoadOptions& options, LoadResult& result, std::string& error);

std::string formatHuman(const LoadResult& r);
// `RESULT cmds=... cps=... p50_us=... p99_us=... p999_us=... max_us=... errors=... timeouts=... calls=... seconds=... resends=...`
std::string formatMachine(const LoadResult& r);

}  // namespace rtpc
