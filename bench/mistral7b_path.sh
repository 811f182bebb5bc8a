#!/usr/bin/env bash
# The README's Mistral-7B commands, as written, on one GPU with no Hub access: build the CoT data set, QLoRA
# training with recipes/mistral7b_qlora.yaml (the real schedule: 60 optimizer steps, 6 warm-up, cosine), then
# predict ~200 dev rows with the adapter and evaluate. The weights are random (--random_init, Mistral-7B-v0.3's
# architecture) and the tokenizer is the real v0.3 one (--tokenizer_name_or_path mistral-common:v3), so this
# checks the path (memory, speed, schedule, saving, loading, prediction), not accuracy.
#
# Run from the repository root with the package and its gpu extra installed. The data come from
# $NLI_COT_SHARED_DATA (default ../shared/data): comp34812_nli_jd0g_cot/ and comp34812_nli/dev_jd0g.csv.
#
#   OUT=/tmp/out bash bench/mistral7b_path.sh             # the real schedule
#   MAX_STEPS=30 bash bench/mistral7b_path.sh             # shorter: warm-up 3 (the recipe's share), peak, decay
#   ACCELERATE_CONFIG=accelerate_configs/fsdp_qlora.yaml NUM_PROCESSES=2 bash bench/mistral7b_path.sh   # 2 GPUs
#
# $OUT receives six files: summary.txt, training_curves.png, training_metrics.json, metrics.json (evaluate),
# environment.txt and everything else (logs, resolved recipe, adapter config, predictions, report) in all.tar.gz.
set -uo pipefail
RESULTS=${OUT:-/tmp/mistral7b-path}
OUT=/tmp/mistral7b-path-work
DATA_ROOT=${NLI_COT_SHARED_DATA:-../shared/data}
ARTIFACTS=$DATA_ROOT/comp34812_nli_jd0g_cot
DEV=$DATA_ROOT/comp34812_nli/dev_jd0g.csv
RUN=outputs/mistral7b-path
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
       TRANSFORMERS_OFFLINE=1 NLI_COT_CACHE=${NLI_COT_CACHE:-/tmp/nli-cache} TOKENIZERS_PARALLELISM=false \
       PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
mkdir -p "$OUT" "$RESULTS"

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
for needed in "$ARTIFACTS/sample_thoughts.json" "$DEV"; do
  [ -f "$needed" ] || { echo "error: $needed missing: set NLI_COT_SHARED_DATA to the folder that holds the data"; exit 1; }
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

step build python3 -m nli_cot_hub build --import-artifacts "$ARTIFACTS" --import-dev-thoughts \
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

step predict timeout "${PREDICT_TIMEOUT:-150}" python3 -m nli_cot_hub predict "$DEV" --model "$base" --adapter "$RUN" \
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
