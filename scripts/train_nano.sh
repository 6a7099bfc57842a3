#!/usr/bin/env bash
# Trains the embedded nano model from scratch (docs/embedded-model.md):
#   base      pre-training on the corpus mixture (scene descriptions, markup, grounding facts,
#             other-domain Q/A): at the easy level the curriculum (a geometry tower, then phases that
#             teach the decoder to find named objects); otherwise up to three phases (from scratch,
#             continued, mid-training); see stage 2
#   probes    perception (held-out scenes) and step 0 of R1-Zero (format rate, accuracy, option ranking)
#   sft       the SFT baseline: direct answers, as many examples as GRPO sees
#   grpo      R1-Zero GRPO on the base with the r1 template, one run per seed (SEEDS)
#   export    servable folders (safetensors + ONNX) under $B/models, named nano-<level>-base, -sft,
#             -r1zero-seed<N> (copy one to models/nano-r1zero to ship it)
#   evaluate  the spatial-synth test split through `npm run evaluate` (base r1/direct, SFT, GRPO)
#
#   bash scripts/train_nano.sh                      # every stage, on the GPU if there is one
#   LEVEL=easy bash scripts/train_nano.sh           # the easy level of spatial-synth
#   STAGES="grpo export" bash scripts/train_nano.sh # some stages (each reads what the earlier wrote)
#   DEVICE=cpu bash scripts/train_nano.sh           # force the CPU
#
# An interrupted run started again resumes: the data stage skips finished folders, finished
# pre-training phases and SFT are kept, unfinished ones continue from their last checkpoint, GRPO
# from its last checkpoint. $B/timings.txt gets
# the seconds of each stage. Sizes are environment variables (defaults below).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
LEVEL=${LEVEL:-standard}
B=${NANO_BUILD:-build/nano-$LEVEL}
DEVICE=${DEVICE:-auto}
THREADS=${TRAINER_THREADS:-2}
WORKERS=${WORKERS:-0}
SYNTH=${SYNTH:-npm run synth --silent --}
STAGES=${STAGES:-"data base probes sft grpo export evaluate"}
SEEDS=${SEEDS:-"0 1"}
# Pre-training and its data.
SCENES=${SCENES:-$([ "$LEVEL" = easy ] && echo 40000 || echo 60000)}  # described scenes for pre-training (seed 2)
QUESTIONS=${QUESTIONS:-4000}       # GRPO / SFT training questions (seed 1; /evaluate's test split is disjoint)
PRETRAIN_STEPS=${PRETRAIN_STEPS:-$([ "$LEVEL" = easy ] && echo 600 || echo 3000)}  # the corpus path (CURRICULUM=0) at the easy level: 600 x 32
PRETRAIN_BATCH=${PRETRAIN_BATCH:-$([ "$LEVEL" = easy ] && echo 32 || echo 64)}
PRETRAIN_LR=${PRETRAIN_LR:-2e-3}
MIXTURE=${MIXTURE:-$([ "$LEVEL" = easy ] && echo '{"r1":0.05,"tagged":0.25}' || echo '{}')}  # corpus shares replacing trainer/nano/corpus.py's defaults (JSON)
# GRPO: configs/grpo-nano-r1zero.json; SFT sees as many questions as GRPO's prompts.
GRPO_CONFIG=${GRPO_CONFIG:-configs/grpo-nano-r1zero.json}
CONFIG_STEPS=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['steps'])" "$GRPO_CONFIG")
# GRPO_STEPS may list several totals: each run after the first resumes the previous one's last
# checkpoint with its learning-rate schedule spread over the new total. The shipped easy run: 300,
# then continued to 500 (seed 1).
GRPO_STEPS=${GRPO_STEPS:-$([ "$LEVEL" = easy ] && echo "300 500" || echo "$CONFIG_STEPS")}
GRPO_TOTAL=${GRPO_STEPS##* }  # the last total: the steps GRPO takes in all
GRPO_PROMPTS=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['prompts_per_step'])" "$GRPO_CONFIG")
if [ "$LEVEL" = easy ]; then SIZE_FLAGS="--level easy"; MAX_PIXELS=${MAX_PIXELS:-28224}; else SIZE_FLAGS=""; MAX_PIXELS=${MAX_PIXELS:-50176}; fi
export OMP_NUM_THREADS=$THREADS
mkdir -p "$B"
touch "$B/timings.txt"

