#!/usr/bin/env bash
# Replaces .device/node_modules.tar.xz (made by ../shared/device/pack-node.sh --with-modules, 58 MB)
# with one holding only what the device runs need (tfjs, tsx/esbuild, tokenizers, vitest,
# node-api-headers): 13 MB, so .device (37 MB) + the working tree fit the 64 MiB carry limit with
# a DiT checkpoint (15 MB) beside them. Run from the repository root after pack-node.sh.
# That pack runs tsx (train, bench, the fixtures step), not vitest: vitest's vite needs rolldown's
# native binding (+7 MB). `--vitest` keeps it, for the ops and parity steps (then .device is 44 MB
# and there is no room for a checkpoint).
set -euo pipefail
ROLLDOWN=(--exclude='node_modules/@rolldown' --exclude='node_modules/rolldown')
# The vitest pack leaves out the wasm backend instead (the ops and parity steps never load it;
# train:toy does, and runs from the plain pack).
if [[ ${1:-} == --vitest ]]; then ROLLDOWN=(--exclude='node_modules/@tensorflow/tfjs-backend-wasm'); fi
mkdir -p .device
tar -cf - "${ROLLDOWN[@]}" \
  --exclude='node_modules/@ffmpeg-installer' --exclude='node_modules/.cache' \
  --exclude='*.map' --exclude='*.d.ts' --exclude='*.md' \
  --exclude='node_modules/typescript' \
  --exclude='node_modules/lightningcss*' --exclude='node_modules/tsup' --exclude='node_modules/fix-dts-default-cjs-exports' \
  --exclude='node_modules/sucrase' --exclude='node_modules/@types' \
  --exclude='node_modules/@tensorflow/*/dist/*.es2017*' --exclude='node_modules/@tensorflow/*/dist/*.min.js' \
  --exclude='node_modules/@tensorflow/*/dist/*.esm.js' --exclude='node_modules/@tensorflow/*/dist/tf-*[^e].js' \
  node_modules | xz -T2 -3 > .device/node_modules.tar.xz
du -sh .device
