#!/bin/sh
# Builds the Debian package of this work tree: copies the tree (without build
# directories) to a temporary directory, puts packaging/debian/ at its top and
# runs dpkg-buildpackage -us -uc -b. The .deb, .buildinfo and .changes land in
# OUTDIR (default: build-deb/ in the tree).
#
# Needs debhelper and dpkg-dev (scripts/install-deps.sh installs them) and the
# Build-Depends of packaging/debian/control.
#
# usage: packaging/build-deb.sh [OUTDIR]
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/build-deb}
case "$out" in /*) ;; *) out="$(pwd)/$out" ;; esac

for tool in dpkg-buildpackage dh; do
	if ! command -v "$tool" > /dev/null; then
		echo "build-deb.sh: $tool not found; apt-get install debhelper dpkg-dev" >&2
		exit 1
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/rtpc_deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
tree="$work/rtp-cluster"
mkdir "$tree"
# Build directories (build, build-*, obj-*) and git metadata stay behind: only
# sources go into the package build.
tar -C "$src" --exclude=./.git --exclude='./build' --exclude='./build-*' --exclude='./obj-*' -cf - . |
	tar -C "$tree" -xf -
rm -rf "$tree/debian"
cp -R "$src/packaging/debian" "$tree/debian"

(cd "$tree" && dpkg-buildpackage -us -uc -b)

mkdir -p "$out"
for f in "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes; do
	[ -e "$f" ] && cp "$f" "$out/"
done
ls "$out"/*.deb
