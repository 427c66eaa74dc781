#!/usr/bin/env bash
# Stops the servers started by tests/servers/start.sh.
DIR=${FERRY_TEST_DIR:-/tmp/ferry-test-servers}
if [ -f "$DIR/pids" ]; then
  tac "$DIR/pids" | while read -r pid; do kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  tac "$DIR/pids" | while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done
  rm -f "$DIR/pids"
fi
