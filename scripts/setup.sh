#!/usr/bin/env bash
# Installs the Debian packages that the demo, the tests and the benchmarks start for real.
# One list, one script: `.ci/run`, `npm run demo` and `npm test` (its pretest step) all call it.
# Idempotent: packages already installed are skipped, so a second run costs a dpkg query.
# Needs root (apt-get) only when something is missing; without root it says what to install.
#
#   scripts/setup.sh            everything the test suite needs
#   scripts/setup.sh --demo     only what `npm run demo` needs (Docker, docker-compose, busybox)
set -euo pipefail

demo=(docker.io docker-compose busybox-static git curl ca-certificates iproute2)
tests=("${demo[@]}" skopeo docker-registry mosquitto mosquitto-clients postgresql
       qemu-user-static e2fsprogs systemd systemd-container mmdebstrap strace zstd rsync faketime
       haproxy nginx-light chromium)

want=("${tests[@]}")
[ "${1:-}" = "--demo" ] && want=("${demo[@]}")

need=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "setup: missing Debian packages: ${need[*]}" >&2
  echo "setup: run as root, or: apt-get install --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "setup: installing ${need[*]} (apt-get, once)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "setup: done" >&2
