#!/usr/bin/env python3
"""Worker benchmark (issue #3 "Performance"); results and method in docs/benchmarks.md.

Starts two relay doubles (rtpp_test_relay) and one worker (rtp_cluster_worker) in
front of them on loopback UDP, then drives rtpp_loadgen (closed loop, U/D call
pairs) against a relay directly and against the worker, side by side:

  direct  W=1 / W=64    one relay, no worker: the floor
  worker  W=1 / W=64    through the worker, two relays behind it
  forwarder W=1 / W=64 through udp_forwarder, a zero-logic UDP proxy (batched
                        recvmmsg/sendmmsg, no parsing beyond the call-id, no
                        state) in front of the same two relays: the floor for
                        any proxy of this shape on this machine
  worker_1M W=64        through a second, identical worker that got
                        1,000,000 live calls preloaded into its session
                        table first; its runs interleave with the others, so
                        the T4 ratio compares runs taken side by side

Each case runs --repeat times (interleaved, so a burst of load from elsewhere
hits both sides) and the median run is reported. The worker's RSS is read from
/proc before and after the preload to get the memory per tracked call.

Output: one `BENCH case=... w=... cps=... p50_us=... p99_us=... p999_us=...`
line per run and per median, then a SUMMARY block with the ratios vs targets.
Python 3 standard library only.
"""

import argparse
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_W1_EXTRA_P50_US = 25
TARGET_CPS = 150_000
TARGET_P99_US = 1000
TARGET_1M_RATIO = 0.90
TARGET_BYTES_PER_CALL = 200

# Mirrors SessionTable::bytesFor (shared/session_table.cpp): 2 slots of 16 bytes
# per configured call plus the header rounded up to 64 bytes. The table is
# zeroed when the worker starts, so it is resident before any call arrives and
# the RSS delta of the preload does not include it.
TABLE_HEADER_BYTES = 1152
TABLE_BYTES_PER_CONFIGURED_CALL = 32

RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child that prints `LISTENING uri` (and maybe READY) on stdout."""

    def __init__(self, argv, name, want_ready):
        self.name = name
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, bufsize=1)
        self.uri = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            if not line:
                break
            line = line.strip()
            if line.startswith("LISTENING ") and self.uri is None:
                self.uri = line.split(" ", 1)[1]
                if not want_ready:
                    break
            if line == "READY":
                break
        if self.uri is None:
            self.stop()
            err = self.p.stderr.read() if self.p.stderr else ""
            raise RuntimeError(f"{name} did not start: {err.strip()}")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) * 1024
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a running process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_seconds():
    """CPU of waited-for children (each finished rtpp_loadgen)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_loadgen(loadgen, args, timeout):
    r = subprocess.run([loadgen] + args, capture_output=True, text=True, timeout=timeout)
    m = RESULT_RE.search(r.stdout)
    if not m:
        raise RuntimeError(f"rtpp_loadgen {' '.join(args)} failed ({r.returncode}): "
                           f"{r.stderr.strip()}")
    fields = dict(kv.split("=", 1) for kv in m.group(1).split())
    return {k: float(v) for k, v in fields.items()}


def bench_line(case, w, res, tag=""):
    return (f"BENCH case={case} w={w} cps={res['cps']:.0f} p50_us={res['p50_us']:.0f} "
            f"p99_us={res['p99_us']:.0f} p999_us={res['p999_us']:.0f} "
            f"errors={res['errors']:.0f} timeouts={res['timeouts']:.0f}{tag}")


