#!/usr/bin/env python3
"""Interop: the real rtp_cluster daemon in front of real RTPproxy 3.2 relays.

One relay per member socket kind rtpproxy offers (udp:, udp6: on ::1, unix:,
cunix:, tcp:), plus a relay on cunix: reached by a member configured as
`unix` (a `unix` member must work whether the relay closes after each answer
or keeps the connection open, as with the reference). One cluster per
(member kind x control-socket kind the cluster offers: udp, udp6, unix,
cunix, tcp), each with that one member, so every answer can be compared with
what the relay itself says. Through every cluster: V, VF, U, re-offer U (same
port back), L, Q, I/Ib/Il, G/Gv, D, and the relay's own view of the session
(it has it after U, has it no more after D).

Usage: rtpproxy_interop_test.py RTP_CLUSTER RTP_CLUSTER_CLIENT
Environment: RTPC_RTPPROXY = path of the rtpproxy binary (`make check` builds
it from ../shared/relays); unset: exit 77 (skipped). INTEROP_KEEP=1 keeps the
logs of a passing run.
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

T0 = time.monotonic()
MEMBER_KINDS = ["udp", "udp6", "unix", "cunix", "tcp", "unix-on-cunix"]
CONTROL_KINDS = ["udp", "udp6", "unix", "cunix", "tcp"]


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class Failure(Exception):
    pass


def eventually(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def free_port(family=socket.AF_INET, kind=socket.SOCK_DGRAM):
    s = socket.socket(family, kind)
    s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def info_lines(command):
    """Lines of an I answer (rtpproxy: 5, 6 with `l`), for stream framing."""
    if not command.startswith("I"):
        return 1
    return 6 if "l" in command[1:] else 5


class Client:
    """One control connection of a kind: udp/udp6 with cookies, unix one
    connection per command (answer up to EOF), cunix/tcp persistent lines."""

    def __init__(self, kind, address):
        self.kind, self.address = kind, address
        self.stream = None
        self.buf = b""

    def close(self):
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def ask(self, command, timeout=3.0):
        if self.kind in ("udp", "udp6"):
            fam = socket.AF_INET6 if self.kind == "udp6" else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.settimeout(timeout)
            try:
                cookie = "%08x" % random.getrandbits(32)
                s.sendto(f"{cookie} {command}".encode(), self.address)
                data = s.recv(65536).decode()
                if not data.startswith(cookie + " "):
                    raise Failure(f"{self.kind}: reply without our cookie to {command!r}: {data!r}")
                return data[len(cookie) + 1:].rstrip("\n")
            except socket.timeout:
                raise Failure(f"{self.kind} {self.address}: no answer to {command!r}")
            finally:
                s.close()
        if self.kind == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(self.address)
                s.sendall(f"{command}\n".encode())
                data = b""
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    data += b
                return data.decode().rstrip("\n")
            except socket.timeout:
                raise Failure(f"unix {self.address}: no answer (or no close) to {command!r}")
            finally:
                s.close()
        # cunix / tcp: persistent, one command per line.
        if self.stream is None:
            fam = socket.AF_UNIX if self.kind == "cunix" else socket.AF_INET
            self.stream = socket.socket(fam, socket.SOCK_STREAM)
            self.stream.settimeout(timeout)
            self.stream.connect(self.address)
        self.stream.sendall(f"{command}\n".encode())
        want = info_lines(command)
        try:
            while True:
                lines = self.buf.split(b"\n")
                complete = lines[:-1]
                if complete and (complete[0].startswith(b"E") or len(complete) >= want):
                    n = 1 if complete[0].startswith(b"E") else want
                    out, self.buf = complete[:n], b"\n".join(lines[n:])
                    return b"\n".join(out).decode()
                b = self.stream.recv(65536)
                if not b:
                    raise Failure(f"{self.kind} {self.address}: closed while answering {command!r}")
                self.buf += b
        except socket.timeout:
            raise Failure(f"{self.kind} {self.address}: no answer to {command!r}")


class Procs:
    def __init__(self):
        self.items = []

    def start(self, args, logfile):
        out = open(logfile, "ab")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.items.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.items):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in reversed(self.items):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Relay:
    """A real rtpproxy on one control socket kind."""

    def __init__(self, procs, tmp, binary, kind, port_min):
        self.kind, self.tmp = kind, tmp
        self.port_min, self.port_max = port_min, port_min + 199
        name = kind.replace("-", "_")
        self.name = name
        listen_kind = "cunix" if kind == "unix-on-cunix" else kind
        if listen_kind == "udp":
            port = free_port()
            self.spec, self.member = f"udp:127.0.0.1:{port}", ("udp", f"127.0.0.1:{port}")
            self.client = Client("udp", ("127.0.0.1", port))
        elif listen_kind == "udp6":
            port = free_port(socket.AF_INET6)
            # rtpproxy splits host and port at the last colon, no brackets.
            self.spec, self.member = f"udp6:::1:{port}", ("udp6", f"[::1]:{port}")
            self.client = Client("udp6", ("::1", port))
        elif listen_kind == "tcp":
            port = free_port(kind=socket.SOCK_STREAM)
            self.spec, self.member = f"tcp:127.0.0.1:{port}", ("tcp", f"127.0.0.1:{port}")
            self.client = Client("tcp", ("127.0.0.1", port))
        else:
            path = f"{tmp}/relay-{name}.sock"
            self.spec = f"{listen_kind}:{path}"
            self.member = ("unix" if kind == "unix-on-cunix" else listen_kind, path)
            self.client = Client(listen_kind, path)
        self.proc = procs.start([binary, "-F", "-f", "-s", self.spec, "-l", "127.0.0.1", "-m", str(self.port_min),
                                 "-M", str(self.port_max), "-d", "err"], f"{tmp}/relay-{name}.log")

    def ready(self):
        if self.proc.poll() is not None:
            raise Failure(f"rtpproxy on {self.spec} exited: " + open(f"{self.tmp}/relay-{self.name}.log").read())
        try:
            return self.client.ask("V", 0.3) == "20040107"
        except (OSError, Failure):
            self.client.close()
            return False


def cluster_control(kind, tmp, name):
    """(config protocol, config address, Client) for a control socket."""
    if kind == "udp":
        port = free_port()
        return "udp", f"127.0.0.1:{port}", Client("udp", ("127.0.0.1", port))
    if kind == "udp6":
        port = free_port(socket.AF_INET6)
        return "udp6", f"[::1]:{port}", Client("udp6", ("::1", port))
    if kind == "tcp":
        port = free_port(kind=socket.SOCK_STREAM)
        return "tcp", f"127.0.0.1:{port}", Client("tcp", ("127.0.0.1", port))
    path = f"{tmp}/cl-{name}.sock"
    return kind, path, Client(kind, path)


def parse_ul(answer):
    """'PORT ADDR' (or a bare port) -> (port, addr)."""
    m = re.fullmatch(r"(\d+)(?: (\S+))?", answer)
    return (int(m.group(1)), m.group(2)) if m else (None, None)


def info_dict(answer):
    return dict(l.split(": ", 1) for l in answer.splitlines() if ": " in l)


def exercise(cname, ctl, relay, checks):
    """Every command through the cluster `cname` (control client `ctl`) whose
    one member is `relay`."""
    def check(cond, what, got):
        if not cond:
            raise Failure(f"{cname}: {what}: got {got!r}")
        checks[0] += 1

    call, ftag, ttag = f"call-{cname}-{random.getrandbits(32):08x}", "ft" + cname, "tt" + cname
    a = ctl.ask("V")
    check(a == "20040107", "V", a)
    # Kamailio probes 20050322 at start; rtpproxy 3.2 does not support 20081224.
    for date in ("20050322", "20081224", "20090810", "20150617", "20991231"):
        own = relay.client.ask(f"VF {date}")
        a = ctl.ask(f"VF {date}")
        check(a == own and a in ("0", "1"), f"VF {date} as the relay answers it ({own!r})", a)
    a = ctl.ask(f"U {call} 127.0.0.1 4000 {ftag}")
    port, addr = parse_ul(a)
    check(port is not None and relay.port_min <= port <= relay.port_max and addr == "127.0.0.1",
          f"U answers a port of the relay ({relay.port_min}-{relay.port_max}) and its address", a)
    a2 = ctl.ask(f"U {call} 127.0.0.1 4000 {ftag}")
    check(parse_ul(a2)[0] == port, "re-offer U gives the same port back", (a, a2))
    a = ctl.ask(f"L {call} 127.0.0.1 4002 {ttag} {ftag}")
    lport, laddr = parse_ul(a)
    check(lport is not None and relay.port_min <= lport <= relay.port_max and laddr == "127.0.0.1",
          "L answers a port of the relay", a)
    # The relay itself has the session: the cluster sent it there.
    a = relay.client.ask(f"Q {call} {ftag} {ttag}")
    check(re.fullmatch(r"\d+ \d+ \d+ \d+ \d+", a) is not None, "the relay has the session (its own Q)", a)
    a = ctl.ask(f"Q {call} {ftag} {ttag}")
    q = a.split()
    check(len(q) == 5 and all(x.isdigit() for x in q) and 0 < int(q[0]) <= 60,
          "Q through the cluster: ttl and 4 packet counters", a)
    # I/Ib/Il: answered from the heartbeats, which must see the session.
    want = info_dict(relay.client.ask("Ib"))
    check(int(want.get("active sessions", "0")) >= 1, "the relay's own Ib counts the session", want)

    def info_matches(cmd):
        got = info_dict(ctl.ask(cmd))
        return got if all(got.get(k) == want[k] for k in ("active sessions", "active streams")) else None
    for cmd in ("I", "Ib", "Il"):
        got = eventually(lambda: info_matches(cmd), 5, 0.1)
        check(got, f"{cmd} through the cluster reports the relay's active sessions/streams "
                   f"{want.get('active sessions')}/{want.get('active streams')}", ctl.ask(cmd))
        check(all(k in got for k in ("sessions created", "packets received", "packets transmitted")),
              f"{cmd} has every rtpproxy field", got)
        if cmd == "Il":
            check("average load" in got, "Il has the average load", got)
    # G: broadcast to the one member, so the same values as the relay's own.
    own = relay.client.ask("G nsess_created nsess_destroyed")
    a = ctl.ask("G nsess_created nsess_destroyed")
    check(a == own and re.fullmatch(r"\d+ \d+", a) and int(a.split()[0]) >= 1,
          f"G nsess_created nsess_destroyed equals the relay's own ({own!r})", a)
    own = relay.client.ask("Gv nsess_created total_duration")
    a = ctl.ask("Gv nsess_created total_duration")
    m = re.fullmatch(r"nsess_created=(\d+) total_duration=([0-9.]+)", a)
    check(m is not None and int(m.group(1)) == int(own.split()[0].split("=")[1]),
          f"Gv names each value, nsess_created as the relay's ({own!r})", a)
    a = ctl.ask("G")
    check(a == "", "G with no names answers an empty line", a)
    a = ctl.ask(f"D {call} {ftag} {ttag}")
    check(a == "0", "D", a)
    a = relay.client.ask(f"Q {call} {ftag} {ttag}")
    check(a.startswith("E"), "the relay no longer has the session after D", a)
    a = ctl.ask(f"Q {call} {ftag} {ttag}")
    check(a.startswith("E"), "Q after D is an error", a)
    ctl.close()


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    client_bin = os.path.abspath(sys.argv[2])
    rtpproxy = os.environ.get("RTPC_RTPPROXY", "")
    if not rtpproxy:
        print("skipped: RTPC_RTPPROXY is not set (the path of a real rtpproxy 3.2; `make check` builds one "
              "when ../shared/relays exists)")
        return 77
    if not os.access(rtpproxy, os.X_OK):
        print(f"FAIL: RTPC_RTPPROXY={rtpproxy} is not an executable")
        return 1

    def terminated(signum, _frame):
        raise Failure(f"terminated by signal {signum}")
    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGINT, terminated)
    tmp = tempfile.mkdtemp(prefix="rtpc-interop-")
    procs = Procs()
    ok = False
    checks = [0]
    try:
        base = random.choice(range(20000, 30000, 1200))
        relays = {k: Relay(procs, tmp, rtpproxy, k, base + 200 * i) for i, k in enumerate(MEMBER_KINDS)}
        for r in relays.values():
            if not eventually(r.ready, 10, 0.1):
                raise Failure(f"rtpproxy on {r.spec} does not answer V")
        log("relays up: " + ", ".join(r.spec for r in relays.values()))
        # Heartbeats often enough that I/Ib see a new session soon; commands
        # with room for a busy host (and the ASan build).
        tuning = ("<tuning><heartbeat_interval>500</heartbeat_interval><command_timeout>400</command_timeout>"
                  "<offline_probe_interval>200</offline_probe_interval>"
                  "<session_table_size>1024</session_table_size></tuning>")
        clusters = {}
        xml = "<rtp_cluster_config>\n"
        for ck in CONTROL_KINDS:
            for mk in MEMBER_KINDS:
                name = f"{ck}_to_{mk.replace('-', '_')}"
                proto, address, client = cluster_control(ck, tmp, name)
                clusters[name] = (client, relays[mk])
                mproto, maddr = relays[mk].member
                xml += (f"  <rtp_cluster><name>{name}</name><protocol>{proto}</protocol><address>{address}</address>"
                        f"{tuning}<rtpproxy><name>r_{mk.replace('-', '_')}</name><protocol>{mproto}</protocol>"
                        f"<address>{maddr}</address><weight>100</weight><capacity>1000</capacity>"
                        f"<status>ACTIVE</status></rtpproxy></rtp_cluster>\n")
        xml += "</rtp_cluster_config>\n"
        config = f"{tmp}/rtp_cluster.xml"
        with open(config, "w") as f:
            f.write(xml)
        cl_log = f"{tmp}/rtp_cluster.log"
        cl = procs.start([binary, "-f", "-c", config, "-P", f"{tmp}/rtp_cluster.pid", "-s", f"{tmp}/admin.sock"],
                         cl_log)
        if not eventually(lambda: "READY pid=" in open(cl_log).read() or cl.poll() is not None, 20):
            raise Failure("rtp_cluster did not print READY")
        if cl.poll() is not None:
            raise Failure("rtp_cluster exited: " + open(cl_log).read()[-2000:])
        log(f"rtp_cluster up with {len(clusters)} clusters")
        admin = f"{tmp}/admin.sock"

        def all_online():
            r = subprocess.run([client_bin, "-s", admin, "ls"], capture_output=True, text=True, timeout=10)
            # One member per cluster: every cluster must count it online.
            return sorted(re.findall(r"online members = (\d+)", r.stdout)) == ["1"] * len(clusters)
        if not eventually(all_online, 15, 0.2):
            raise Failure("not every member came online:\n" + subprocess.run(
                [client_bin, "-s", admin, "ls"], capture_output=True, text=True, timeout=10).stdout)
        for name, (client, relay) in clusters.items():
            started = time.monotonic()
            exercise(name, client, relay, checks)
            log(f"ok: {name}: every command ({time.monotonic() - started:.2f}s)")
        bad = [l for l in open(cl_log, errors="replace") if "MEMBER_OFFLINE" in l or "CLUSTER_ERROR" in l]
        if bad:
            raise Failure(f"the cluster logged member or cluster errors: {bad[:5]}")
        ok = True
    except (Failure, OSError) as e:
        log(f"FAIL: {e}")
    finally:
        procs.stop_all()
        if ok and not os.environ.get("INTEROP_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"logs kept in {tmp}")
            if not ok:
                for f in sorted(os.listdir(tmp)):
                    if f.endswith(".log"):
                        text = open(os.path.join(tmp, f), errors="replace").read()
                        print(f"----- {f} (last 25 lines)\n" + "\n".join(text.splitlines()[-25:]))
    log(f"PASS ({checks[0]} checks)" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
