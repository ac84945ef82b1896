#!/usr/bin/env bash
# Prepare this machine (Debian 12/13 or Ubuntu, root or sudo) to run the demo and
# the tests: Docker Engine (running), debootstrap, Chromium for the browser tests,
# libsndfile1 for soundfile (NIST's packages, the notebook helpers' tests). Safe to
# run again: it installs only what is missing and starts dockerd only when no engine
# answers.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { printf '==> %s\n' "$*"; }

packages=(docker.io debootstrap python3 python3-venv python3-pip git make
          chromium libsndfile1 curl ca-certificates iproute2
          nginx-light libnginx-mod-http-set-misc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  # nginx is installed for the unit tests that run it on free ports: keep the
  # package from starting a server on port 80 (policy-rc.d says "not now").
  policy_set=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_set=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy_set" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
else
  log "Debian packages present"
fi

if docker info >/dev/null 2>&1; then
  log "Docker engine answers: $(docker info --format '{{.ServerVersion}}')"
  exit 0
fi

if [ -d /run/systemd/system ]; then
  log "starting docker.service"
  $SUDO systemctl enable --now docker.service
else
  log "no systemd here: starting dockerd in the background (log: /var/log/dockerd.log)"
  $SUDO sh -c 'nohup dockerd >>/var/log/dockerd.log 2>&1 &'
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine answers: $(docker info --format '{{.ServerVersion}}')"
    exit 0
  fi
  sleep 1
done
echo "ERROR: the Docker engine did not come up within 60 s; see /var/log/dockerd.log or 'journalctl -u docker'" >&2
exit 1
