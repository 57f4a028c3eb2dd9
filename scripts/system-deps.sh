#!/usr/bin/env bash
# Debian packages the tests use: Chromium (the interactive page test) with Noto fonts (CJK,
# the other scripts, emoji: the page's labels draw as glyphs in its screenshots, not boxes), and
# Slurm with munge (the one-node test cluster). Installed only when missing; needs root (CI
# runs as root). The PNG labels need none of these: their fonts come with vocabmap's pip
# dependencies.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
for fonts in fonts-noto-cjk fonts-noto-core fonts-noto-color-emoji; do
  dpkg -s "$fonts" >/dev/null 2>&1 || need+=("$fonts")
done
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || need+=(slurmd)
command -v sbatch >/dev/null 2>&1 || need+=(slurm-client)
command -v munged >/dev/null 2>&1 || need+=(munge)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${need[*]} (install them with apt-get as root; the tests that need them will skip)" >&2
  exit 0
fi
echo "installing system packages: ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
