#!/usr/bin/env bash
# The whole test suite: installs and starts the local servers (radosgw, moto),
# builds the binaries, runs every test of the workspace, stops the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_TEST_DIR=${FERRY_TEST_DIR:-/tmp/ferry-test-servers}
trap 'tests/servers/stop.sh' EXIT
tests/servers/start.sh
# shellcheck disable=SC1091
source "$FERRY_TEST_DIR/servers.env"
export AWS_EC2_METADATA_DISABLED=true
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
