#!/usr/bin/env bash
# The nano model's whole training on a lent GPU machine, in one call (docs/embedded-model.md, "Where
# it was trained"). That machine reaches no registry and has no Node.js, so two things travel with
# the call: .whl (TRL and the `datasets` wheels it lacks) and build/portable
# (scripts/portable_synth.sh: `npm run synth` without npm).
#
#   bash scripts/gpu_session.sh
#
# For each VARIANT ("name:level:mixture-json", space-separated), in parallel: base pre-training,
# the probes, the SFT baseline, then one GRPO run per seed in SEEDS, all through
# scripts/train_nano.sh's stages. Everything must end by DEADLINE seconds after the start: the
# pre-training stops at PRETRAIN_MAX_SECONDS and GRPO runs are sent SIGTERM in time to save a
# checkpoint. Results go to $OUT, at most 8 files of at most 16 MB: per variant the base (fp32)
# with its probes and metrics, and the SFT and GRPO models as fp16 differences to the base
# (scripts/weights_delta.py), with their metrics and rollouts; plus session.log and logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
began=$(date +%s)
DEADLINE=${DEADLINE:-540}
VARIANTS=${VARIANTS:-"std:standard:{} easy:easy:{}"}
SEEDS=${SEEDS:-"0 1"}
note() { echo "[gpu_session +$(( $(date +%s) - began ))s] $*" | tee -a "$OUT/session.log" >&2; }
left() { echo $(( DEADLINE - ($(date +%s) - began) )); }

PY=${PY:-python3}
if [ "${SKIP_WHEELS:-0}" != 1 ]; then  # SKIP_WHEELS=1: a dry run where the packages are installed
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { note "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
fi
"$PY" scripts/portable_synth.py unpack build/portable /tmp/synth || { note "synth unpack failed"; exit 1; }
export SYNTH="/tmp/synth/node /tmp/synth/synth.cjs" PY DEVICE=${DEVICE:-cuda}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  "$PY" -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)"
} >> "$OUT/session.log" 2>&1
note "set up"

LOGS=/tmp/logs
mkdir -p "$LOGS"
trap 'tar -czf "$OUT/logs.tgz" -C /tmp logs 2>/dev/null' EXIT

# Data once per level (seeded: the same files every time), shared by that level's variants.
levels=$(for v in $VARIANTS; do echo "$v" | cut -d: -f2; done | sort -u)
for level in $levels; do
  ( LEVEL=$level NANO_BUILD=/tmp/data-$level STAGES=data bash scripts/train_nano.sh > "$LOGS/data-$level.log" 2>&1 ) &
done
wait
note "data done: $(du -sh /tmp/data-* | tr '\n' ' ')"

pack() {  # pack NAME: three files per variant
  local name=$1 b=build/nano-$1
  for m in sft $(for s in $SEEDS; do echo "grpo-seed$s"; done); do
    local model=$b/$m/model
    if [ ! -f "$model/model.safetensors" ]; then  # a GRPO run stopped early: its last checkpoint
      model=$(ls -d "$b/$m"/checkpoints/checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -1)
    fi
    [ -n "$model" ] && [ -f "$model/model.safetensors" ] && "$PY" scripts/weights_delta.py pack "$b/base/model" "$model" "$b/$m/delta.safetensors"
  done
  local skip=(--exclude=checkpoint --exclude=checkpoint.tmp --exclude=checkpoints --exclude=onnx --exclude='model.safetensors')
  tar -czf "$OUT/nano-$name-base.tgz" --exclude=checkpoint --exclude=checkpoint.tmp --exclude='init/model.safetensors' \
    -C build "nano-$name/base" $(cd build && ls -d "nano-$name"/*.json "nano-$name"/timings.txt 2>/dev/null)
  local first=${SEEDS%% *}
  tar -czf "$OUT/nano-$name-sft-grpo$first.tgz" "${skip[@]}" -C build "nano-$name/sft" "nano-$name/grpo-seed$first"
  for s in $SEEDS; do
    [ "$s" = "$first" ] || tar -czf "$OUT/nano-$name-grpo$s.tgz" "${skip[@]}" -C build "nano-$name/grpo-seed$s"
  done
}

for v in $VARIANTS; do
  name=$(echo "$v" | cut -d: -f1); level=$(echo "$v" | cut -d: -f2); mixture=$(echo "$v" | cut -d: -f3-)
  b=build/nano-$name
  mkdir -p "$b"
  ln -sfn "/tmp/data-$level/pretrain" "$b/pretrain"
  ln -sfn "/tmp/data-$level/spatial-synth" "$b/spatial-synth"
  (
    export LEVEL=$level NANO_BUILD=$b MIXTURE=$mixture WORKERS=${WORKERS:-$(( 12 / $(echo "$VARIANTS" | wc -w) ))}
    export PROBE_ITEMS=${PROBE_ITEMS:-100} PRETRAIN_MAX_SECONDS=${PRETRAIN_MAX_SECONDS:-200}
    STAGES="base probes sft" bash scripts/train_nano.sh > "$LOGS/base-$name.log" 2>&1
    note "$name: base, probes and SFT finished ($?), $(left) s left"
    max_pixels=$([ "$level" = easy ] && echo 28224 || echo 50176)  # as train_nano.sh
    budget=$(( $(left) - ${PACK_SECONDS:-25} ))
    [ "$budget" -gt 20 ] || { note "$name: no time left for GRPO"; budget=0; }
    for s in $SEEDS; do
      [ "$budget" -gt 0 ] || break
      # The trainer itself gets SIGTERM: it finishes the step, saves a checkpoint and exits.
      ( timeout -s TERM -k 60 "$budget" "$PY" -m trainer.grpo --config configs/grpo-nano-r1zero.json \
          --base-model "$b/base/model" --dataset "$b/spatial-synth" --output-dir "$b/grpo-seed$s" \
          --export-dir "$b/grpo-seed$s/model" --job-id "nano-$name-seed$s" --seed "$s" --device "$DEVICE" \
          --max-pixels "$max_pixels" --threads 2 ${GRPO_FLAGS:-} > "$LOGS/grpo-$name-seed$s.log" 2>&1
        note "$name: GRPO seed $s finished ($?)" ) &
    done
    wait
    pack "$name" 2>> "$OUT/session.log"
    note "$name: packed"
  ) &
done
wait
note "done"
