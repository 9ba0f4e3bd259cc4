#!/usr/bin/env bash
# The GPU work in one device call, from the repository root of the device machine:
#   bash test/cuda/device-run.sh build ops parity bench torch
# build: npm run build:cuda (the addon comes back as $OUT/wan_cuda.node); natives: the standalone
# checks of the bf16 kernels (test/cuda/native/*-check.cu: cuBLASLt, flash attention, cuDNN
# attention and convolution); ops / parity: the two halves of npm run test:cuda (they need
# vitest's rolldown: pack with test/cuda/pack-modules.sh --vitest); fixtures: npm run parity on
# 'cuda' over test/fixtures (tsx only, so any pack); bf16: test/cuda/bf16-check.ts (every bf16
# kernel against its float32 kernel); bf16fix: every fixture's component at precision bf16;
# bench: the 1.3B transformer on 'cuda' ($BENCH_ARGS); torch: the PyTorch yardstick ($TORCH_ARGS);
# vae / torchvae: the Wan2.1 VAE decode ($VAE_ARGS; with WAN_CUDNN_CONV set, the log is vae-<api>) and its
# PyTorch yardstick ($TORCHVAE_ARGS);
# torchumt5: the umT5 yardstick's bf16 error on the umt5-encoder fixture (beside bf16fix's);
# headers: the cuDNN and cuBLAS headers as $OUT/headers.tgz (to compile here);
# train: npm run train:toy on 'cuda'; modes40 / modes24 / modes40g (one A14B step with guidance at
# 720p per memory mode, unlimited / WAN_CUDA_MEMORY_LIMIT=24g / 40g), load / load8 (one A14B expert
# from disk in bf16 / ComfyUI fp8_scaled against dd), vae720 (the VAE decode at 720×1280×81), umt5
# (umT5-XXL's encode), fp8gemm (the opt-in cuBLASLt fp8 GEMM's checks), fp8err (the error budget against PyTorch
# bf16 of an fp8_scaled 1.3B: the per-layer dequantization, then WAN_FP8_GEMM=1): issue 17's figures. Each step has a time limit, writes $OUT/<step>.log and prints
# its tail; later steps run even if one fails.
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
    natives)
      CUDNN=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])')
      NV=(nvcc -std=c++17 -O3 -arch=sm_90 -I src/cuda/native)
      CU=("${NV[@]}" -x cu -DWAN_HAVE_CUDNN -I "$CUDNN/include")
      { "${NV[@]}" test/cuda/native/gemm-lt-check.cu src/cuda/native/gemm-lt.cu -lcublasLt -lcublas -o /tmp/gemm-lt-check 2>&1 &
        "${NV[@]}" test/cuda/native/flash-attention-check.cu src/cuda/native/flash-attention.cu -o /tmp/fa-check 2>&1 &
        "${CU[@]}" test/cuda/native/cudnn-check.cu src/cuda/native/cudnn-loader.cpp src/cuda/native/cudnn-graph.cpp src/cuda/native/cudnn-attention.cpp -ldl -o /tmp/cudnn-check 2>&1 &
        "${CU[@]}" test/cuda/native/cudnn-conv-check.cu src/cuda/native/cudnn-conv.cpp src/cuda/native/cudnn-graph.cpp src/cuda/native/cudnn-loader.cpp src/cuda/native/elementwise.cu -ldl -o /tmp/cudnn-conv-check 2>&1 &
        wait; } > "$OUT/natives-build.log"
      tail -n 20 "$OUT/natives-build.log"
      step gemm-lt-check "${NATIVE_LIMIT:-120}" /tmp/gemm-lt-check
      step fa-check "${NATIVE_LIMIT:-120}" /tmp/fa-check
      step cudnn-check "${NATIVE_LIMIT:-120}" /tmp/cudnn-check "$CUDNN/lib/libcudnn.so.9"
      step cudnn-conv-check "${NATIVE_LIMIT:-120}" /tmp/cudnn-conv-check "$CUDNN" ;;
    ops) step ops "${OPS_LIMIT:-240}" "${VITEST[@]}" test/cuda/ops.cuda.ts ;;
    parity) step parity "${PARITY_LIMIT:-240}" "${VITEST[@]}" test/cuda/parity.cuda.ts ;;
    fixtures) step fixtures "${PARITY_LIMIT:-240}" node node_modules/tsx/dist/cli.mjs src/parity/cli.ts test/fixtures --backend cuda ;;
    bf16) step bf16 "${BF16_LIMIT:-240}" node node_modules/tsx/dist/cli.mjs test/cuda/bf16-check.ts ;;
    bf16fix) step bf16fix "${PARITY_LIMIT:-240}" node node_modules/tsx/dist/cli.mjs bench/bf16-fixtures.ts test/fixtures --json "$OUT/bf16-fixtures.json" ;;
    bench) step bench "${BENCH_LIMIT:-300}" node node_modules/tsx/dist/cli.mjs bench/transformer-cuda.ts --json "$OUT/bench.json" ${BENCH_ARGS:-} ;;
    torch) step torch "${TORCH_LIMIT:-240}" env PYTHONUNBUFFERED=1 python3 .device/bench/torch_wan_ref.py --preset wan2.1-1.3b --dtype fp32 ${TORCH_ARGS:-} ;;
    vae) step "vae${WAN_CUDNN_CONV:+-$WAN_CUDNN_CONV}" "${VAE_LIMIT:-300}" node node_modules/tsx/dist/cli.mjs bench/vae-cuda.ts --json "$OUT/vae.json" ${VAE_ARGS:-} ;;
    torchumt5) step torchumt5 60 python3 bench/torch/umt5_ref.py --check test/fixtures/umt5-encoder --dtype bf16 ;;
    torchvae) step torchvae "${TORCH_LIMIT:-240}" env PYTHONUNBUFFERED=1 python3 bench/torch/wan_vae_ref.py ${TORCHVAE_ARGS:---dtype bf16} ;;
    headers)
      CUDNN=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])')
      tar -czf "$OUT/headers.tgz" -C "$CUDNN" include -C /usr/local/cuda/include cublas_v2.h cublas_api.h cublas.h cublasLt.h && echo "headers: $CUDNN/include + cuBLAS" ;;
    train)
      # npm run train:toy on 'cuda' (WAN_TOY_* from the caller), resuming from a carried
      # models/toy/.train; the model comes back as toy-model.tar and the DiT checkpoint beside it.
      step train "${TRAIN_LIMIT:-540}" env WAN_TOY_BACKEND=cuda WAN_TOY_RESULTS="$OUT/train-results.md" node node_modules/tsx/dist/cli.mjs src/train/train-toy.ts
      tar -cf "$OUT/toy-model.tar" --exclude=.train -C "${WAN_TOY_OUT:-models/toy}" .
      cp "${WAN_TOY_OUT:-models/toy}/.train/dit.safetensors" "$OUT/" 2>/dev/null ;;
    tune) step tune "${TUNE_LIMIT:-240}" node node_modules/tsx/dist/cli.mjs test/cuda/attention-tune.ts ;;
    # issue 17's figures, A14B at 720×1280×81 (random weights of the published shapes, made here):
    modes40) step modes40 "${MODES_LIMIT:-240}" node node_modules/tsx/dist/cli.mjs bench/memory-modes-cuda.ts --modes resident,swap --warmup 1 --iters 1 ;;
    modes24) step modes24 "${MODES_LIMIT:-240}" env WAN_CUDA_MEMORY_LIMIT=24g node node_modules/tsx/dist/cli.mjs bench/memory-modes-cuda.ts --modes offload --offload-blocks "${OFFLOAD_24G:-20}" --warmup 1 --iters 1 ;;
    modes40g) step modes40g "${MODES_LIMIT:-240}" env WAN_CUDA_MEMORY_LIMIT=40g node node_modules/tsx/dist/cli.mjs bench/memory-modes-cuda.ts --modes swap,offload --offload-blocks "${OFFLOAD_40G:-4}" --warmup 1 --iters 1 ;;
    load) step load "${LOAD_LIMIT:-200}" node node_modules/tsx/dist/cli.mjs bench/load-cuda.ts --preset wan2.2-t2v-a14b ;;
    load8) step load8 "${LOAD_LIMIT:-200}" node node_modules/tsx/dist/cli.mjs bench/load-cuda.ts --preset wan2.2-t2v-a14b --dtype fp8 ;;
    vae720) step vae720 "${VAE_LIMIT:-300}" node node_modules/tsx/dist/cli.mjs bench/vae-cuda.ts --precision bf16 --frames 81 --height 720 --width 1280 --warmup 1 --iters 2 ;;
    umt5) step umt5 120 node node_modules/tsx/dist/cli.mjs bench/umt5-cuda.ts ;;
    # the opt-in cuBLASLt fp8 GEMM (WAN_FP8_GEMM): its native check, then its error and time beside the bf16 path
    fp8gemm)
      nvcc -std=c++17 -O2 -arch=sm_90 -I src/cuda/native test/cuda/native/gemm-fp8-check.cu src/cuda/native/gemm-fp8.cu src/cuda/native/gemm-lt.cu -lcublasLt -lcublas -o /tmp/gemm-fp8-check > "$OUT/gemm-fp8-build.log" 2>&1
      step gemm-fp8-check 180 env CUBLASLT_LOG_MASK=5 /tmp/gemm-fp8-check
      step fp8gemm 400 node node_modules/tsx/dist/cli.mjs test/cuda/fp8-gemm-check.ts ;;
    fp8err)
      step fp8ref "${TORCH_LIMIT:-240}" env PYTHONUNBUFFERED=1 python3 bench/torch/bf16_error_ref.py --out /tmp/fp8err --fp8 --cases block,forward,sampling
      step fp8err-dequant 240 node node_modules/tsx/dist/cli.mjs bench/bf16-error.ts /tmp/fp8err --json "$OUT/fp8err-dequant.json"
      step fp8err-gemm 240 env WAN_FP8_GEMM=1 node node_modules/tsx/dist/cli.mjs bench/bf16-error.ts /tmp/fp8err --json "$OUT/fp8err-gemm.json" ;;
    *) echo "unknown step $s" ;;
  esac
done
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader
