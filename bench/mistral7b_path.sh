#!/usr/bin/env bash
# The README's Mistral-7B commands, as written, on one GPU with no Hub access: build the CoT data set, QLoRA
# training with recipes/mistral7b_qlora.yaml (the real schedule: 60 optimizer steps, 6 warm-up, cosine), then
# predict ~200 dev rows with the adapter and evaluate. The weights are random (--random_init, Mistral-7B-v0.3's
# architecture) and the tokenizer is the real v0.3 one (--tokenizer_name_or_path mistral-common:v3), so this
# checks the path (memory, speed, schedule, saving, loading, prediction), not accuracy.
#
# Run from the repository root on the GPU machine; everything it needs travels inside the repository:
#   wheels the machine lacks, installed into /tmp/site from .whl/ (../shared/device/fetch-wheels.sh),
#     .carry/whl_exp, .carry/whl_bnb and .carry/whl_7b (liger-kernel, mistral-common, sentencepiece, protobuf);
#     (in two batches if they are too large to bring at once: INSTALL_ONLY=1 installs the first and stops)
#   .carry/mistral7b/comp34812_nli_jd0g_cot/   a copy of ../shared/data/comp34812_nli_jd0g_cot
#   .carry/mistral7b/dev_jd0g.csv              a copy of ../shared/data/comp34812_nli/dev_jd0g.csv
#
#   OUT=/tmp/out bash bench/mistral7b_path.sh             # the real schedule
#   MAX_STEPS=30 bash bench/mistral7b_path.sh             # shorter: warm-up 3 (the recipe's share), peak, decay
#   ACCELERATE_CONFIG=accelerate_configs/fsdp_qlora.yaml NUM_PROCESSES=2 bash bench/mistral7b_path.sh   # 2 GPUs
#
# $OUT receives at most 6 files: summary.txt, training_curves.png, training_metrics.json, metrics.json (evaluate),
# environment.txt and everything else (logs, resolved recipe, adapter config, predictions, report) in all.tar.gz.
set -uo pipefail
RESULTS=${OUT:-/tmp/mistral7b-path}
OUT=/tmp/mistral7b-path-work
DATA=${DATA:-.carry/mistral7b}
SITE=${SITE:-/tmp/nli-site}  # the same site as experiments/device.sh, so wheels brought for one serve both
RUN=outputs/mistral7b-path
export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       NLI_COT_CACHE=/tmp/nli-cache TOKENIZERS_PARALLELISM=false PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
mkdir -p "$OUT" "$SITE" "$RESULTS"

# Wheels may arrive in several batches on a machine that stays up: each run installs the ones not installed
# yet, from every folder in WHEEL_DIRS.
mkdir -p "$SITE/.wheels"
new_wheels=()
for wheel in ${WHEEL_DIRS:-.whl .carry/whl_exp .carry/whl_bnb .carry/whl_7b}; do
  for file in "$wheel"/*.whl; do
    [ -f "$file" ] && [ ! -f "$SITE/.wheels/$(basename "$file")" ] && new_wheels+=("$file")
  done
done
if [ ${#new_wheels[@]} -gt 0 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "${new_wheels[@]}" || { echo "error: wheel install failed"; exit 1; }
  for file in "${new_wheels[@]}"; do touch "$SITE/.wheels/$(basename "$file")"; done
  echo "installed ${#new_wheels[@]} wheels"
fi
[ "${INSTALL_ONLY:-0}" = 1 ] && { echo "wheels installed; run again without INSTALL_ONLY with the data"; exit 0; }
python3 - <<'EOF' | tee "$OUT/environment.txt"
import importlib.util
import torch, transformers
needed = ["peft", "trl", "bitsandbytes", "datasets", "evaluate", "liger_kernel", "mistral_common", "sentencepiece",
          "google.protobuf", "typer", "rich", "pydantic", "json_repair", "tenacity", "aiolimiter", "matplotlib",
          "sklearn", "scipy", "yaml"]
print("card:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU", "x", torch.cuda.device_count())
print("torch", torch.__version__, "transformers", transformers.__version__)
missing = [name for name in needed if importlib.util.find_spec(name.split(".")[0]) is None]
print("missing modules:", ", ".join(missing) or "none")
EOF
for needed in "$DATA/comp34812_nli_jd0g_cot/sample_thoughts.json" "$DATA/dev_jd0g.csv"; do
  [ -f "$needed" ] || { echo "error: $needed missing: copy ../shared/data into $DATA (see the header)"; exit 1; }
done

step() {  # name, command...: run, log to $OUT/<name>.log, stop the script on failure
  local name=$1; shift
  echo "== $name: $*"
  local started=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  echo "   $name: exit $status after $((SECONDS - started)) s"
  grep -E "^(\[RANK [0-9]+\] )?(error|schedule|train [0-9]|after tokenization)|Error" "$OUT/$name.log" | head -n 5
  return $status
}
collect() {
  for name in training_metrics.json training_curves.png recipe_resolved.yaml adapter_config.json README.md; do
    [ -f "$RUN/$name" ] && cp "$RUN/$name" "$OUT/"
  done
  for name in summary.txt training_curves.png training_metrics.json metrics.json environment.txt; do
    [ -f "$OUT/$name" ] && cp "$OUT/$name" "$RESULTS/"
  done
  tar -czf "$RESULTS/all.tar.gz" -C "$OUT" .
}
trap collect EXIT

step build python3 -m nli_cot_hub build --jd0g "$DATA/comp34812_nli_jd0g_cot" --jd0g-dev-missing \
  --output-dir build/cot_dataset --overwrite || exit 1

# The random-weight checkpoint that --random_init trains on (seed 42, the recipe's), saved once before the
# launch so several ranks do not each build it; predict loads it as the adapter's base.
base=$(python3 -c "from nli_cot_hub.train.model import random_init_checkpoint; print(random_init_checkpoint('mistralai/Mistral-7B-v0.3', 'bfloat16', 42))" | tail -n 1)
[ -f "$base/config.json" ] || { echo "error: no random-init checkpoint: $base"; exit 1; }

steps=()
[ -n "${MAX_STEPS:-}" ] && steps=(--max_steps "$MAX_STEPS")
# Time limits keep the whole script under 10 minutes (H100: 20 steps of this recipe took 65 s, so 60 steps with
# 6 evaluations about 4 minutes); MAX_STEPS=30 halves the training when time is tight.
step train timeout "${TRAIN_TIMEOUT:-420}" python3 -m accelerate.commands.launch --config_file "${ACCELERATE_CONFIG:-accelerate_configs/single_gpu.yaml}" \
  --num_processes "${NUM_PROCESSES:-1}" train.py --config recipes/mistral7b_qlora.yaml \
  --random_init --tokenizer_name_or_path mistral-common:v3 --output_dir "$RUN" "${steps[@]}" || exit 1
tail -n 4 "$OUT/train.log"

step predict timeout "${PREDICT_TIMEOUT:-150}" python3 -m nli_cot_hub predict "$DATA/dev_jd0g.csv" --model "$base" --adapter "$RUN" \
  --limit "${PREDICT_ROWS:-200}" --batch-size 64 --max-new-tokens "${MAX_NEW_TOKENS:-128}" \
  -o "$OUT/predictions.jsonl" || exit 1
step evaluate python3 -m nli_cot_hub evaluate "$OUT/predictions.jsonl" -o "$OUT/eval" || exit 1
cp "$OUT/eval/metrics.json" "$OUT/eval/report.md" "$OUT/"
python3 - "$RUN/training_metrics.json" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
metrics = json.load(open(sys.argv[1]))
summary = metrics["summary"]
rates = [(entry["step"], entry["learning_rate"]) for entry in metrics["log_history"] if "learning_rate" in entry]
peak = max(rates, key=lambda point: point[1])
print(f"steps {summary['global_steps']} (planned {summary['planned_steps']}), warm-up {summary['warmup_steps']}, "
      f"LR peak {peak[1]:.3g} at step {peak[0]}, last {rates[-1][1]:.3g} at step {rates[-1][0]}; "
      f"loss {summary['first_train_loss']} -> {summary['last_train_loss']}, best eval {summary['best_eval_loss']}; "
      f"peak memory {summary['peak_memory_gib']} GiB, {summary['train_tokens_per_second']} tok/s")
EOF
