// Pure parts of the relay double and the load generator: session table, port
// allocator, reply cache, the command engine (raw wire strings in, replies
// out) and the latency histogram.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/tools/load_generator.h"
#include "tests/tools/relay_engine.h"
#include "tests/tools/relay_sessions.h"
#include "tests/tools/relay_reply_cache.h"
#include "tests/tools/test_relay.h"

namespace rtpc {
namespace {

TEST(PortAllocator, HandsOutEvenPortsWithRoomForRtcpUntilExhausted) {
  PortAllocator ports(35001, 35007);  // 35002, 35004, 35006 (35006 + 1 fits)
  EXPECT_EQ(ports.capacity(), 3u);
  EXPECT_EQ(ports.allocate(), 35002);
  EXPECT_EQ(ports.allocate(), 35004);
  EXPECT_EQ(ports.allocate(), 35006);
  EXPECT_EQ(ports.allocate(), 0);
  ports.release(35004);
  EXPECT_EQ(ports.inUse(), 2u);
  EXPECT_EQ(ports.allocate(), 35004);
  ports.release(35005);  // odd: never ours, ignored
  EXPECT_EQ(ports.inUse(), 3u);
}

TEST(PortAllocator, DoesNotReuseAFreedPortImmediately) {
  PortAllocator ports(40000, 40010);
  const uint16_t first = ports.allocate();
  ports.release(first);
  EXPECT_NE(ports.allocate(), first);
}

TEST(TagMatches, ExactOrMedianumSuffixOnly) {
  struct Case {
    const char* stored;
    const char* tag;
    bool match;
  } cases[] = {
      {"f1", "f1", true},     {"f1;1", "f1", true},  {"f1;2", "f1", true}, {"f1", "f1;1", false},
      {"f12", "f1", false},   {"f1;", "f1", false},  {"f1", "", false},    {"f1;1", "f1;1", true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(tagMatches(c.stored, c.tag), c.match) << c.stored << " vs " << c.tag;
  }
}

TEST(RelaySessions, FindsTheLegByFromOrToTag) {
  RelaySessions t(30000, 30100);
  t.create("c1", "A", 0);
  EXPECT_EQ(t.find("c1", "A", "").leg, 0);
  EXPECT_EQ(t.find("c1", "B", "A").leg, 1);
  EXPECT_EQ(t.find("c1", "A", "B").leg, 0);
  EXPECT_EQ(t.find("c1", "B", "").session, nullptr);
  EXPECT_EQ(t.find("c2", "A", "").session, nullptr);
}

TEST(RelaySessions, DeleteByMedianumTagRemovesEveryStream) {
  RelaySessions t(30000, 30100);
  for (const char* tag : {"f3;1", "f3;2", "g"}) {
    RelaySession& s = t.create("c3", tag, 0);
    s.strong = true;
    t.legPort(s, 0, false);
  }
  EXPECT_EQ(t.activeStreams(), 3u);
  EXPECT_EQ(t.deleteMatching("c3", "f3", "", false, 5000), 2u);
  EXPECT_EQ(t.activeSessions(), 1u);
  EXPECT_EQ(t.activeStreams(), 1u);
  EXPECT_EQ(t.ports().inUse(), 1u);
  EXPECT_DOUBLE_EQ(t.totalDurationS(), 10.0);
}

TEST(RelaySessions, SessionLivesUntilWeakAndStrongFlagsAreBothCleared) {
  RelaySessions t(30000, 30100);
  RelaySession& s = t.create("c", "f", 0);
  s.strong = true;
  s.weak = true;
  EXPECT_EQ(t.deleteMatching("c", "f", "", false, 0), 1u);
  EXPECT_EQ(t.activeSessions(), 1u);
  EXPECT_EQ(t.deleteMatching("c", "f", "", true, 0), 1u);
  EXPECT_EQ(t.activeSessions(), 0u);
  EXPECT_EQ(t.deleteMatching("c", "f", "", false, 0), 0u);
}

TEST(RelayReplyCache, ReturnsTheFirstReplyUntilTheTtlRunsOut) {
  RelayReplyCache cache(1 << 16, 64, 35000);
  EXPECT_FALSE(cache.find("k", 0));
  ASSERT_TRUE(cache.insert("k", "k 20040107\n", 1000));
  ASSERT_TRUE(cache.find("k", 1000));
  EXPECT_EQ(*cache.find("k", 35999), "k 20040107\n");
  EXPECT_FALSE(cache.find("k", 36000));
  cache.expire(36000);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(RelayReplyCache, EvictsOldestWhenFullAndStaysConsistent) {
  // Small arena and index, many entries of random sizes: compare with a model
  // that knows which cookies were inserted after the ones evicted.
  RelayReplyCache cache(8192, 32, 1'000'000);
  std::mt19937 rng(7);
  std::vector<std::pair<std::string, std::string>> order;
  for (int i = 0; i < 5000; ++i) {
    std::string cookie = "c" + std::to_string(i);
    std::string reply(1 + rng() % 300, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(cache.insert(cookie, reply, static_cast<uint64_t>(i)));
    order.emplace_back(cookie, reply);
    // Entries still cached are exactly the newest cache.size() ones.
    const size_t n = cache.size();
    ASSERT_GE(n, 1u);
    ASSERT_LE(n, 32u);
    for (size_t k = 0; k < order.size() && k < 40; ++k) {
      const auto& [c, r] = order[order.size() - 1 - k];
      const auto hit = cache.find(c, static_cast<uint64_t>(i));
      if (k < n) {
        ASSERT_TRUE(hit) << c << " at step " << i;
        ASSERT_EQ(*hit, r);
      } else {
        ASSERT_FALSE(hit) << c << " should be gone at step " << i;
      }
    }
  }
}

TEST(RelayReplyCache, RefusesAnEntryLargerThanAQuarterOfTheArena) {
  RelayReplyCache cache(4096, 16);
  EXPECT_FALSE(cache.insert("k", std::string(2000, 'x'), 0));
  EXPECT_TRUE(cache.insert("k", std::string(500, 'x'), 0));
}

// Runs wire commands through one engine and returns the replies.
class EngineTest : public ::testing::Test {
 protected:
  std::string stream(std::string_view text, std::string_view source = "") {
    RelayReplyBuffer out;
    engine.handle(text, Framing::kStream, source, now, out);
    return std::string(out.view());
  }
  std::string udp(std::string_view text) {
    RelayReplyBuffer out;
    engine.handle(text, Framing::kDatagram, "", now, out);
    return std::string(out.view());
  }
  static RelayConfig config() {
    RelayConfig c;
    c.port_min = 40000;
    c.port_max = 40100;
    c.notify_sockets = {"tcp:%%CC_SELF%%:22297", "unix:/tmp/notify.sock"};
    return c;
  }
  RelayEngine engine{config()};
  uint64_t now = 1000;
};

struct WireCase {
  const char* command;
  const char* reply;
};

void expectDialogue(const std::vector<WireCase>& cases, const std::function<std::string(const char*)>& send) {
  for (const WireCase& c : cases) EXPECT_EQ(send(c.command), c.reply) << "command: " << c.command;
}

TEST_F(EngineTest, AnswersTheCapturedRtpproxyDialogue) {
  // PROTOCOL.md section 8 and 2.x observations, ports from our own range.
  expectDialogue(
      {
          {"c U call1 192.0.2.1 10000 ftag1", "c 40000 127.0.0.1\n"},
          {"c2 L call1 192.0.2.2 20000 ftag1 ttag1", "c2 40002 127.0.0.1\n"},
          {"c3 L call1 192.0.2.2 20000 ttag1 ftag1", "c3 40000 127.0.0.1\n"},
          {"c4 L call2 192.0.2.2 20000 ftag1 ttag1", "c4 0\n"},
          {"c5 Q call1 ftag1 ttag1 ttl nosuch", "c5 E62\n"},
          {"c6 Q call1 ftag1", "c6 60 0 0 0 0\n"},
          {"c7 Qv call1 ftag1 ttag1 ttl rtpa_jmax nrelayed", "c7 ttl=60 rtpa_jmax=0.000000 nrelayed=0\n"},
          {"c8 Un call1 192.0.2.1 10000 ftag1", "c8 40004 127.0.0.1\n"},
          {"c9 U6 call4 ::1 10000 ftag4", "c9 E36\n"},
          {"c10 Ue call6b 192.0.2.1 10000 ftag6", "c10 E11\n"},
          {"c11 U call11 192.0.2.1 1 ftag11 ttag11 && M1:1 x", "c11 E3\n"},
          {"c12 U call12 192.0.2.1 1 ftag12 && L 192.0.2.2 2", "c12 E3\n"},
          {"c13 C call1 udp:127.0.0.1:9 ftag1", "c13 0\n"},
          {"c14 Cp call1 udp:127.0.0.1:9 ftag1", "c14 40006 127.0.0.1\n"},
          {"c15 Cp call1 /tmp/file ftag1", "c15 E65\n"},
          {"c16 P call1 /nonexistent/prompt 0,8 ftag1", "c16 E60\n"},
          {"c17 P call1 /prompt session ftag1", "c17 E35\n"},
          {"c18 P3 call1 /prompt 0,8 ftag1", "c18 0\n"},
          {"c19 G nosuch", "c19 E68\n"},
          {"c20 Gx", "c20 E9\n"},
          {"c21 Ix", "c21 E18\n"},
          {"c22 VF 19990101", "c22 0\n"},
          {"c23 VF 20260309", "c23 1\n"},
          {"c24 VF 20081224", "c24 1\n"},
          {"c25 Z", "c25 E0\n"},
          {"c26 V x", "c26 E1\n"},
          {"c27 Vx", "c27 E2\n"},
          {"V", "V E5\n"},
          {"  \n", "E5\n"},
          {"c28 G", "c28 \n"},
          {"c29 S call1 ftag1", "c29 0\n"},
          {"c30 R call1 ftag1", "c30 0\n"},
          {"c31 N call1 ftag1", "c31 0\n"},
          {"c32 S nocall ftag1", "c32 E50\n"},
          {"c33 Dx call1 ftag1", "c33 E8\n"},
          {"c34 U call1 999.1.1.1 10000 ftag1", "c34 E37\n"},
          {"c35 U call1 192.0.2.1 port ftag1", "c35 E37\n"},
          {"c36 Ul10.0.0.1 call1 192.0.2.1 1 ftag1", "c36 E31\n"},
          {"c37 Ul127.0.0.1 call1 192.0.2.1 1 ftag1", "c37 40004 127.0.0.1\n"},
          {"c38 U call1 192.0.2.1 1 ftag1 tcp:x:1 bad%zz", "c38 E10\n"},
          {"c39 D call1 ttag1", "c39 E50\n"},
          {"c40 D call1 ttag1 ftag1", "c40 0\n"},
          {"c41 Q call1 ftag1", "c41 E50\n"},
          {"c42 X", "c42 0\n"},
      },
      [this](const char* c) { return udp(c); });
}

TEST_F(EngineTest, SubcommandsSetUpTheSecondLegAndDelete) {
  expectDialogue(
      {
          {"U call8 192.0.2.1 10000 ftag8 ttag8 && L 192.0.2.2 20000", "40000 127.0.0.1 && 40002 127.0.0.1\n"},
          {"Qv call8 ftag8 ttag8 && D", "ttl=60 npkts_ina=0 npkts_ino=0 nrelayed=0 ndropped=0\n"},
          {"Q call8 ftag8", "E50\n"},
          {"U call9 192.0.2.1 1 ftag9 ttag9", "40004 127.0.0.1\n"},
          {"Qv call9 ftag9 ttag9 && D && D", "ttl=60 npkts_ina=0 npkts_ino=0 nrelayed=0 ndropped=0 && 0 && -1\n"},
          {"U call10 192.0.2.1 1 f t && S ttl=5 && L 1.1.1.1 2", "40006 127.0.0.1 && 0 && 40008 127.0.0.1\n"},
          {"Q call10 f", "5 0 0 0 0\n"},
          {"Q call10 f && C x y z", "E3\n"},
          {"Q call10 f && Sx ttl=1", "E3\n"},
      },
      [this](const char* c) { return stream(c); });
}

TEST_F(EngineTest, InfoAndStatsCountRealEvents) {
  stream("U a 192.0.2.1 1 f");
  stream("L a 192.0.2.1 1 f t");
  stream("U b 192.0.2.1 1 f");
  stream("D b f");
  EXPECT_EQ(stream("I"),
            "sessions created: 2\nactive sessions: 1\nactive streams: 2\npackets received: 0\n"
            "packets transmitted: 0\n");
  EXPECT_EQ(stream("Ibl"),
            "sessions created: 2\nactive sessions: 1\nactive streams: 2\npackets received: 0\n"
            "packets transmitted: 0\naverage load: 0.000000\n");
  // ncmds_rcvd counts this G too; L on an unknown session is an error.
  stream("L zz 192.0.2.1 1 f t");
  EXPECT_EQ(stream("Gv nsess_created nsess_destroyed ncmds_rcvd ncmds_errs ncmds_succd"),
            "nsess_created=2 nsess_destroyed=1 ncmds_rcvd=8 ncmds_errs=1 ncmds_succd=6\n");
  engine.countDuplicate();
  EXPECT_EQ(stream("G ncmds_rcvd_ndups"), "1\n");
}

TEST_F(EngineTest, AnswerFaultsRefuseNewSessionsAndMimicRtpengineStats) {
  stream("U old 192.0.2.1 1 f");
  for (int code : {98, 99, 72}) {
    engine.faults().refuse_code = code;
    EXPECT_EQ(stream("U new 192.0.2.1 1 f"), "E" + std::to_string(code) + "\n");
    EXPECT_EQ(stream("U old 192.0.2.1 1 f"), "40000 127.0.0.1\n");  // existing sessions still work
  }
  engine.faults().refuse_code = 0;
  engine.faults().rtpengine_stats = true;
  EXPECT_EQ(stream("Ib"), "E8\n");
  EXPECT_EQ(stream("G nsess_created"), "E8\n");
}

TEST_F(EngineTest, NotifyCommandQueuesTheDecodedTagForTheSelfAddress) {
  EXPECT_EQ(stream("U c 192.0.2.1 1 f tcp:%%CC_SELF%%:22297 hello%20world%3Bx", "10.1.2.3"),
            "40000 127.0.0.1\n");
  EXPECT_EQ(stream("U c2 192.0.2.1 1 f unix:/tmp/notify.sock t2"), "40002 127.0.0.1\n");
  EXPECT_EQ(stream("U c3 192.0.2.1 1 f unix:/not/permitted t3"), "40004 127.0.0.1\n");
  EXPECT_EQ(stream("notify c"), "1\n");
  EXPECT_EQ(stream("notify c"), "E50\n");
  EXPECT_EQ(udp("k notify c2"), "k 1\n");
  EXPECT_EQ(stream("notify c3"), "0\n");  // a target that -n does not permit is not kept
  ASSERT_EQ(engine.pendingNotifications().size(), 2u);
  EXPECT_EQ(engine.pendingNotifications()[0].target, "tcp:10.1.2.3:22297");
  EXPECT_EQ(engine.pendingNotifications()[0].tag, "hello world;x");
  EXPECT_EQ(engine.pendingNotifications()[1].target, "unix:/tmp/notify.sock");
  EXPECT_EQ(engine.sessions().activeSessions(), 0u);
  EXPECT_EQ(stream("G nsess_timeout"), "3\n");
}

TEST_F(EngineTest, AUpdateWithoutNotifyArgsDisablesTheHandler) {
  stream("U c 192.0.2.1 1 f tcp:%%CC_SELF%%:22297 t", "::1");
  stream("U c 192.0.2.1 1 f");
  EXPECT_EQ(stream("notify c"), "0\n");
}

TEST(RelayEngineConfig, NotifyArgsWithoutMinusNAreE75AndIpv6AdvertisedAddsSix) {
  RelayConfig c;
  c.advertised = "::1";
  c.port_min = 40000;
  c.port_max = 40010;
  RelayEngine e(c);
  RelayReplyBuffer out;
  e.handle("U c 192.0.2.1 1 f tcp:%%CC_SELF%%:1 t", Framing::kStream, "", 0, out);
  EXPECT_EQ(out.view(), "E75\n");
  e.handle("VF 20081224", Framing::kStream, "", 0, out);
  EXPECT_EQ(out.view(), "0\n");
  e.handle("U6 c ::2 1 f", Framing::kStream, "", 0, out);
  EXPECT_EQ(out.view(), "40000 ::1 6\n");
}

TEST(RelayEngineConfig, PortExhaustionGivesE72ForNewAndE71ForNewPort) {
  RelayConfig c;
  c.port_min = 40000;
  c.port_max = 40003;  // two ports
  RelayEngine e(c);
  RelayReplyBuffer out;
  e.handle("U a 192.0.2.1 1 f", Framing::kStream, "", 0, out);
  e.handle("U b 192.0.2.1 1 f", Framing::kStream, "", 0, out);
  e.handle("U c 192.0.2.1 1 f", Framing::kStream, "", 0, out);
  EXPECT_EQ(out.view(), "E72\n");
  e.handle("Un a 192.0.2.1 1 f", Framing::kStream, "", 0, out);
  EXPECT_EQ(out.view(), "E71\n");
  EXPECT_EQ(e.sessions().activeSessions(), 2u);
}

TEST(LetterSlot, CountsByCommandLetterAfterTheCookie) {
  EXPECT_EQ(letterSlotName(letterSlot("ck u x", Framing::kDatagram)), "U");
  EXPECT_EQ(letterSlotName(letterSlot("VF 1", Framing::kStream)), "VF");
  EXPECT_EQ(letterSlotName(letterSlot("V", Framing::kStream)), "V");
  EXPECT_EQ(letterSlotName(letterSlot("ck", Framing::kDatagram)), "other");
  EXPECT_EQ(letterSlotName(letterSlot("notify c", Framing::kStream)), "other");
  EXPECT_EQ(letterSlotName(letterSlot("\x01", Framing::kStream)), "other");
}

TEST(RelayOptions, ParsesFaultsAndRejectsBadValues) {
  auto parse = [](std::vector<std::string> args, RelayOptions& o) {
    std::vector<char*> argv;
    args.insert(args.begin(), "rtpp_test_relay");
    for (std::string& a : args) argv.push_back(a.data());
    bool help = false;
    return parseRelayOptions(static_cast<int>(argv.size()), argv.data(), o, help);
  };
  RelayOptions o;
  EXPECT_EQ(parse({"-s", "udp:127.0.0.1:0", "--delay-ms", "250", "--drop-percent", "12.5", "--mute",
                   "--garbage", "--refuse", "E99", "--rtpengine-stats", "-m", "30000", "-M", "30100"},
                  o),
            "");
  EXPECT_EQ(o.io_faults.delay_ms, 250u);
  EXPECT_DOUBLE_EQ(o.io_faults.drop_percent, 12.5);
  EXPECT_TRUE(o.io_faults.mute);
  EXPECT_TRUE(o.io_faults.garbage);
  EXPECT_EQ(o.answer_faults.refuse_code, 99);
  EXPECT_TRUE(o.answer_faults.rtpengine_stats);
  EXPECT_EQ(o.config.port_min, 30000);
  RelayOptions bad;
  EXPECT_NE(parse({"-s", "udp:127.0.0.1:0", "--refuse", "E50"}, bad), "");
  RelayOptions none;
  EXPECT_NE(parse({}, none), "");
  EXPECT_EQ(parseRefuseCode("off"), 0);
  EXPECT_EQ(parseRefuseCode("72"), 72);
  EXPECT_EQ(parseRefuseCode("E1"), -1);
}

TEST(LatencyHistogram, PercentilesAreNearestRank) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 1000; ++v) h.record(v);
  EXPECT_EQ(h.percentile(0.5), 500u);
  EXPECT_EQ(h.percentile(0.99), 990u);
  EXPECT_EQ(h.percentile(0.999), 999u);
  h.record(5'000'000);  // over the exact range: reported as the maximum
  EXPECT_EQ(h.percentile(1.0), 5'000'000u);
  EXPECT_EQ(h.max(), 5'000'000u);
}

TEST(LoadResult, MachineLineCarriesEveryField) {
  LoadResult r;
  r.commands = 10;
  r.cps = 5;
  r.p50_us = 1;
  r.p99_us = 2;
  r.p999_us = 3;
  r.errors = 4;
  r.timeouts = 6;
  r.resends = 7;
  const std::string line = formatMachine(r);
  for (const char* k : {"RESULT cmds=10 ", " cps=5 ", " p50_us=1 ", " p99_us=2 ", " p999_us=3 ",
                        " errors=4 ", " timeouts=6 ", " resends=7"}) {
    EXPECT_NE(line.find(k), std::string::npos) << k << " in " << line;
  }
}

}  // namespace
}  // namespace rtpc
