#!/usr/bin/env bash
# Build the local images the test bed and the demo need, without any registry:
#   testbed-hub/debian:bookworm      debootstrap (minbase) + docker import
#                                    also saved as .cache/images/debian-bookworm.tar
#                                    (the roles `docker load` it inside the base station)
#   testbed-hub/basestation:current  systemd + python3, runs its own Docker engine
# Each image is tagged with a content hash of its inputs; an image whose hash
# tag exists is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
CACHE=.cache/images
CA_DIR="${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"
mkdir -p "$CACHE"

log() { printf '==> %s\n' "$*"; }
hash_of() { sha256sum | cut -c1-12; }

exec 9>"$CACHE/.lock"
flock 9

# --- Debian base ----------------------------------------------------------
debian_hash=$( { echo "suite=$SUITE variant=minbase mirror=$MIRROR"; cat "$0"; } | hash_of)
debian_ref="testbed-hub/debian:$SUITE-$debian_hash"
if docker image inspect "$debian_ref" >/dev/null 2>&1; then
  log "base image $debian_ref is cached"
else
  log "building $debian_ref with debootstrap (about 30 s)"
  root=$(mktemp -d /var/tmp/debootstrap.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { echo "ERROR: debootstrap failed; see $CACHE/debootstrap.log" >&2; exit 1; }
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$debian_ref" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi
docker tag "$debian_ref" "testbed-hub/debian:$SUITE"
if [ "$(cat "$CACHE/debian-$SUITE.tar.id" 2>/dev/null)" != "$debian_hash" ]; then
  log "saving testbed-hub/debian:$SUITE to $CACHE/debian-$SUITE.tar"
  docker save "testbed-hub/debian:$SUITE" -o "$CACHE/debian-$SUITE.tar.tmp"
  mv "$CACHE/debian-$SUITE.tar.tmp" "$CACHE/debian-$SUITE.tar"
  echo "$debian_hash" >"$CACHE/debian-$SUITE.tar.id"
fi

# --- Base station ---------------------------------------------------------
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp images/basestation/Dockerfile "$ctx/"
mkdir -p "$ctx/ca"
if [ -d "$CA_DIR" ]; then
  find "$CA_DIR" -maxdepth 2 -name '*.crt' -type f -exec cp {} "$ctx/ca/" \;
fi
bs_hash=$( { echo "$debian_hash"; cd "$ctx" && find . -type f | sort | xargs sha256sum; } | hash_of)
bs_ref="testbed-hub/basestation:$bs_hash"
if docker image inspect "$bs_ref" >/dev/null 2>&1; then
  log "base station image $bs_ref is cached"
else
  log "building $bs_ref (about 1 minute)"
  docker build -q --build-arg "BASE_IMAGE=$debian_ref" -t "$bs_ref" "$ctx" >/dev/null
fi
docker tag "$bs_ref" testbed-hub/basestation:current
log "images ready: $debian_ref, $bs_ref (= testbed-hub/basestation:current)"
