#!/usr/bin/env bash
# Unpacks what scripts/gpu_session.sh returned (a folder of .tgz files) into build/ and rebuilds the
# SFT and GRPO models from their fp16 differences to the base (scripts/weights_delta.py), so that
# scripts/train_nano.sh's later stages (export, evaluate) run on them as if trained here:
#
#   bash scripts/unpack_gpu_session.sh /work/.device/.../files
#   LEVEL=standard NANO_BUILD=build/nano-std STAGES="export evaluate" bash scripts/train_nano.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
from=${1:?usage: unpack_gpu_session.sh FOLDER}
mkdir -p build
for f in "$from"/nano-*.tgz; do tar -xzf "$f" -C build; done
[ -f "$from/logs.tgz" ] && mkdir -p build/gpu-logs && tar -xzf "$from/logs.tgz" -C build/gpu-logs
for base in build/nano-*/base/model; do
  b=$(dirname "$(dirname "$base")")
  for delta in "$b"/*/delta.safetensors; do
    [ -f "$delta" ] || continue
    run=$(dirname "$delta")
    model=$run/model
    if [ ! -f "$model/config.json" ]; then  # stopped early: the last checkpoint's files
      checkpoint=$(ls -d "$run"/checkpoints/checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -1 || true)
      mkdir -p "$model"
      for name in config.json generation_config.json; do
        if [ -n "$checkpoint" ] && [ -f "$checkpoint/$name" ]; then cp "$checkpoint/$name" "$model/"; else cp "$base/$name" "$model/"; fi
      done
    fi
    for name in tokenizer.json tokenizer_config.json preprocessor_config.json; do
      [ -f "$model/$name" ] || cp "$base/$name" "$model/"
    done
    "$PY" scripts/weights_delta.py unpack "$base" "$delta" "$model"
  done
done
