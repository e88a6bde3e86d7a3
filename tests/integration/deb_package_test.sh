#!/bin/bash
# The Debian package (packaging/build-deb.sh, packaging/debian/). Building it
# compiles the daemon from scratch (several minutes), so the test is skipped
# unless asked for:
#   RTPC_TEST_DEB=1        build it and check its control fields and contents;
#   RTPC_TEST_DEB=install  also dpkg -i it on this machine (root), check the
#                          system user, the installed files and the unit, then
#                          purge it again.
# Environment: RTPC_SOURCE_ROOT (set by packaging/meson.build).
set -u

case "${RTPC_TEST_DEB:-}" in
  1|install) ;;
  *) echo "skip: set RTPC_TEST_DEB=1 (or =install) to build the Debian package"; exit 77 ;;
esac

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

src=${RTPC_SOURCE_ROOT:?}
work=$(mktemp -d "${TMPDIR:-/tmp}/rtpc_debtest.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

# The package version follows the project's.
meson_version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$src/meson.build" | head -1)
deb_version=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$src/packaging/debian/changelog")
[ "$meson_version" = "$deb_version" ] ||
  fail "debian/changelog version $deb_version is not the meson project version $meson_version"

if ! "$src/packaging/build-deb.sh" "$work/out" > "$work/build.log" 2>&1; then
  tail -50 "$work/build.log" >&2
  fail "packaging/build-deb.sh failed"
  exit 1
fi
deb=$(ls "$work"/out/rtp-cluster_*.deb 2> /dev/null | head -1)
[ -n "$deb" ] || { fail "no rtp-cluster_*.deb produced"; exit 1; }
pass "built $(basename "$deb")"

# --- control fields ---------------------------------------------------------
[ "$(dpkg-deb -f "$deb" Package)" = rtp-cluster ] || fail "Package is not rtp-cluster"
[ "$(dpkg-deb -f "$deb" Version)" = "$meson_version" ] || fail "Version is not $meson_version"
depends=$(dpkg-deb -f "$deb" Depends)
for d in adduser procps libevent; do
  case "$depends" in *"$d"*) ;; *) fail "Depends lacks $d: $depends" ;; esac
done

# --- contents -------------------------------------------------------------------
dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|' > "$work/contents"
for path in /usr/sbin/rtp_cluster /usr/bin/rtp_cluster_client /etc/rtp_cluster.xml \
            /etc/logrotate.d/rtp_cluster /lib/systemd/system/rtp_cluster.service \
            /usr/share/man/man8/rtp_cluster.8.gz \
            /usr/share/man/man1/rtp_cluster_client.1.gz /usr/share/man/man5/rtp_cluster.xml.5.gz \
            /usr/share/doc/rtp-cluster/copyright; do
  grep -qxF "$path" "$work/contents" || fail "package lacks $path"
done
# Test tools are never installed.
if grep -E 'rtpp_test_relay|rtpp_loadgen|rtp_cluster_worker|_test$' "$work/contents" >&2; then
  fail "package contains test binaries"
fi
mkdir "$work/control"
dpkg-deb -e "$deb" "$work/control"
grep -qxF /etc/rtp_cluster.xml "$work/control/conffiles" || fail "/etc/rtp_cluster.xml is not a conffile"
grep -qxF /etc/logrotate.d/rtp_cluster "$work/control/conffiles" || fail "the logrotate file is not a conffile"
grep -q 'adduser .*rtp_cluster' "$work/control/postinst" || fail "postinst does not create the rtp_cluster user"
# No tmpfiles.d link: /run/rtp_cluster.sock must stay free for a daemon
# started without systemd; the unit links it while it runs.
if grep -q 'tmpfiles' "$work/contents"; then fail "the package ships a tmpfiles.d file"; fi
grep -q 'deb-systemd-helper' "$work/control/postinst" || fail "postinst does not register the unit"
mkdir "$work/root"
dpkg-deb -x "$deb" "$work/root"
grep -q '^ExecStart=/usr/sbin/rtp_cluster -f -c /etc/rtp_cluster.xml ' "$work/root/lib/systemd/system/rtp_cluster.service" ||
  fail "the packaged unit does not run /usr/sbin/rtp_cluster with /etc/rtp_cluster.xml"
"$work/root/usr/sbin/rtp_cluster" --help | grep -- '--config' | grep -qF '(default /etc/rtp_cluster.xml)' ||
  fail "the packaged rtp_cluster's -c does not default to /etc/rtp_cluster.xml (its man page's path)"
pass "package contents"

if command -v lintian > /dev/null; then
  # Reported, not enforced: the maintainer address is a placeholder.
  lintian --no-tag-display-limit "$deb" || true
fi

# --- install, check, purge ------------------------------------------------------
if [ "${RTPC_TEST_DEB}" = install ]; then
  if [ "$(id -u)" -ne 0 ]; then
    fail "RTPC_TEST_DEB=install needs root"
  elif dpkg -s rtp-cluster > /dev/null 2>&1; then
    fail "rtp-cluster is already installed here; not touching it"
  else
    if dpkg -i "$deb" > "$work/install.log" 2>&1; then
      pass "dpkg -i"
      getent passwd rtp_cluster > /dev/null || fail "no rtp_cluster user after install"
      getent group rtp_cluster > /dev/null || fail "no rtp_cluster group after install"
      /usr/sbin/rtp_cluster -d -c /etc/rtp_cluster.xml > /dev/null 2>&1 ||
        fail "installed rtp_cluster -d rejects /etc/rtp_cluster.xml"
      /usr/bin/rtp_cluster_client --version > /dev/null || fail "installed rtp_cluster_client does not run"
      if command -v systemd-analyze > /dev/null; then
        systemd-analyze verify /lib/systemd/system/rtp_cluster.service > "$work/verify.log" 2>&1 && [ ! -s "$work/verify.log" ] ||
          { fail "systemd-analyze verify of the installed unit:"; cat "$work/verify.log" >&2; }
      fi
      [ ! -L /run/rtp_cluster.sock ] ||
        fail "a /run/rtp_cluster.sock link exists with the service stopped (a hand-started daemon could not bind it)"
      man -w rtp_cluster.xml > /dev/null 2>&1 || fail "man rtp_cluster.xml is not found after install"
    else
      cat "$work/install.log" >&2
      fail "dpkg -i failed"
    fi
    if dpkg --purge rtp-cluster > "$work/purge.log" 2>&1; then
      [ ! -e /usr/sbin/rtp_cluster ] && [ ! -e /etc/rtp_cluster.xml ] || fail "files left after purge"
      [ ! -L /run/rtp_cluster.sock ] || fail "the /run/rtp_cluster.sock link is left after purge"
      pass "dpkg --purge"
    else
      cat "$work/purge.log" >&2
      fail "dpkg --purge failed"
    fi
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all Debian package checks passed"
