#!/usr/bin/env bash
# The benchmark: installs the peers (rclone, aws-cli, GNU time from Debian;
# s3sync from crates.io), builds ferry, starts radosgw on bluestore and moto
# on their own ports, runs `ferry-bench suite` and writes bench/RESULTS.md.
#
#   bench/run.sh            full session (hours on 2 cores; see bench/README.md)
#   bench/run.sh --smoke    tiny data, one round, every tool: checks the harness
#
# Any other arguments go to `ferry-bench suite` (e.g. --runs 3 --sets A,B).
# FERRY_BENCH_WORK (default /tmp/ferry-bench) holds the data sets, outputs and
# logs; data sets are generated once and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SMOKE=0
ARGS=()
for a in "$@"; do
  if [ "$a" = --smoke ]; then SMOKE=1; else ARGS+=("$a"); fi
done
log() { echo "[bench] $*" >&2; }

S3SYNC_VERSION=${FERRY_BENCH_S3SYNC_VERSION:-1.62.4}
need_apt=()
command -v rclone >/dev/null || need_apt+=(rclone)
[ -x /usr/bin/aws ] || need_apt+=(awscli)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! command -v s3sync >/dev/null; then
  log "installing s3sync $S3SYNC_VERSION from crates.io (a few minutes)"
  cargo install --locked s3sync --version "$S3SYNC_VERSION" >&2
fi
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$SMOKE" = 1 ]; then
  PROFILE_DIR=debug
  cargo build -p ferry-finder -p ferry-gateway -p ferry-bench --bins >&2
  WORK=${FERRY_BENCH_WORK:-/tmp/ferry-bench-smoke}
  OUT=${FERRY_BENCH_OUT:-$WORK/RESULTS.md}
  SUITE=(--smoke --runs 1 --warmup 0 --scale-keys 3000 --scale-s3-keys 300)
  CHECKSUMS=(--files 200 --mib 32)
else
  PROFILE_DIR=release
  cargo build --release -p ferry-finder -p ferry-gateway -p ferry-bench --bins >&2
  WORK=${FERRY_BENCH_WORK:-/tmp/ferry-bench}
  OUT=${FERRY_BENCH_OUT:-$ROOT/bench/RESULTS.md}
  SUITE=()
  CHECKSUMS=()
fi

export FERRY_TEST_DIR=${FERRY_BENCH_SERVERS:-/tmp/ferry-bench-servers}
export FERRY_OSD_STORE=bluestore FERRY_RGW_PORT=${FERRY_BENCH_RGW_PORT:-7490} FERRY_MOTO_PORT=${FERRY_BENCH_MOTO_PORT:-5065}
export FERRY_MON_PORT=${FERRY_BENCH_MON_PORT:-3310} FERRY_MON_V1_PORT=${FERRY_BENCH_MON_V1_PORT:-6799}
tests/servers/start.sh
trap 'tests/servers/stop.sh' EXIT
# shellcheck disable=SC1091
source "$FERRY_TEST_DIR/servers.env"
export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=$FERRY_TEST_RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$FERRY_TEST_RGW_SECRET_KEY

"target/$PROFILE_DIR/ferry-bench" suite --endpoint "$FERRY_TEST_RGW" --work "$WORK" \
  --bins "$ROOT/target/$PROFILE_DIR" --out "$OUT" "${SUITE[@]}" "${ARGS[@]}"
"target/$PROFILE_DIR/ferry-bench" checksums --endpoint "$FERRY_TEST_RGW" --work "$WORK" \
  --bins "$ROOT/target/$PROFILE_DIR" --out "$OUT" "${CHECKSUMS[@]}"