def median_run(runs):
    """The run with the median throughput (its latencies belong to it)."""
    ordered = sorted(runs, key=lambda r: r["cps"])
    return ordered[(len(ordered) - 1) // 2]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def write_config(path, port, relays, table_size):
    members = "".join(
        f"""    <rtpproxy>
      <name>r{i + 1}</name>
      <protocol>udp</protocol>
      <address>{uri.split(':', 1)[1]}</address>
      <weight>100</weight>
      <capacity>1000000</capacity>
    </rtpproxy>
""" for i, uri in enumerate(relays))
    with open(path, "w") as f:
        f.write(f"""<?xml version="1.0" encoding="UTF-8"?>
<rtp_cluster_config>
  <rtp_cluster>
    <name>bench</name>
    <protocol>udp</protocol>
    <address>127.0.0.1:{port}</address>
    <tuning>
      <session_table_size>{table_size}</session_table_size>
    </tuning>
{members}  </rtp_cluster>
</rtp_cluster_config>
""")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD", "build-release"),
                    help="meson build directory (default: build-release or $BUILD)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per run (default 4)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    ap.add_argument("--preload", type=int, default=1_000_000, help="calls to preload (default 1e6)")
    ap.add_argument("--table-size", type=int, default=1_048_576,
                    help="<session_table_size> of the worker (default 1048576)")
    args = ap.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    build = args.build if os.path.isabs(args.build) else os.path.join(root, args.build)
    relay_bin = os.path.join(build, "tests/tools/rtpp_test_relay")
    loadgen = os.path.join(build, "tests/tools/rtpp_loadgen")
    worker_bin = os.path.join(build, "worker/rtp_cluster_worker")
    forwarder_bin = os.path.join(build, "tests/tools/udp_forwarder")
    for b in (relay_bin, loadgen, worker_bin, forwarder_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"worker_bench: {b} missing: build {build} first")
    if args.table_size < args.preload:
        sys.exit("worker_bench: --table-size must be >= --preload")

    with open("/proc/cpuinfo") as f:
        models = re.findall(r"^model name\s*:\s*(.*)$", f.read(), re.M)
    print(f"MACHINE nproc={os.cpu_count()} cpu=\"{models[0] if models else '?'}\" "
          f"loadavg_start=\"{loadavg()}\"", flush=True)

    procs = []
    tmp = tempfile.mkdtemp(prefix="worker_bench.")
    try:
        relays = []
        for i in range(2):
            p = Proc([relay_bin, "-s", "udp:127.0.0.1:0"], f"relay{i + 1}", want_ready=True)
            procs.append(p)
            relays.append(p.uri)
        port = free_udp_port()
        cfg = os.path.join(tmp, "bench.xml")
        write_config(cfg, port, relays, args.table_size)
        worker = Proc([worker_bin, "-c", cfg, "--log-level", "warn"], "worker", want_ready=False)
        procs.append(worker)
        wpid = worker.p.pid
        # A second worker, the same but for its port, that gets the preload:
        # its runs interleave with the empty one's, so a change of speed of
        # the shared machine hits both sides of the T4 ratio alike.
        big_cfg = os.path.join(tmp, "bench_big.xml")
        write_config(big_cfg, free_udp_port(), relays, args.table_size)
        big = Proc([worker_bin, "-c", big_cfg, "--log-level", "warn"], "worker_big", want_ready=False)
        procs.append(big)
        bpid = big.p.pid
        forwarder = Proc([forwarder_bin, "-l", str(free_udp_port())] +
                         [a for uri in relays for a in ("-r", uri.split(":", 1)[1])],
                         "forwarder", want_ready=False)
        procs.append(forwarder)
        fpid = forwarder.p.pid
        log(f"relays {relays}, worker {worker.uri} (pid {wpid}), worker_big {big.uri} (pid {bpid}), "
            f"forwarder {forwarder.uri} (pid {fpid})")

        timeout = args.duration + 30
        direct, through = relays[0], worker.uri
        # Warm-up until the worker's RSS stops growing: its reply cache ring
        # (64 MiB, touched as it fills) must be resident and wrapped before the
        # baseline, or the preload's RSS delta would count the ring as calls.
        for pid, uri in ((wpid, through), (bpid, big.uri)):
            last = rss(pid)["VmRSS"]
            for _ in range(30):
                run_loadgen(loadgen, ["-t", uri, "-w", "64", "-d", "2"], timeout)
                now = rss(pid)["VmRSS"]
                grew, last = now - last, now
                if grew < 512 * 1024:
                    break
            log(f"warm-up done, {uri} VmRSS {last // 1024} KiB")

        # The preload, before the measured runs (see worker_big above).
        rss_before = rss(bpid)
        t0 = time.monotonic()
        pre = run_loadgen(loadgen, ["-t", big.uri, "--preload", str(args.preload),
                                    "--release", relays[0], "--release", relays[1], "-w", "64",
                                    "--timeout-ms", "2000"], timeout=600)
        preload_s = time.monotonic() - t0
        time.sleep(0.5)
        rss_after = rss(bpid)
        created = int(pre["calls"])
        print(f"PRELOAD calls={created} seconds={preload_s:.1f} cps={pre['cps']:.0f} "
              f"errors={pre['errors']:.0f} timeouts={pre['timeouts']:.0f}", flush=True)
        case_1m = f"worker_{args.preload // 1000}k" if args.preload < 1_000_000 else \
            f"worker_{args.preload // 1_000_000}M"

        cases = [("direct", 1, direct), ("forwarder", 1, forwarder.uri), ("worker", 1, through),
                 ("direct", 64, direct), ("forwarder", 64, forwarder.uri), ("worker", 64, through),
                 (case_1m, 64, big.uri)]
        runs = {(c, w): [] for c, w, _ in cases}
        relay_pids = [p.p.pid for p in procs[:2]]
        for rep in range(args.repeat):
            for case, w, target in cases:
                # CPU each part spends per command: where a 2-core machine's
                # time goes, and the throughput it allows at best.
                # The "proxy" column is the worker's or the forwarder's CPU.
                ppid = fpid if case == "forwarder" else bpid if case == case_1m else wpid
                w0, r0, c0 = cpu_seconds(ppid), sum(cpu_seconds(p) for p in relay_pids), children_cpu_seconds()
                res = run_loadgen(loadgen, ["-t", target, "-w", str(w), "-d", str(args.duration)],
                                  timeout)
                cmds = max(res["cmds"], 1)
                wk = (cpu_seconds(ppid) - w0) / cmds * 1e6
                rl = (sum(cpu_seconds(p) for p in relay_pids) - r0) / cmds * 1e6
                lg = (children_cpu_seconds() - c0) / cmds * 1e6
                res["cpu_us"] = wk + rl + lg
                runs[(case, w)].append(res)
                print(bench_line(case, w, res, f" run={rep + 1} load=\"{loadavg()}\""), flush=True)
                print(f"CPU case={case} w={w} us_per_cmd proxy={wk:.1f} relays={rl:.1f} "
                      f"loadgen={lg:.1f} total={wk + rl + lg:.1f} "
                      f"cps_bound_{os.cpu_count()}cores={os.cpu_count() * 1e6 / max(wk + rl + lg, 0.01):.0f}",
                      flush=True)

        rss_end = rss(bpid)

        med = {k: median_run(v) for k, v in runs.items()}
        print("# medians", flush=True)
        for (case, w), res in med.items():
            print(bench_line(case, w, res, " median"), flush=True)

        def kib(b):
            return f"{b // 1024}"
        for label, r in (("before_preload", rss_before), ("after_preload", rss_after),
                         ("end", rss_end)):
            print(f"RSS when={label} vmrss_kib={kib(r['VmRSS'])} anon_kib={kib(r['RssAnon'])} "
                  f"file_kib={kib(r['RssFile'])} shmem_kib={kib(r['RssShmem'])}", flush=True)
        table_bytes = TABLE_HEADER_BYTES + TABLE_BYTES_PER_CONFIGURED_CALL * args.table_size
        delta = rss_after["VmRSS"] - rss_before["VmRSS"]
        per_call_delta = delta / max(created, 1)
        per_call_table = table_bytes / max(created, 1)
        per_call = per_call_delta + per_call_table
        print(f"MEMORY calls={created} table_bytes={table_bytes} rss_delta_bytes={delta} "
              f"bytes_per_call={per_call:.1f} (table {per_call_table:.1f} + "
              f"rss_delta {per_call_delta:.1f})", flush=True)

        d1, w1 = med[("direct", 1)], med[("worker", 1)]
        w64, m64 = med[("worker", 64)], med[(case_1m, 64)]
        d64 = med[("direct", 64)]
        f1, f64 = med[("forwarder", 1)], med[("forwarder", 64)]
        extra = w1["p50_us"] - d1["p50_us"]
        ratio_1m = m64["cps"] / w64["cps"] if w64["cps"] else 0.0

        def verdict(ok):
            return "PASS" if ok else "MISS"
        print("SUMMARY", flush=True)
        print(f"  W=1 p50 through worker - direct = {extra:.0f} us "
              f"(target <= {TARGET_W1_EXTRA_P50_US})  {verdict(extra <= TARGET_W1_EXTRA_P50_US)}")
        print(f"  W=64 worker cps = {w64['cps']:.0f} = {w64['cps'] / TARGET_CPS:.2f} x target "
              f"{TARGET_CPS} ({w64['cps'] / d64['cps']:.2f} x direct)  "
              f"{verdict(w64['cps'] >= TARGET_CPS)}")
        print(f"  W=64 worker p99 = {w64['p99_us']:.0f} us (target < {TARGET_P99_US})  "
              f"{verdict(w64['p99_us'] < TARGET_P99_US)}")
        print(f"  W=64 with {created} calls: cps ratio = {ratio_1m:.2f} (target >= "
              f"{TARGET_1M_RATIO})  {verdict(ratio_1m >= TARGET_1M_RATIO)}")
        print(f"  memory per tracked call = {per_call:.0f} bytes (target < {TARGET_BYTES_PER_CALL})"
              f"  {verdict(per_call < TARGET_BYTES_PER_CALL)}")
        print("FLOOR (udp_forwarder: no logic, same two relays; what any UDP proxy costs here)")
        print(f"  W=1 p50 through forwarder - direct = {f1['p50_us'] - d1['p50_us']:.0f} us; "
              f"worker - forwarder = {w1['p50_us'] - f1['p50_us']:.0f} us")
        print(f"  W=64 forwarder cps = {f64['cps']:.0f} ({f64['cps'] / TARGET_CPS:.2f} x target); "
              f"worker = {w64['cps'] / f64['cps'] if f64['cps'] else 0:.2f} x forwarder")
        print(f"  W=64 forwarder p99 = {f64['p99_us']:.0f} us")
        print(f"  loadavg_end=\"{loadavg()}\"", flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
