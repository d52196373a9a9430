#!/usr/bin/env bash
# What a session with a lent GPU runs there (issue 10). A lease is short (15 minutes of device
# time, start included), so the usual call is one `all` with a deadline just under the device
# tool's 600 s limit per command:
#   DEADLINE_S=530 bash scripts/gpu/device-run.sh all   # build, then the checks until the deadline
#   bash scripts/gpu/device-run.sh build                 # unpack .gpu/debs, configure, build
#   bash scripts/gpu/device-run.sh check                 # the checks on an existing build-gpu/
# The checks run in order of importance and each is cut short so that the whole stays inside
# DEADLINE_S (seconds from the script's start; default 3600): the *_CUDA tests, then the CPU
# suite in the background (GPU hidden, on cores 4..) beside the GPU figures in the foreground
# (on cores 0-3): kernel bandwidth, a Llama-2-7B-shaped job, step rates, perplexity on the GPU,
# zero-shot throughput, the transformers comparison; last, the suite's job tests with the GPU
# visible. A step without time left is skipped and says so. Logs go to build-gpu/logs/<stage>/,
# packed into $OUT/<stage>-logs.tgz when OUT is set (the device tool brings that folder back);
# the tail of each step is printed as it ends. On an H100 `all` took 385 s (the build 138 s).
set -uo pipefail
cd "$(dirname "$0")/../.."
readonly STAGE=${1:-all}
readonly B=build-gpu
readonly DEADLINE=$((SECONDS + ${DEADLINE_S:-3600}))
export QUANTD_GPU_LOGS=$B/logs/$STAGE
mkdir -p "$QUANTD_GPU_LOGS"
readonly LOGS=$QUANTD_GPU_LOGS
pack_logs() { [ -n "${OUT:-}" ] && tar czf "$OUT/$STAGE-logs.tgz" -C "$LOGS" . ; }
trap pack_logs EXIT
step() { printf '\n== %s (%s, %d s left)\n' "$*" "$(date +%T)" $((DEADLINE - SECONDS)); }
# Seconds a step may take: its own limit, or what is left before the deadline less a reserve
# for packing the logs, whichever is smaller.
budget() { local left=$((DEADLINE - SECONDS - 15)); echo $(($1 < left ? $1 : left)); }
# run NAME LIMIT CMD...: the command's output in $LOGS/NAME.log, its tail shown, cut at the
# limit (or the deadline); skipped when less than 10 s are left.
run() {
  local name=$1 limit
  limit=$(budget "$2")
  shift 2
  if [ "$limit" -lt 10 ]; then
    printf -- '-- %s: skipped, no time left\n' "$name"
    return 124
  fi
  local start=$SECONDS
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local status=$?
  printf -- '-- %s: exit %d in %d s (limit %d s)\n' "$name" $status $((SECONDS - start)) "$limit"
  tail -"${TAIL:-12}" "$LOGS/$name.log"
  return $status
}

if [ "$STAGE" = build ] || [ "$STAGE" = all ]; then
  BUILD_TIMEOUT=$(budget "${BUILD_TIMEOUT:-480}") bash scripts/gpu/build.sh build
  build_status=$?
  [ "$STAGE" = build ] && exit $build_status
fi

source scripts/gpu/env.sh
[ -e ../shared/data ] || { mkdir -p ../shared && ln -sfn "$PWD/.gpu/data" ../shared/data; }
readonly CPUS=$(nproc)
# Benchmarks on cores 0-3, the background suite on the rest (when there are enough of them).
FG="" BG="" TIME=""  # TIME appends the jobs' wall time and peak RSS to time.log
if command -v taskset >/dev/null && [ "$CPUS" -ge 8 ]; then
  FG="taskset -c 0-3" BG="taskset -c 4-$((CPUS - 1))"
  # LibTorch would start a thread per core of the machine on the 4 cores it is pinned to.
  export OMP_NUM_THREADS=4
fi
[ -x /usr/bin/time ] && TIME="/usr/bin/time -v -o $LOGS/time.log -a"
readonly SUITE_JOBS=$(( CPUS >= 8 ? CPUS - 5 : 1 ))

step "finishing the build (a no-op when the build stage completed)"
TAIL=3 run build-rest "${BUILD_TIMEOUT:-240}" cmake --build $B -j "$CPUS" -- -k 0

step "CUDA tests"
OMP_NUM_THREADS=4 TAIL=30 run ctest-cuda 200 ctest --test-dir $B -R _CUDA -j 4 --output-on-failure

step "CPU suite in the background (GPU hidden, ${BG:-all cores}, 1 OpenMP thread per test)"
suite_limit=$(budget 100000)
(CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=1 timeout "$suite_limit" $BG \
   ctest --test-dir $B -E _CUDA -j "$SUITE_JOBS" --timeout 300 --output-on-failure \
   >"$LOGS/ctest.log" 2>&1; echo "exit $?" >>"$LOGS/ctest.log") &
