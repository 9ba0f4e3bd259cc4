#!/usr/bin/env bash
# The GPU work in one device call, from the repository root of the device machine:
#   bash test/cuda/device-run.sh build ops parity bench torch
# build: npm run build:cuda; ops / parity: the two halves of npm run test:cuda (they need vitest's
# rolldown: pack with test/cuda/pack-modules.sh --vitest); fixtures: npm run parity on 'cuda' over
# test/fixtures (tsx only, so any pack); bench: the 1.3B
# transformer on 'cuda' ($BENCH_ARGS); torch: the PyTorch yardstick ($TORCH_ARGS); train: npm run
# train:toy on 'cuda'. Each step has a time limit, writes $OUT/<step>.log and prints its tail; later
# steps run even if one fails.
set -u
OUT=${OUT:-/tmp/wan-cuda-out}
mkdir -p "$OUT"
source .device/on-device.sh
export WAN_CUDA_SUMMARY="$OUT/parity-summary.txt"
VITEST=(node node_modules/vitest/vitest.mjs run --config vitest.cuda.config.ts)

step() {
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0))s"
  tail -n "${TAIL:-30}" "$OUT/$name.log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-400
  return $rc
}

for s in "$@"; do
  case $s in
    build) step build 300 node src/cuda/build.mjs && cp build/Release/wan_cuda.node "$OUT/" ;;
    ops) step ops "${OPS_LIMIT:-240}" "${VITEST[@]}" test/cuda/ops.cuda.ts ;;
    parity) step parity "${PARITY_LIMIT:-240}" "${VITEST[@]}" test/cuda/parity.cuda.ts ;;
    fixtures) step fixtures "${PARITY_LIMIT:-240}" node node_modules/tsx/dist/cli.mjs src/parity/cli.ts test/fixtures --backend cuda ;;
    bench) step bench "${BENCH_LIMIT:-300}" node node_modules/tsx/dist/cli.mjs bench/transformer-cuda.ts --json "$OUT/bench.json" ${BENCH_ARGS:-} ;;
    torch) step torch "${TORCH_LIMIT:-240}" env PYTHONUNBUFFERED=1 python3 .device/bench/torch_wan_ref.py --preset wan2.1-1.3b --dtype fp32 ${TORCH_ARGS:-} ;;
    train)
      # npm run train:toy on 'cuda' (WAN_TOY_* from the caller), resuming from a carried
      # models/toy/.train; the model comes back as toy-model.tar and the DiT checkpoint beside it.
      step train "${TRAIN_LIMIT:-540}" env WAN_TOY_BACKEND=cuda WAN_TOY_RESULTS="$OUT/train-results.md" node node_modules/tsx/dist/cli.mjs src/train/train-toy.ts
      tar -cf "$OUT/toy-model.tar" --exclude=.train -C "${WAN_TOY_OUT:-models/toy}" .
      cp "${WAN_TOY_OUT:-models/toy}/.train/dit.safetensors" "$OUT/" 2>/dev/null ;;
    tune) step tune "${TUNE_LIMIT:-240}" node node_modules/tsx/dist/cli.mjs test/cuda/attention-tune.ts ;;
    *) echo "unknown step $s" ;;
  esac
done
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader
