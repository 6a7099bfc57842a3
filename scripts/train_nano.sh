#!/usr/bin/env bash
# Trains the embedded model from scratch on CPU (docs/embedded-model.md):
#   models/nano-base                 base pre-training on scene descriptions (no questions, no
#                                    think/answer tags), safetensors + ONNX
#   build/nano/models/nano-r1zero    GRPO with the r1 template on the base (the paper's rewards/loss)
#   build/nano/models/nano-sft       the SFT baseline (direct answers)
#
#   bash scripts/train_nano.sh                       # data, base (2 stages), probe, SFT, GRPO, exports
#   EVALUATE=1 CONTROL=1 bash scripts/train_nano.sh  # ... plus the evaluations of the README table
#                                                    #     and the control run (GRPO on the SFT model)
#
# Everything is seeded; build/nano/timings.txt gets the seconds of each stage.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
B=${NANO_BUILD:-build/nano}
THREADS=${TRAINER_THREADS:-2}
export OMP_NUM_THREADS=$THREADS
mkdir -p "$B"
: > "$B/timings.txt"

stage() {
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "== $name: $*" >&2
  "$@"
  echo "$name $(( $(date +%s) - start ))" | tee -a "$B/timings.txt" >&2
}

# 1. Data: 12,000 described scenes for pre-training (seed 2), 4,000 training and 200 validation
#    questions (seed 1; the test split /evaluate builds in memory is seed 1's test split, disjoint).
stage synth-pretrain npm run synth --silent -- --out "$B/pretrain" --train 12000 --val 0 --test 0 --seed 2 --describe
stage synth-questions npm run synth --silent -- --out "$B/spatial-synth" --train 4000 --val 200 --test 0 --seed 1

# 2. Tokenizer, random initial model and base pre-training: 700 steps of half prose, half markup
#    documents, then 1,000 more steps with 80% markup documents (new documents of the same scenes).
rm -rf "$B/base-1" "$B/base" "$B/sft" "$B/grpo"
stage pretrain "$PY" -m trainer.nano.pretrain --data "$B/pretrain" --questions "$B/spatial-synth" --out "$B/base-1" \
  --steps 700 --batch-size 8 --lr 2e-3 --warmup 30 --threads "$THREADS" --seed 0
stage pretrain-2 "$PY" -m trainer.nano.pretrain --data "$B/pretrain" --continue-from "$B/base-1/model" --out "$B/base" \
  --steps 1000 --batch-size 8 --lr 1e-3 --warmup 20 --markup-share 0.8 --threads "$THREADS" --seed 1
stage probe "$PY" -m trainer.nano.format_probe --model "$B/base/model" --dataset "$B/spatial-synth" --items 16 --samples 8 \
  --max-new-tokens 96 --threads "$THREADS" --out "$B/base-probe.json"

# 3. SFT baseline: direct answers.
stage sft "$PY" -m trainer.nano.sft --model "$B/base/model" --dataset "$B/spatial-synth" --out "$B/sft" \
  --steps 300 --batch-size 16 --lr 5e-4 --warmup 20 --threads "$THREADS" --seed 0

# 4. R1-Zero: GRPO on the base with the r1 template (configs/grpo-nano-r1zero.json).
stage grpo "$PY" -m trainer.grpo --config configs/grpo-nano-r1zero.json --base-model "$B/base/model" \
  --dataset "$B/spatial-synth" --output-dir "$B/grpo" --export-dir "$B/grpo/model" --threads "$THREADS"

# 5. Servable folders: safetensors + ONNX (fp32) in the onnx-community layout.
export_model() {
  local src=$1 dst=$2 readme=$3
  rm -rf "$dst"
  mkdir -p "$dst"
  cp "$src"/config.json "$src"/generation_config.json "$src"/model.safetensors "$src"/preprocessor_config.json \
    "$src"/tokenizer.json "$src"/tokenizer_config.json "$dst"/
  cp "$readme" "$dst/README.md"
  "$PY" -m trainer.export --checkpoint "$dst" --out "$dst" --dtype fp32
}
# The base is shipped. The GRPO policy is exported beside the SFT baseline under $B/models: with the
# base unable to produce the format, every reward is 0 and GRPO leaves the weights unchanged
# (docs/embedded-model.md), so it is not shipped as a second copy of the base.
stage export export_model "$B/base/model" "${NANO_MODELS:-models}/nano-base" docs/models/nano-base.md
stage export-r1zero export_model "$B/grpo/model" "$B/models/nano-r1zero" docs/models/nano-r1zero.md
stage export-sft export_model "$B/sft/model" "$B/models/nano-sft" docs/models/nano-sft.md
cmp "$B/base/model/model.safetensors" "$B/grpo/model/model.safetensors" && echo "GRPO left the base weights unchanged" >&2 || true

# 6. Evaluation through the service's evaluation path (the README table).
if [ "${EVALUATE:-0}" = "1" ]; then
  export MODELS_DIR="$B/models" STATE_DIR="$B/state"
  limit=${EVAL_LIMIT:-1000}
  stage eval-base npm run evaluate --silent -- --benchmark spatial-synth --limit "$limit" --model nano-base --template r1 --max-new-tokens 96
  stage eval-base-direct npm run evaluate --silent -- --benchmark spatial-synth --limit "$limit" --model nano-base --template direct --max-new-tokens 16
  stage eval-sft npm run evaluate --silent -- --benchmark spatial-synth --limit "$limit" --model nano-sft --template direct --max-new-tokens 16
  stage eval-r1zero npm run evaluate --silent -- --benchmark spatial-synth --limit "$limit" --model nano-r1zero --template r1 --max-new-tokens 96
fi
# Control (not the paper's method; it checks the GRPO loop): the same GRPO on the SFT model.
if [ "${CONTROL:-0}" = "1" ]; then
  rm -rf "$B/grpo-from-sft"
  stage grpo-from-sft "$PY" -m trainer.grpo --config configs/grpo-nano-r1zero.json --base-model "$B/sft/model" \
    --dataset "$B/spatial-synth" --output-dir "$B/grpo-from-sft" --export-dir "$B/models/nano-sft-grpo" \
    --job-id nano-sft-grpo --threads "$THREADS"
  if [ "${EVALUATE:-0}" = "1" ]; then
    stage eval-sft-grpo npm run evaluate --silent -- --benchmark spatial-synth --limit "${EVAL_LIMIT:-1000}" --model nano-sft-grpo --template r1 --max-new-tokens 96
  fi
fi
"$PY" -m trainer.nano.plot_dynamics --job "$B/grpo" --out docs/nano-dynamics.png --title "nano-r1zero: GRPO on the nano base (r1 template)"
