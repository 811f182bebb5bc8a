#!/usr/bin/env bash
# The shipped recipe, recipes/mistral7b_qlora.yaml, through `accelerate launch train.py` on random Mistral-7B-v0.3
# weights (speed does not depend on the weight values), at the training benchmark's best settings: micro-batch 32,
# length-grouped batches, Liger kernels; 20 optimizer steps, no evaluation or checkpoints. Writes
# train_recipe_log.txt, train_recipe_metrics.json and train_recipe_curves.png into $OUT (default bench/results).
#
#   nli-cot build --jd0g ../shared/data/comp34812_nli_jd0g_cot --output-dir build/cot_dataset   # the real data set
#   bash bench/train_recipe.sh
#
# DATASET (default build/cot_dataset) and TOKENIZER (default mistral-common:v3, the real v0.3 tokenizer without
# a Hub download) pick the data and tokenizer; MAX_STEPS the number of steps.
set -uo pipefail
OUT=${OUT:-bench/results}
RUN=${RUN:-/tmp/train-recipe}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} NLI_COT_CACHE=${NLI_COT_CACHE:-/tmp/nli-cache}
quiet() { grep --line-buffered -v -E "Warning|warn|it/s\]|s/it\]|examples/s\]|Backend impl"; }
timeout "${TRAIN_TIMEOUT:-200}" python3 -m accelerate.commands.launch --config_file accelerate_configs/single_gpu.yaml \
  train.py --config recipes/mistral7b_qlora.yaml --random_init true --dataset_name "${DATASET:-build/cot_dataset}" \
  --tokenizer_name_or_path "${TOKENIZER:-mistral-common:v3}" --max_steps "${MAX_STEPS:-20}" --eval_strategy no \
  --save_strategy no --load_best_model_at_end false --per_device_train_batch_size 32 \
  --train_sampling_strategy group_by_length --use_liger_kernel true --logging_steps 5 --output_dir "$RUN" \
  2>&1 | quiet | tee "$OUT/train_recipe_log.txt"
status=${PIPESTATUS[0]}
cp "$RUN/training_metrics.json" "$OUT/train_recipe_metrics.json" 2>/dev/null
cp "$RUN/training_curves.png" "$OUT/train_recipe_curves.png" 2>/dev/null
exit "$status"
