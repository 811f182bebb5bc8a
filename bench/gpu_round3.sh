#!/usr/bin/env bash
# One GPU-machine call (third prediction-speed measurement): the prediction engines again, each in a fresh process, with the
# transformers this project is tested with (5.24, carried in .carry/whl_exp and installed by
# experiments/device.sh), whose SDPA path packs the query heads of each key/value group into one
# decoding step (`pack_gqa`) instead of copying every key/value head four times as 5.17's does.
#   bash experiments/device.sh && bash bench/gpu_round3.sh          (carry .carry/whl_exp)
# Predictions before the run: bf16_b512 ~2x round 2's 3,783 new tok/s (the repeated K/V copies were
# about half of each ~95 ms decoding step); continuous_b512 unknown (paged attention has its own kernels);
# static_b512 is left out (round 1 measured it; compiled decoding does not take the packed path).
set -uo pipefail
export PYTHONPATH=/tmp/nli-site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 BENCH_CACHE=/tmp/bench-cache \
       PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True TRANSFORMERS_VERBOSITY=error
quiet() { grep --line-buffered -v -E "Warning|warn|it/s\]|s/it\]|Backend impl"; }
for engine in ${ENGINES:-bf16_b512 continuous_b512}; do
  timeout "${ENGINE_TIMEOUT:-150}" python3 -m bench.predict_throughput --engines "$engine" --tag "_round3_$engine" \
    2>&1 | quiet | tee -a "$OUT/predict_round3_log.txt"
done
