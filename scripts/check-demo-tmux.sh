#!/usr/bin/env bash
# Runs the demo in a real terminal (tmux), as a person would see it, and checks the screen:
# the live view, the succeeded job and the final metrics table. Writes the captured screen
# to $OUT (default build/demo-screen.txt). Usage: scripts/check-demo-tmux.sh [BUILD_DIR]
set -euo pipefail
BUILD_DIR=${1:-build}
OUT=${OUT:-$BUILD_DIR/demo-screen.txt}
cd "$(dirname "$0")/.."
command -v tmux > /dev/null || { echo "needs tmux (apt-get install tmux)"; exit 2; }
session=quantd-demo-check-$$
tmux new-session -d -s "$session" -x 120 -y 50 "bash scripts/demo.sh $BUILD_DIR; echo DEMO-EXIT=\$?; sleep 600"
trap 'tmux kill-session -t "$session" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  tmux capture-pane -p -t "$session" -S -200 > "$OUT"
  grep -q "DEMO-EXIT=" "$OUT" && break
  sleep 0.5
done
cat "$OUT"
grep -q "DEMO-EXIT=0" "$OUT" || { echo "FAIL: the demo did not exit 0"; exit 1; }
for expected in "SUCCEEDED" "100.0%" "measure" "ppl tinystories-valid-subset.txt" "acc little-stories" "== 4."; do
  grep -q -- "$expected" "$OUT" || { echo "FAIL: screen lacks \"$expected\""; exit 1; }
done
echo "demo screen OK ($OUT)"
