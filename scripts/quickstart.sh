#!/usr/bin/env bash
# The README's main command: on a fresh Debian machine, install what is needed,
# make a synthetic CIFAR-10 (no downloads) and run a short instrumented
# training of the reference experiment on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
DATA=${EDGESCOPE_DATA:-data}
edgescope-dataset cifar10 --out "$DATA" --train-images 2000 --test-images 200
edgescope-train --data-dir "$DATA" --epochs 2 --max-batches 40 --linger 0 \
    --results out/quickstart-results.jsonl --metrics-textfile out/quickstart.prom
