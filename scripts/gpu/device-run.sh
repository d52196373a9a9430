#!/usr/bin/env bash
# What a session with a lent GPU runs there (issue 10), in two calls on the same warm machine:
#   bash scripts/gpu/device-run.sh build   # unpack .gpu/debs, configure, build build-gpu/
#   bash scripts/gpu/device-run.sh check   # tests, kernel bandwidth, step rates, a job, HF check
# Logs go to build-gpu/logs/<stage>/, packed into $OUT/<stage>-logs.tgz when OUT is set (the
# device tool brings that folder back); the tail of each step is printed as it ends.
set -uo pipefail
cd "$(dirname "$0")/../.."
readonly STAGE=${1:-build}
readonly B=build-gpu
export QUANTD_GPU_LOGS=$B/logs/$STAGE
mkdir -p "$QUANTD_GPU_LOGS"
readonly LOGS=$QUANTD_GPU_LOGS
pack_logs() { [ -n "${OUT:-}" ] && tar czf "$OUT/$STAGE-logs.tgz" -C "$LOGS" . ; }
trap pack_logs EXIT

if [ "$STAGE" = build ]; then
  BUILD_TIMEOUT=${BUILD_TIMEOUT:-480} bash scripts/gpu/build.sh build
  exit $?
fi

source scripts/gpu/env.sh
[ -e ../shared/data ] || { mkdir -p ../shared && ln -sfn "$PWD/.gpu/data" ../shared/data; }
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }
# Runs a command with a time limit, its output in $LOGS/<name>.log, and shows the tail.
run() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local status=$?
  printf -- '-- %s: exit %d in %d s\n' "$name" $status $((SECONDS - start))
  tail -${TAIL:-12} "$LOGS/$name.log"
  return $status
}

step "finishing the build (a no-op when the build stage completed)"
TAIL=3 run build-rest ${BUILD_TIMEOUT:-240} cmake --build $B -j "$(nproc)" -- -k 0
step "CUDA tests"
TAIL=25 run ctest-cuda 180 ctest --test-dir $B -R _CUDA --output-on-failure
step "kernel bandwidth"
TAIL=20 run kernels-cuda-bench 60 $B/tests/bench/kernels/kernels_cuda_bench
step "stories260K perplexity on the GPU (reference 4.117 in fp32)"
for dtype in float32 bfloat16; do
  TAIL=2 run ppl-$dtype 60 $B/worker/quantd-worker perplexity --model ../shared/data/models/stories260K \
    --text ../shared/data/text/tinystories-valid-subset.txt --documents blank-line --seqlen 256 \
    --max-windows 40 --device cuda --dtype $dtype
done
step "zero-shot scoring throughput on the GPU, batched vs one request per pass"
TAIL=5 run zero-shot-bench 60 $B/tests/bench/eval/zero_shot_bench --device cuda
step "stories260K demo job on the GPU"
TAIL=6 run job-stories 120 /usr/bin/time -v $B/worker/quantd-worker run \
  --spec client/examples/stories260k-demo.yaml --device cuda
grep -E "Elapsed|Maximum resident" "$LOGS/job-stories.log"
step "Llama-2-7B-shaped model (4 blocks), step rates and a scaled-down job"
run make-model 120 "$PYTHON" scripts/gpu/make_random_llama.py /tmp/llama2-7b-shape --layers 4
TAIL=10 run gpu-train-bench 180 $B/tests/bench/gpu/gpu_train_bench --model /tmp/llama2-7b-shape \
  --device cuda --dtype bfloat16 --seqlen 1024 --batch 1 --windows 12 --prefix_len 8 --blocks 2
TAIL=5 run zero-shot-bench-7b-shape 90 $B/tests/bench/eval/zero_shot_bench --model /tmp/llama2-7b-shape \
  --device cuda --examples 100 --batches 1,16
TAIL=8 run job-7b-shape 200 /usr/bin/time -v $B/worker/quantd-worker run \
  --spec scripts/gpu/llama2-7b-shape-job.yaml --device cuda
grep -E "Elapsed|Maximum resident" "$LOGS/job-7b-shape.log"
step "transformers comparison"
TAIL=4 run hf-compare 120 "$PYTHON" scripts/gpu/hf_compare.py --worker $B/worker/quantd-worker
step "whole suite"
OMP_NUM_THREADS=2 ctest --test-dir $B -j 8 --timeout 300 --output-on-failure >"$LOGS/ctest.log" 2>&1
grep -E "tests passed|tests failed|\(Failed\)|\(Timeout\)|\(SEGFAULT\)|Exception" "$LOGS/ctest.log" | tail -30
