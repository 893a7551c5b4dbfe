#!/usr/bin/env bash
# Makes every picture under docs/pictures/ from a real run of the project's own commands: it runs
# scripts/quickstart.sh (two short trainings, 1 and 2 loader workers, into a native Prometheus and
# exporter; then edgescope-report's plots and the 1-worker run's loader timeline) into a temporary
# directory and copies the PNGs it drew. Nothing is drawn by hand.
#
# Regenerate (about 2-3 minutes; needs what the quick start needs, which scripts/install-deps.sh installs):
#   bash scripts/make-pictures.sh          # then: git add docs/pictures && git commit
# The quick start's settings apply (EDGESCOPE_PROMETHEUS_PORT, EDGESCOPE_EXPORTER_PORT, EDGESCOPE_TRAINER_PORT,
# EDGESCOPE_DATA, EDGESCOPE_SKIP_INSTALL=1). Off a Jetson the power is the quick start's replayed demo log,
# which the pictures say (the Pareto front draws such runs as crosses, never as points to choose).
set -euo pipefail
cd "$(dirname "$0")/.."
PICTURES=docs/pictures
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

EDGESCOPE_OUT="$OUT" EDGESCOPE_KEEP_RUNNING=0 bash scripts/quickstart.sh </dev/null

mkdir -p "$PICTURES"
# file the quick start wrote -> name under docs/pictures/
PAIRS=("plots/time_split.png:time-split.png" "plots/pareto.png:pareto-front.png" "timeline-w1.png:loader-timeline.png")
for pair in "${PAIRS[@]}"; do  # every picture drawn before any is replaced: never half an old set, half a new one
    [ -s "$OUT/${pair%%:*}" ] || { echo "make-pictures: the quick start drew no ${pair%%:*}; nothing replaced" >&2; exit 1; }
done
for pair in "${PAIRS[@]}"; do  # each whole or not at all: a kill or a full disk leaves the old picture
    cp "$OUT/${pair%%:*}" "$PICTURES/.${pair#*:}.tmp"
    mv -f "$PICTURES/.${pair#*:}.tmp" "$PICTURES/${pair#*:}"
done
ls -l "$PICTURES"
