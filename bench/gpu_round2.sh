#!/usr/bin/env bash
# One device call: (1) the shipped Mistral-7B QLoRA recipe through `accelerate launch train.py` with a
# random-weight model (issue 5's GPU run) at the benchmark's best settings, (2) the prediction
# engines again with bucketed static-cache shapes, (3) continuous batching in a fresh process.
# Needs, carried: .whl (wheels), .carry/cot_dataset (nli-cot build output), .carry/mistral_tok.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NLI_COT_CACHE=/tmp/nli-cache
quiet() { grep --line-buffered -v -E "Warning|warn|it/s\]|s/it\]|examples/s\]|Backend impl"; }
timeout 200 python3 -m accelerate.commands.launch --config_file accelerate_configs/single_gpu.yaml train.py \
  --config recipes/mistral7b_qlora.yaml --random_init true --dataset_name .carry/cot_dataset \
  --tokenizer_name_or_path .carry/mistral_tok --max_steps 20 --eval_strategy no --save_strategy no \
  --load_best_model_at_end false --per_device_train_batch_size 32 --train_sampling_strategy group_by_length \
  --use_liger_kernel true --logging_steps 5 --output_dir /tmp/run7b 2>&1 | quiet | tee $OUT/train_recipe_log.txt
cp /tmp/run7b/training_metrics.json $OUT/train_recipe_metrics.json 2>/dev/null
cp /tmp/run7b/training_curves.png $OUT/train_recipe_curves.png 2>/dev/null
# BENCH_CACHE=/tmp/bench-cache timeout 230 python3 -m bench.predict_throughput --engines bf16_b512,static_b512 --tag _round2 2>&1 | quiet | tee $OUT/predict_round2_log.txt
# BENCH_CACHE=/tmp/bench-cache timeout 90 python3 -m bench.predict_throughput --engines continuous_b512 --tag _continuous 2>&1 | quiet | tee $OUT/predict_continuous_log.txt
