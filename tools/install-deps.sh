#!/usr/bin/env bash
# tools/install-deps.sh: installs what building and testing ignis needs on Debian 12 (run as root or with sudo).
# Debian packages only; Node.js/npm from Debian unless a node >= 18 is already installed.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
pkgs=(build-essential cmake pkg-config clang libclang-rt-dev curl ca-certificates python3 python3-jinja2
      libjansson-dev libpcre2-dev libutf8proc-dev libopenblas-dev libevent-dev libcmocka-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! command -v npm >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
