#!/bin/sh
# Installs everything RTP Cluster needs to build and test on Debian 12.
set -eu
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  build-essential g++ clang libclang-rt-14-dev meson ninja-build pkg-config \
  libevent-dev libpugixml-dev libspdlog-dev libfmt-dev libboost-dev \
  libgtest-dev libgmock-dev googletest python3 \
  rtpengine-daemon rtpengine-utils kamailio sip-tester libsystemd-dev \
  bison flex xz-utils  # make peers: rtpproxy and OpenSIPS from ../shared (.tar.xz; OpenSIPS needs bison, flex)
$SUDO apt-get install -y -q --no-install-recommends debhelper dpkg-dev systemd logrotate groff-base man-db  # packaging: make deb, packaging_test
