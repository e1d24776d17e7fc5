#!/usr/bin/env bash
# Install the Debian packages evmon needs to build and test, if any are missing.
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail

pkgs=(gcc make pkg-config libcmocka-dev libinih-dev libcjson-dev libmicrohttpd-dev python3 python3-pytest python3-yaml
      procps util-linux "$@")
pkgs+=(scdoc man-db bash-completion) # man pages (make man), their test, the completion test

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "evmon: missing Debian packages: ${missing[*]}" >&2
	echo "evmon: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "evmon: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