suite_pid=$!

step "kernel bandwidth"
TAIL=40 run kernels-cuda-bench 90 $FG $B/tests/bench/kernels/kernels_cuda_bench
TAIL=6 run mse-search-bench 60 $FG $B/tests/bench/kernels/mse_search_bench
TAIL=12 run online-hadamard-bench 45 $FG $B/tests/bench/kernels/online_hadamard_bench \
  --device cuda --rows 8192
step "Llama-2-7B-shaped model (4 blocks): a scaled-down job and step rates"
run make-model 90 $FG env -u LD_PRELOAD "$PYTHON" scripts/gpu/make_random_llama.py /tmp/llama2-7b-shape --layers 4
TAIL=25 run job-7b-shape 200 $FG $TIME $B/worker/quantd-worker run \
  --spec scripts/gpu/llama2-7b-shape-job.yaml --device cuda --work_dir /tmp/job-7b-shape
TAIL=14 run gpu-train-bench 150 $FG $B/tests/bench/gpu/gpu_train_bench --model /tmp/llama2-7b-shape \
  --device cuda --dtype bfloat16 --seqlen 1024 --batch 1 --windows 12 --prefix_len 8 --blocks 2
step "stories260K perplexity on the GPU (reference 4.117 in fp32)"
for dtype in float32 bfloat16; do
  TAIL=2 run ppl-$dtype 40 $FG $B/worker/quantd-worker perplexity \
    --model ../shared/data/models/stories260K --text ../shared/data/text/tinystories-valid-subset.txt \
    --documents blank-line --seqlen 256 --max-windows 40 --device cuda --dtype $dtype
done
step "zero-shot scoring throughput on the GPU, batched vs one request per pass"
TAIL=6 run zero-shot-bench 40 $FG $B/tests/bench/eval/zero_shot_bench --device cuda
TAIL=6 run zero-shot-bench-7b-shape 60 $FG $B/tests/bench/eval/zero_shot_bench \
  --model /tmp/llama2-7b-shape --device cuda --examples 100 --batches 1,16
step "stories260K demo job on the GPU"
TAIL=8 run job-stories 120 $FG $TIME $B/worker/quantd-worker run \
  --spec client/examples/stories260k-demo.yaml --device cuda --work_dir /tmp/job-stories-cuda
# The same job on the CPU (its own work dir: the same spec would resume from the GPU run's
# checkpoints), and both jobs' metrics side by side (prefix training, each block's fine-tuning
# losses, perplexities): where a trained job parts ways between the devices.
TAIL=2 run job-stories-cpu 120 $FG $B/worker/quantd-worker run \
  --spec client/examples/stories260k-demo.yaml --device cpu --work_dir /tmp/job-stories-cpu
metrics() { grep -E '^[a-z_]+/[^ ]* +[-0-9.e+]+$' "$1" | sort; }
{ printf '%-46s %12s %12s\n' metric cpu cuda
  join <(metrics "$LOGS/job-stories-cpu.log") <(metrics "$LOGS/job-stories.log") |
    awk '{printf "%-46s %12s %12s\n", $1, $2, $3}'; } >"$LOGS/job-stories-cpu-vs-cuda.txt"
grep -E "^metric|finetune/block[0-9]+/(initial|final)|^prefix/|^ppl/" "$LOGS/job-stories-cpu-vs-cuda.txt"
[ -f "$LOGS/time.log" ] && grep -E "Command being|Elapsed|Maximum resident" "$LOGS/time.log"
step "transformers comparison"
TAIL=4 run hf-compare 120 $FG "$PYTHON" scripts/gpu/hf_compare.py --worker $B/worker/quantd-worker

step "CPU suite (waiting for the background run)"
wait "$suite_pid"
grep -E "tests passed|tests failed|\(Failed\)|\(Timeout\)|\(SEGFAULT\)|Exception|^exit" \
  "$LOGS/ctest.log" | tail -30
echo "finished: $(grep -c ' Passed ' "$LOGS/ctest.log") passed," \
  "$(grep -cE '\*\*\*Failed|\*\*\*Timeout|\*\*\*Exception|SEGFAULT' "$LOGS/ctest.log") failed"

step "the suite's jobs and model commands again with the GPU visible (left to choose, they take it)"
OMP_NUM_THREADS=2 TAIL=20 run ctest-jobs-on-gpu 200 ctest --test-dir $B -j 6 --timeout 200 \
  --output-on-failure -R "RunJobTest|TrainingTest|ExportRoundTrip|CorruptionTest|FinetuneInstaller|OutlierTest|CommandTest|DeviceChoiceTest"