has() { [[ " $STAGES " == *" $1 "* ]]; }
trained() {  # trained OUT: a finished training run (its model folder is written last) is kept
  [ -f "$1/model/model.safetensors" ] && echo "(kept $1: finished)" >&2
}
stage() {
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "== $name: $*" >&2
  "$@"
  echo "$name $(( $(date +%s) - start ))" | tee -a "$B/timings.txt" >&2
}
synth() {  # synth OUT ARGS...: skipped when OUT holds a finished data set
  local out=$1
  shift
  [ -f "$out/dataset.json" ] && { echo "(kept $out)" >&2; return 0; }
  # shellcheck disable=SC2086
  $SYNTH --out "$out" "$@" $SIZE_FLAGS
}

# 1. Data: described scenes for pre-training (seed 2, with 128 held-out scenes), training and
#    validation questions (seed 1).
if has data; then
  stage synth-pretrain synth "$B/pretrain" --train "$SCENES" --val 128 --test 0 --seed 2 --describe
  stage synth-questions synth "$B/spatial-synth" --train "$QUESTIONS" --val 200 --test 0 --seed 1
fi

# 2. The base: a vision stage, then language-model pre-training in up to three phases, each
#    continuing the one before and resuming from its own checkpoint when interrupted
#    (docs/embedded-model.md, "Pre-training"):
#    vision    the vision tower alone on dense per-cell labels of the pre-training scenes: colour,
#              shape and the seen object's geometry (position in the picture and on the ground,
#              camera distance; VISION_GEOMETRY is its loss weight, 0 for colour and shape only)
#              (VISION_STEPS x 64; 0 skips it), then kept frozen in every phase below
#    ground    GROUND_STEPS x 32 at LR 1e-3 on grounding facts (picture facts with the answer last, the
#              loss on the answers: trainer/nano/grounding.py) beside short Q/A documents
#              (GROUND_MIXTURE; default 0 skips it); the base phase then continues from it. An
#              experiment, not part of the shipped build (docs/embedded-model.md, "The grounding phase")
#    base      the corpus mixture: PRETRAIN_STEPS x PRETRAIN_BATCH at PRETRAIN_LR
#    continue  more of the same at batch 16: CONTINUE_STOP steps of a CONTINUE_STEPS-step schedule,
#              LR 1e-3, first CONTINUE_SCENES scenes (0 skips it)
#    midtrain  MID_STEPS at LR 3e-4 with more identity Q/A and lettered choices (MID_MIXTURE; 0 skips)
#    copy      COPY_STEPS at LR 3e-4, most Q/A listing choices and most text Q/A option-picking
#              questions (COPY_MIXTURE; default 0 skips it). An experiment, not part of the shipped
#              build: it did not make the base answer with an option (docs/embedded-model.md)
#    letters   LETTER_STEPS at LR 3e-4 in which most Q/A list lettered choices and 60% of those are
#              answered with the option's letter (LETTER_MIXTURE; default 0 skips it), so the base
#              names an option the way multiple-choice pages do; with it the SFT baseline answers
#              with letters. An experiment, not part of the shipped build: GRPO on it settled on
#              one letter for every question (docs/embedded-model.md, "The letters experiment")
#    curriculum (CURRICULUM=1, replacing the phases from ground on) teaches the decoder to find a
#              named object in the picture one step at a time (docs/embedded-model.md, "The
#              curriculum experiment"): the binding test's one-object statements on a fresh decoder
#              (trainer.nano.binding), then grounding documents of relations in one wording, one
#              fact each, then grounding in every wording beside more and more Q/A documents
#              (CURRICULUM_PHASES, each NAME:STEPS:SEED, the mixtures below; 32 a batch, LR 1e-3)
#    Later stages start from the last phase's model ($BASE).
CURRICULUM=${CURRICULUM:-$([ "$LEVEL" = easy ] && echo 1 || echo 0)}  # the shipped easy base: 1
VISION_STEPS=${VISION_STEPS:-$([ "$CURRICULUM" = 1 ] && echo 500 || { [ "$LEVEL" = easy ] && echo 250 || echo 0; })}  # the geometry experiment: 500
VISION_GEOMETRY=${VISION_GEOMETRY:-$([ "$CURRICULUM" = 1 ] && echo 1 || echo 0)}  # 1 with the curriculum (the shipped base), else 0 (docs/embedded-model.md)
CURRICULUM_PHASES=${CURRICULUM_PHASES:-"b2:1500:22 c2:1438:23 c3:713:24 c4:1032:25 c5:928:26 c7:471:28"}  # c6 was a side branch
declare -A CURRICULUM_MIXTURE=(
  [b2]='{"description":0,"markup":0,"text_qa":0,"image_qa":0,"grounding":1,"relations":1,"first_wording":1,"single_fact":1}'
  [c2]='{"description":0,"markup":0,"text_qa":0.15,"image_qa":0.15,"grounding":0.7,"one_object":0.2,"relations":0.3,"first_wording":0.3,"choices":0.5,"r1":0.15,"tagged":0.3,"direct":0.25}'
  [c3]='{"description":0,"markup":0,"text_qa":0.15,"image_qa":0.15,"grounding":0.7,"one_object":0.1,"relations":0.2,"choices":0.5,"r1":0.15,"tagged":0.3,"direct":0.25}'
  [c4]='{"description":0,"markup":0,"text_qa":0.2,"image_qa":0.2,"grounding":0.6,"one_object":0.1,"relations":0.2,"choices":0.6,"r1":0.15,"tagged":0.3,"direct":0.25}'
  [c5]='{"description":0,"markup":0,"text_qa":0.25,"image_qa":0.25,"grounding":0.5,"one_object":0.1,"relations":0.2,"choices":0.7,"r1":0.3,"tagged":0.3,"direct":0.25}'
  [c6]='{"description":0,"markup":0,"text_qa":0.25,"image_qa":0.25,"grounding":0.5,"one_object":0.1,"relations":0.2,"choices":0.7,"r1":0.3,"tagged":0.3,"direct":0.25,"recite":0.6}'
  [c7]='{"description":0.3,"markup":0.1,"text_qa":0.15,"image_qa":0.15,"grounding":0.3,"one_object":0.1,"relations":0.2,"choices":0.7,"r1":0.3,"tagged":0.3,"direct":0.25}'
)
GROUND_STEPS=${GROUND_STEPS:-0}  # the grounding experiment: 2000 (fitted to GROUND_SECONDS)
GROUND_SECONDS=${GROUND_SECONDS:-0}
GROUND_MIXTURE=${GROUND_MIXTURE:-'{"description":0.0,"markup":0.0,"text_qa":0.15,"image_qa":0.15,"grounding":0.7,"choices":0.5,"r1":0.15,"tagged":0.3,"direct":0.25}'}
CONTINUE_STEPS=${CONTINUE_STEPS:-0}
CONTINUE_STOP=${CONTINUE_STOP:-$CONTINUE_STEPS}
CONTINUE_SCENES=${CONTINUE_SCENES:-16000}
MID_STEPS=${MID_STEPS:-$([ "$LEVEL" = easy ] && echo 100 || echo 0)}
MID_MIXTURE=${MID_MIXTURE:-'{"description":0.45,"markup":0.05,"text_qa":0.2,"image_qa":0.3,"r1":0.15,"tagged":0.4,"choices":0.5}'}  # r1 and tagged at the corpus defaults
COPY_STEPS=${COPY_STEPS:-0}
COPY_MIXTURE=${COPY_MIXTURE:-'{"description":0.35,"markup":0.05,"text_qa":0.35,"image_qa":0.25,"r1":0.3,"tagged":0.35,"direct":0.1,"choices":0.8,"pick":0.6}'}
LETTER_STEPS=${LETTER_STEPS:-0}  # the letters experiment used 300 (from the base shipped before 2026-12-07; docs/embedded-model.md)
LETTER_MIXTURE=${LETTER_MIXTURE:-'{"description":0.4,"markup":0.05,"text_qa":0.2,"image_qa":0.35,"r1":0.2,"tagged":0.4,"direct":0.1,"choices":0.7,"pick":0.4,"letter":0.6}'}
SFT_ANSWER=${SFT_ANSWER:-$([ "$LETTER_STEPS" -gt 0 ] && echo letter || echo text)}
if [ "$CURRICULUM" = 1 ]; then
  last_phase=${CURRICULUM_PHASES##* }
  BASE=$B/curriculum-${last_phase%%:*}
else
  BASE=$B/base
  [ "$CONTINUE_STEPS" -gt 0 ] && BASE=$B/base-continue
  [ "$MID_STEPS" -gt 0 ] && BASE=$B/base-mid
  [ "$COPY_STEPS" -gt 0 ] && BASE=$B/base-copy
  [ "$LETTER_STEPS" -gt 0 ] && BASE=$B/base-letters
fi
pretrain_args=(--data "$B/pretrain" --questions "$B/spatial-synth" --out "$B/base" --batch-size "$PRETRAIN_BATCH"
  --max-pixels "$MAX_PIXELS" --mixture "$MIXTURE" --device "$DEVICE" --workers "$WORKERS" --threads "$THREADS" --seed 0)
FROM=()
FREEZE=()
if has base; then
  if [ "$VISION_STEPS" -gt 0 ]; then
    [ -f "$B/base/init/model.safetensors" ] || stage pretrain-init "$PY" -m trainer.nano.pretrain "${pretrain_args[@]}" --init-only
    stage vision "$PY" -m trainer.nano.vision --model "$B/base/init" --data "$B/pretrain" --out "$B/vision" \
      --steps "$VISION_STEPS" --batch-size 64 --lr 2e-3 --geometry-weight "$VISION_GEOMETRY" --max-pixels "$MAX_PIXELS" --device "$DEVICE" --threads "$THREADS"
    FROM=(--continue-from "$B/vision/model")
    FREEZE=(--freeze-vision)
  fi
  if [ "$CURRICULUM" = 1 ]; then
    if ! trained "$B/curriculum-s/lm"; then
      # The binding step puts a fresh decoder on the vision stage's tower.
      [ -f "$B/vision/model/model.safetensors" ] || {
        echo "error: the curriculum starts from the vision stage's tower, $B/vision/model, which is missing;" \
          "run with VISION_STEPS > 0 (500 by default with CURRICULUM=1)" >&2
        exit 1
      }
      stage curriculum-s "$PY" -m trainer.nano.binding --model "$B/vision/model" \
        --data "$B/pretrain" --out "$B/curriculum-s" --readout-steps 0 --decoder-steps 1500 --fresh-decoder \
        --max-items 16000 --form sentence --answer-only --device "$DEVICE" --threads "$THREADS"
    fi
    last=$B/curriculum-s/lm
    for phase in $CURRICULUM_PHASES; do
      IFS=: read -r name steps seed <<< "$phase"
      trained "$B/curriculum-$name" || stage "curriculum-$name" "$PY" -m trainer.nano.pretrain --continue-from "$last/model" \
        --data "$B/pretrain" --out "$B/curriculum-$name" --steps "$steps" --batch-size 32 --lr 1e-3 --warmup 50 \
        --max-pixels "$MAX_PIXELS" --mixture "${CURRICULUM_MIXTURE[$name]}" --device "$DEVICE" --workers "$WORKERS" \
        --threads "$THREADS" --save-every 100 --eval-every 0 --seed "$seed" --freeze-vision
      last=$B/curriculum-$name
    done
  else
    if [ "$GROUND_STEPS" -gt 0 ]; then
      trained "$B/ground" || stage ground "$PY" -m trainer.nano.pretrain "${FROM[@]}" "${FREEZE[@]}" --data "$B/pretrain" \
        --out "$B/ground" --steps "$GROUND_STEPS" --batch-size 32 --lr 1e-3 --warmup 100 --max-pixels "$MAX_PIXELS" \
        --mixture "$GROUND_MIXTURE" --device "$DEVICE" --workers "$WORKERS" --threads "$THREADS" --save-every 100 \
        --eval-every 250 --seed 5 --max-seconds "$GROUND_SECONDS" $([ "$GROUND_SECONDS" != 0 ] && echo --fit-to-time)
      FROM=(--continue-from "$B/ground/model")
    fi
    trained "$B/base" || stage pretrain "$PY" -m trainer.nano.pretrain "${pretrain_args[@]}" "${FROM[@]}" "${FREEZE[@]}" \
      --steps "$PRETRAIN_STEPS" --lr "$PRETRAIN_LR" --warmup 100 --eval-every 50 --save-every 50 \
      --max-seconds "${PRETRAIN_MAX_SECONDS:-0}" $([ -n "${PRETRAIN_MAX_SECONDS:-}" ] && echo --fit-to-time)
    last=$B/base
    if [ "$CONTINUE_STEPS" -gt 0 ]; then
      trained "$B/base-continue" || stage pretrain-continue "$PY" -m trainer.nano.pretrain --continue-from "$last/model" --data "$B/pretrain" \
        --out "$B/base-continue" --max-items "$CONTINUE_SCENES" --steps "$CONTINUE_STEPS" --stop-at "$CONTINUE_STOP" \
        --batch-size 16 --lr 1e-3 --warmup 50 --max-pixels "$MAX_PIXELS" --mixture "$MIXTURE" --device "$DEVICE" \
        --workers "$WORKERS" --threads "$THREADS" --save-every 200 --eval-every 200 --seed 3 "${FREEZE[@]}"
      last=$B/base-continue
    fi
    if [ "$MID_STEPS" -gt 0 ]; then
      trained "$B/base-mid" || stage midtrain "$PY" -m trainer.nano.pretrain --continue-from "$last/model" --data "$B/pretrain" \
        --out "$B/base-mid" --max-items "$CONTINUE_SCENES" --steps "$MID_STEPS" --batch-size 16 --lr 3e-4 --warmup 20 \
        --max-pixels "$MAX_PIXELS" --mixture "$MID_MIXTURE" --device "$DEVICE" --workers "$WORKERS" --threads "$THREADS" \
        --save-every 100 --eval-every 100 --seed 4 "${FREEZE[@]}"
      last=$B/base-mid
    fi
    if [ "$COPY_STEPS" -gt 0 ]; then
      trained "$B/base-copy" || stage copytrain "$PY" -m trainer.nano.pretrain --continue-from "$last/model" --data "$B/pretrain" \
        --out "$B/base-copy" --steps "$COPY_STEPS" --batch-size 16 --lr 3e-4 --warmup 20 \
        --max-pixels "$MAX_PIXELS" --mixture "$COPY_MIXTURE" --device "$DEVICE" --workers "$WORKERS" --threads "$THREADS" \
        --save-every 100 --eval-every 300 --seed 7 "${FREEZE[@]}"
      last=$B/base-copy
    fi
    if [ "$LETTER_STEPS" -gt 0 ]; then
      trained "$B/base-letters" || stage midtrain-letters "$PY" -m trainer.nano.pretrain --continue-from "$last/model" \
        --data "$B/pretrain" --out "$B/base-letters" --max-items "$CONTINUE_SCENES" --steps "$LETTER_STEPS" --batch-size 16 \
        --lr 3e-4 --warmup 20 --max-pixels "$MAX_PIXELS" --mixture "$LETTER_MIXTURE" --device "$DEVICE" --workers "$WORKERS" \
        --threads "$THREADS" --save-every 100 --eval-every 150 --seed 11 "${FREEZE[@]}"
    fi
  fi
fi

# 3. Probes of the base: does it see, and where does R1-Zero start?
if has probes; then
  stage perception "$PY" -m trainer.nano.perception --model "$BASE/model" --data "$B/pretrain" --items "${PROBE_ITEMS:-128}" \
    --device "$DEVICE" --threads "$THREADS" --out "$B/base-perception.json" || echo "perception probe failed" >&2
  stage format-probe "$PY" -m trainer.nano.format_probe --model "$BASE/model" --dataset "$B/spatial-synth" \
    --items "${PROBE_ITEMS:-200}" --samples 8 --device "$DEVICE" --threads "$THREADS" --out "$B/base-probe.json" \
    || echo "format probe failed" >&2
fi

# 4. SFT baseline: direct answers (the option's text, or its letter: SFT_ANSWER), GRPO_TOTAL x
#    GRPO_PROMPTS examples.
if has sft; then
  trained "$B/sft" || stage sft "$PY" -m trainer.nano.sft --model "$BASE/model" --dataset "$B/spatial-synth" --out "$B/sft" \
    --answer "$SFT_ANSWER" \
    --steps "$GRPO_TOTAL" --batch-size "$GRPO_PROMPTS" --lr 5e-4 --warmup 20 --max-pixels "$MAX_PIXELS" \
    --device "$DEVICE" --workers "$WORKERS" --threads "$THREADS" --seed 0
fi

# 5. R1-Zero: GRPO on the base with the r1 template, one run per seed.
#    GRPO_PARALLEL=1 runs the seeds at once, the threads shared out: on a CPU a step is mostly
#    token-by-token generation, which keeps one core busy, so two runs of one thread finish sooner.
grpo() {  # grpo SEED THREADS
  local steps
  for steps in $GRPO_STEPS; do
    "$PY" -m trainer.grpo --config "$GRPO_CONFIG" --base-model "$BASE/model" \
      --dataset "$B/spatial-synth" --output-dir "$B/grpo-seed$1" --export-dir "$B/grpo-seed$1/model" \
      --job-id "nano-r1zero-seed$1" --seed "$1" --device "$DEVICE" --threads "$2" --steps "$steps"
  done
}
grpo_parallel() {
  local seeds=($SEEDS) pids=() seed
  local each=$(( THREADS / ${#seeds[@]} > 0 ? THREADS / ${#seeds[@]} : 1 ))
  for seed in "${seeds[@]}"; do
    grpo "$seed" "$each" > "$B/grpo-seed$seed.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
}
if has grpo; then
  if [ "${GRPO_PARALLEL:-0}" = 1 ]; then
    stage grpo-seeds grpo_parallel
  else
    for seed in $SEEDS; do stage "grpo-seed$seed" grpo "$seed" "$THREADS"; done
  fi
fi

# 6. Servable folders: safetensors + ONNX (fp32) in the onnx-community layout.
export_model() {
  local src=$1 dst=$2 readme=$3
  rm -rf "$dst"
  mkdir -p "$dst"
  cp "$src"/config.json "$src"/generation_config.json "$src"/model.safetensors "$src"/preprocessor_config.json \
    "$src"/tokenizer.json "$src"/tokenizer_config.json "$dst"/
  cp "$readme" "$dst/README.md"
  "$PY" -m trainer.export --checkpoint "$dst" --out "$dst" --dtype fp32
}
# The folders are named after the level (nano-standard-base, ...): the service's model roots are
# searched in order and models/ comes first, so a build named like a shipped folder would be shadowed.
M=nano-$LEVEL
if has export; then
  first_seed=${SEEDS%% *}
  stage export-base export_model "$BASE/model" "$B/models/$M-base" docs/models/nano-base.md
  stage export-sft export_model "$B/sft/model" "$B/models/$M-sft" docs/models/nano-sft.md
  for seed in $SEEDS; do
    stage "export-r1zero-seed$seed" export_model "$B/grpo-seed$seed/model" "$B/models/$M-r1zero-seed$seed" docs/models/nano-r1zero.md
  done
  "$PY" -m trainer.nano.plot_dynamics --job "$B/grpo-seed$first_seed" --out "$B/dynamics.png" \
    --title "nano-r1zero ($LEVEL level): GRPO on the nano base, r1 template, seed $first_seed"
fi

# 7. Evaluation through the service's evaluation path (docs/embedded-model.md's tables).
if has evaluate; then
  export MODELS_DIR="$B/models" STATE_DIR="$B/state"
  limit=${EVAL_LIMIT:-1000}
  level_flag=$([ "$LEVEL" = easy ] && echo "--level easy" || true)
  evaluate() {  # evaluate MODEL TEMPLATE MAX_NEW_TOKENS
    # shellcheck disable=SC2086
    npm run evaluate --silent -- --benchmark spatial-synth --limit "$limit" --model "$1" --template "$2" \
      --max-new-tokens "$3" $level_flag | tee "$B/eval-${1}-${2}.md"
  }
  stage eval-base evaluate "$M-base" r1 96
  stage eval-base-direct evaluate "$M-base" direct 16
  stage eval-sft evaluate "$M-sft" direct 16
  for seed in $SEEDS; do
    stage "eval-r1zero-seed$seed" evaluate "$M-r1zero-seed$seed" r1 96
  done
fi
