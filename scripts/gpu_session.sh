#!/usr/bin/env bash
# The nano model's training on a lent GPU machine (no registry, no Node.js; docs/embedded-model.md
# "Where it was trained"). Carried along: .whl (TRL and the datasets wheels the machine lacks) and
# build/portable (scripts/portable_synth.sh: synth without npm). Results go to $OUT as tarballs.
#
#   bash scripts/gpu_session.sh base   # data, pre-training of every VARIANT, probes, SFT
#   bash scripts/gpu_session.sh grpo   # data again (seeded, identical), GRPO runs of GRPO_RUNS
#
# VARIANTS: "name:level:mixture-json ..." (default below); GRPO_RUNS: "variant:seed:lr ...".
# The base phase's results must be unpacked under build/ for the grpo phase (carry them along).
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:?usage: gpu_session.sh base|grpo}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
began=$(date +%s)
note() { echo "[gpu_session +$(( $(date +%s) - began ))s] $*" | tee -a "$OUT/session.log" >&2; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { note "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
python3 scripts/portable_synth.py unpack build/portable /tmp/synth || { note "synth unpack failed"; exit 1; }
export SYNTH="/tmp/synth/node /tmp/synth/synth.cjs" PY=python3 DEVICE=cuda
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$OUT/session.log" 2>&1
python3 -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)" \
  >> "$OUT/session.log" 2>&1
note "set up"

VARIANTS=${VARIANTS:-"std:standard:{} easy:easy:{}"}
levels=$(for v in $VARIANTS; do echo "$v" | cut -d: -f2; done | sort -u)

LOGS=/tmp/logs
mkdir -p "$LOGS"
pack_logs() { tar -czf "$OUT/logs.tgz" -C /tmp logs 2>/dev/null; }
trap pack_logs EXIT

# Data once per level (seeded: the same files every time), shared by that level's variants.
for level in $levels; do
  ( LEVEL=$level NANO_BUILD=/tmp/data-$level STAGES=data TRAINER_THREADS=8 bash scripts/train_nano.sh \
      > "$LOGS/data-$level.log" 2>&1 ) &
done
wait
note "data done: $(du -sh /tmp/data-* | tr '\n' ' ')"

link_data() {  # link_data BUILD LEVEL
  mkdir -p "$1"
  ln -sfn "/tmp/data-$2/pretrain" "$1/pretrain"
  ln -sfn "/tmp/data-$2/spatial-synth" "$1/spatial-synth"
}

pack_base() {  # pack_base NAME: the base and SFT models, metrics, probes (no checkpoints)
  local name=$1
  tar -czf "$OUT/nano-$name.tgz" --exclude=checkpoint --exclude=checkpoint.tmp --exclude=checkpoint.old \
    --exclude='init/model.safetensors' -C build \
    $(cd build && ls -d "nano-$name"/base "nano-$name"/sft/model "nano-$name"/sft/*.json* "nano-$name"/*.json \
      "nano-$name"/timings.txt 2>/dev/null) 2>> "$OUT/session.log"
}

pack_grpo() {  # pack_grpo DIR NAME: the run's folder; its last checkpoint's weights only when it was stopped early
  local dir=$1 name=$2
  if [ -f "build/$dir/model/model.safetensors" ]; then
    tar -czf "$OUT/$name.tgz" --exclude=checkpoints --exclude=onnx -C build "$dir" 2>> "$OUT/session.log"
  else
    last=$(cd build && ls -d "$dir"/checkpoints/checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -1)
    tar -czf "$OUT/$name.tgz" --exclude=optimizer.pt --exclude=scheduler.pt --exclude='rng_state*' \
      --exclude=onnx -C build $(cd build && ls -d "$dir"/*.json* "$dir"/model $last 2>/dev/null) 2>> "$OUT/session.log"
  fi
}

if [ "$phase" = base ]; then
  n=$(echo "$VARIANTS" | wc -w)
  workers=$(( 14 / n ))
  for v in $VARIANTS; do
    name=$(echo "$v" | cut -d: -f1); level=$(echo "$v" | cut -d: -f2); mixture=$(echo "$v" | cut -d: -f3-)
    link_data "build/nano-$name" "$level"
    ( LEVEL=$level NANO_BUILD=build/nano-$name MIXTURE=$mixture STAGES="base probes sft" WORKERS=$workers \
        TRAINER_THREADS=2 bash scripts/train_nano.sh > "$LOGS/base-$name.log" 2>&1
      note "variant $name finished: $?"; pack_base "$name"; note "packed $name" ) &
  done
  wait
elif [ "$phase" = grpo ]; then
  GRPO_RUNS=${GRPO_RUNS:?name the runs: variant:seed:lr ...}
  for r in $GRPO_RUNS; do
    name=$(echo "$r" | cut -d: -f1); seed=$(echo "$r" | cut -d: -f2); lr=$(echo "$r" | cut -d: -f3)
    level=$(echo "$VARIANTS" | tr ' ' '\n' | grep "^$name:" | cut -d: -f2)
    link_data "build/nano-$name" "$level"
    dir="nano-$name/grpo-seed$seed-lr$lr"
    ( timeout -s TERM "${GRPO_SECONDS:-300}" python3 -m trainer.grpo --config configs/grpo-nano-r1zero.json \
        --base-model "build/nano-$name/base/model" --dataset "build/nano-$name/spatial-synth" --output-dir "build/$dir" \
        --export-dir "build/$dir/model" --job-id "nano-$name-s$seed" --seed "$seed" --learning-rate "$lr" --device cuda \
        --threads 2 > "$LOGS/grpo-$name-s$seed-lr$lr.log" 2>&1
      note "grpo $name seed $seed lr $lr finished: $?"; pack_grpo "$dir" "grpo-$name-s$seed-lr$lr" ) &
  done
  wait
fi
note "done"
