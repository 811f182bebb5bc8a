#!/usr/bin/env bash
# The image's entry point:
#   train ARGS...    -> accelerate launch [--config_file $ACCELERATE_CONFIG] train.py ARGS...
#   predict ARGS...  -> nli-cot predict ARGS...
#   anything else    -> nli-cot ARGS... (evaluate, build, hub, demo, --help, ...)
set -euo pipefail

case "${1:-}" in
  train)
    shift
    launch=(accelerate launch)
    if [[ -n "${ACCELERATE_CONFIG:-}" ]]; then
      launch+=(--config_file "$ACCELERATE_CONFIG")
    fi
    exec "${launch[@]}" /app/train.py "$@"
    ;;
  predict)
    shift
    exec nli-cot predict "$@"
    ;;
  *)
    exec nli-cot "$@"
    ;;
esac
