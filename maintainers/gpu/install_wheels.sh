#!/usr/bin/env bash
# Install the wheels brought to an offline GPU machine into one site folder, without an index or dependencies:
#
#   bash maintainers/gpu/install_wheels.sh                  # every *.whl under .whl/ and .offline/
#   bash maintainers/gpu/install_wheels.sh DIR [DIR ...]    # every *.whl under these folders
#   export PYTHONPATH=/tmp/nli-site:$PWD                    # then any project command finds them
#
# Wheels may arrive in several batches while the machine stays up: each call installs only those not
# installed yet (a marker per wheel in $SITE/.wheels). SITE defaults to /tmp/nli-site, the folder
# run_experiments.sh and bundle.py's `receive` use, so wheels installed for one serve all.
set -uo pipefail
SITE=${SITE:-/tmp/nli-site}
mkdir -p "$SITE/.wheels"
[ $# -gt 0 ] || set -- .whl .offline
new_wheels=()
while IFS= read -r -d '' wheel; do
  [ -f "$SITE/.wheels/$(basename "$wheel")" ] || new_wheels+=("$wheel")
done < <(find "$@" -name '*.whl' -type f -print0 2>/dev/null | sort -z)
if [ ${#new_wheels[@]} -gt 0 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "${new_wheels[@]}" || { echo "error: wheel install failed"; exit 1; }
  for wheel in "${new_wheels[@]}"; do touch "$SITE/.wheels/$(basename "$wheel")"; done
  touch "$SITE/.installed"
  echo "installed ${#new_wheels[@]} wheels into $SITE"
fi
