#!/usr/bin/env bash
# The Python client example against a real quantd and quantd-worker on loopback:
# the job succeeds, every event arrives as JSON, and a retry with the same request id
# returns the same job.
set -euo pipefail
BUILD=$1
SOURCE=$2
DATA=$3
tmp=$(mktemp -d)
cleanup() {
  kill "${worker_pid:-}" "${scheduler_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$BUILD/server/quantd" --listen 127.0.0.1:0 --metrics_listen 127.0.0.1:0 --db "$tmp/q.db" \
    > "$tmp/quantd.out" 2> "$tmp/quantd.log" &
scheduler_pid=$!
for _ in $(seq 200); do grep -q "ready port=" "$tmp/quantd.out" && break; sleep 0.05; done
port=$(sed -n 's/.*ready port=\([0-9]*\).*/\1/p' "$tmp/quantd.out")
[ -n "$port" ] || { cat "$tmp/quantd.log"; echo "FAIL: quantd did not start"; exit 1; }
"$BUILD/worker/quantd-worker" connect --scheduler "127.0.0.1:$port" --work_dir "$tmp/work" \
    --metrics_listen 127.0.0.1:0 > "$tmp/worker.log" 2>&1 &
worker_pid=$!

run_example() {
  /usr/bin/python3 "$SOURCE/client/python/submit_and_watch.py" --addr "127.0.0.1:$port" \
      --stubs "$BUILD/client/python/gen" --model "$DATA/models/stories260K" \
      --text "$DATA/text/tinystories-valid-subset.txt" --windows 4 --request-id ci-retry-1
}
run_example > "$tmp/first.jsonl"
/usr/bin/python3 - "$tmp/first.jsonl" <<'PY'
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
assert lines[0]["deduplicated"] is False, lines[0]
events = [l for l in lines if "sequence" in l]
sequences = [int(e["sequence"]) for e in events]
assert sequences == list(range(1, len(sequences) + 1)), sequences
assert sum(1 for e in events if "loss" in e) == 4
final = lines[-1]
assert final["state"] == "JOB_STATE_SUCCEEDED", final
ppl = final["metrics"]["ppl/tinystories-valid-subset.txt/fp"]
assert 3.0 < ppl < 6.0, ppl
print(f"first run: {len(events)} events in order, ppl {ppl:.4f}")
PY
run_example > "$tmp/second.jsonl"
/usr/bin/python3 - "$tmp/first.jsonl" "$tmp/second.jsonl" <<'PY'
import json, sys
first = json.loads(open(sys.argv[1]).readline())
second = json.loads(open(sys.argv[2]).readline())
assert second["deduplicated"] is True and second["submitted"] == first["submitted"], second
print(f"retry with the same request id returned {second['submitted']} again")
PY
echo "1 passed, 0 failed"
