#!/usr/bin/env bash
# The README's main command: on a fresh Debian machine, bring up the whole
# edgescope stack natively and run two short instrumented trainings into it:
#   - Prometheus (Debian's package) with the project's prometheus.yml and rules,
#   - the exporter (on a Jetson its real sources; elsewhere it replays a
#     recorded Jetson Nano tegrastats log as the power source, for the demo),
#   - two configurations of one small training on a synthetic JPEG folder that
#     differ in one knob that matters on any machine: 1 and then 2 DataLoader
#     workers decoding the JPEGs (4 epochs each: 3 kept, so every figure and
#     prediction has a spread).
# Then it prints the report read back from Prometheus (per-epoch table, the
# diagnosis and what-ifs, each checked against the other configuration where
# it measured the change, the comparison and the Pareto front), writes one
# self-contained html page, the loader timeline (PNG and Chrome trace), and
# says where to open each file. Interactive: keeps the stack up until Ctrl-C.
# Otherwise (CI, pipes) it stops after printing.
#
# Settings (environment): EDGESCOPE_DATA (data), EDGESCOPE_OUT (out/quickstart),
# EDGESCOPE_PROMETHEUS_PORT (9090), EDGESCOPE_EXPORTER_PORT (9945),
# EDGESCOPE_TRAINER_PORT (9946), EDGESCOPE_KEEP_RUNNING (1 on a terminal, else 0),
# EDGESCOPE_SKIP_INSTALL=1 to skip scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

DATA=${EDGESCOPE_DATA:-data}
OUT=${EDGESCOPE_OUT:-out/quickstart}
PROM_PORT=${EDGESCOPE_PROMETHEUS_PORT:-9090}
EXPORTER_PORT=${EDGESCOPE_EXPORTER_PORT:-9945}
TRAINER_PORT=${EDGESCOPE_TRAINER_PORT:-9946}
if [ -t 0 ]; then KEEP=${EDGESCOPE_KEEP_RUNNING:-1}; else KEEP=${EDGESCOPE_KEEP_RUNNING:-0}; fi
DEVICE=$(hostname -s 2>/dev/null || echo local)
RUN_ID="quickstart-$(date +%Y%m%dT%H%M%S)"

die() { echo "quickstart: $*" >&2; exit 1; }

[ "${EDGESCOPE_SKIP_INSTALL:-0}" = 1 ] || bash scripts/install-deps.sh
PY=$REPO/.venv/bin/python   # scripts/install-deps.sh installs everything into it
[ -x "$PY" ] || die "$PY not found; run 'bash scripts/install-deps.sh' (it makes the project's .venv)"
command -v prometheus >/dev/null || die "prometheus not found; install the Debian package 'prometheus' (scripts/install-deps.sh does)"

for spec in "$PROM_PORT:EDGESCOPE_PROMETHEUS_PORT" "$EXPORTER_PORT:EDGESCOPE_EXPORTER_PORT" \
            "$TRAINER_PORT:EDGESCOPE_TRAINER_PORT"; do
    port=${spec%%:*}; var=${spec#*:}
    "$PY" -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" \
        2>/dev/null || die "port $port is in use; set $var to a free port"
done

mkdir -p "$OUT/prometheus/targets"
# 320 JPEGs of 800 x 800 px cropped to 32 px: decoding them is more work than one loader worker can hide behind a
# small model's steps, and about what two can.
IMAGES=$DATA/quickstart-jpeg-800
[ -d "$IMAGES/class_09" ] || \
    "$PY" -m trainer.datasets_cli imagefolder --out "$IMAGES" --images 320 --image-size 800

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- exporter ---------------------------------------------------------------
POWER=(--power-source auto)
REPLAYED=""
if ! command -v tegrastats >/dev/null && [ ! -S /run/jtop.sock ]; then
    REPLAYED=1
    echo "quickstart: not a Jetson: the exporter replays exporter/demo/tegrastats_nano_warming.log as its power source (demo figures)"
    POWER=(--power-source tegrastats --tegrastats-file exporter/demo/tegrastats_nano_warming.log)
fi
"$PY" -m exporter.cli --web.listen-address "127.0.0.1:$EXPORTER_PORT" "${POWER[@]}" \
    --dataset "$IMAGES" --pagecache-interval 5 >"$OUT/exporter.log" 2>&1 &
PIDS+=($!)

# --- Prometheus: the project's config, this machine as the one board ---------
# 2 s scrapes so that a minute-long demo run has data points; production is 15 s. No job edgescope-powermode:
# nothing serves the power-mode textfile here (the compose stack's node-exporter does), it would be down for good.
sed -e 's/^\(  scrape_interval:\).*/\1 2s/' -e 's/^\(  scrape_timeout:\).*/\1 2s/' \
    -e 's/^\(  evaluation_interval:\).*/\1 2s/' prometheus/prometheus.yml \
    | awk '/^  - job_name:/ { skip = ($3 == "edgescope-powermode") } /^[^ #]/ { skip = 0 } !skip' \
    >"$OUT/prometheus/prometheus.yml"
grep -q '^  scrape_interval: 2s' "$OUT/prometheus/prometheus.yml" || die "could not set the scrape interval in $OUT/prometheus/prometheus.yml"
ln -sfn "$REPO/prometheus/rules" "$OUT/prometheus/rules"
cat >"$OUT/prometheus/targets/local.yml" <<EOF
- targets: [127.0.0.1]
  labels:
    device: $DEVICE
    device_type: ${EDGESCOPE_DEVICE_TYPE:-workstation}
    storage: ${EDGESCOPE_STORAGE:-ssd}
    __exporter_port__: "$EXPORTER_PORT"
    __trainer_port__: "$TRAINER_PORT"
EOF
prometheus --config.file="$OUT/prometheus/prometheus.yml" --storage.tsdb.path="$OUT/prometheus/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$OUT/prometheus.log" 2>&1 &
PIDS+=($!)
PROM="http://127.0.0.1:$PROM_PORT"
for _ in $(seq 60); do
    "$PY" -c 'import sys,requests; requests.get(sys.argv[1], timeout=1).raise_for_status()' \
        "$PROM/-/ready" 2>/dev/null && break
    kill -0 "${PIDS[1]}" 2>/dev/null || die "prometheus exited; see $OUT/prometheus.log"
    sleep 0.5
done
kill -0 "${PIDS[0]}" 2>/dev/null || die "the exporter exited; see $OUT/exporter.log"
# Prometheus scrapes a few seconds after it is ready: epoch 0's energy needs exporter samples before it starts.
for _ in $(seq 60); do
    "$PY" -c 'import sys,requests; r=requests.get(sys.argv[1]+"/api/v1/query", params={"query": "edgescope_source_up"}, timeout=1); sys.exit(not r.json()["data"]["result"])' \
        "$PROM" 2>/dev/null && break
    sleep 0.5
done

# --- two configurations: 1 and 2 loader workers ----------------------------------
# The trainer reads the exporter's energy counter at each epoch's edges (energy_joules in results-*.jsonl), writes
# each epoch's loader timeline (what its what-ifs replay) and lingers until Prometheus has scraped its last epoch.
# One torch thread for the steps (as bench/whatif_accuracy.py): the loader workers have the other cores.
RUNS=()
for workers in 1 2; do
    run="$RUN_ID-w$workers"
    RUNS+=(--run "$run")
    echo
    echo "quickstart: run $run: mobilenet_v3_small on the JPEG folder, $workers loader worker(s), 4 epochs"
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m trainer.cli --dataset imagefolder --data-dir "$IMAGES" --image-size 32 --model mobilenet_v3_small \
        --workers "$workers" --epochs 4 --max-batches 20 --device-name "$DEVICE" \
        --run-id "$run" --metrics-port "$TRAINER_PORT" --metrics-addr 127.0.0.1 --linger 6 \
        --exporter-url "http://127.0.0.1:$EXPORTER_PORT/metrics" --timeline-dir "$OUT/timelines" \
        --results "$OUT/results-w$workers.jsonl" --metrics-textfile "$OUT/trainer-w$workers.prom"
done
sleep 4  # the rules' last evaluation after the final scrape

echo
echo "quickstart: the report of runs $RUN_ID-w1 and -w2 on device $DEVICE, read back from Prometheus ($PROM):"
REPORT=("$PY" -m report.cli --prometheus "$PROM" "${RUNS[@]}" --warmup-epochs 1 --pareto
        --timeline-dir "$OUT/timelines")
"${REPORT[@]}" --format table --plots "$OUT/plots" 2>"$OUT/report.log" || {
    cat "$OUT/report.log" >&2; die "the report could not read runs $RUN_ID-w1 and -w2 back from $PROM"; }
"${REPORT[@]}" --format html --output "$OUT/report.html" 2>>"$OUT/report.log" || die "see $OUT/report.log"
"$PY" -m report.cli --timeline "$RUN_ID-w1" --timeline-dir "$OUT/timelines" --output "$OUT/timeline-w1.png" \
    2>>"$OUT/report.log" || die "see $OUT/report.log"

[ -z "$REPLAYED" ] || echo "quickstart: power and energy above are a REPLAYED DEMO (a recorded Jetson Nano log), not this" \
    "machine's: the Pareto front never recommends from them"
echo
echo "Where to look:"
if [ "$KEEP" = 1 ]; then  # the stack is still up: its URLs work until Ctrl-C
    cat <<EOF
  Prometheus          $PROM/graph            (try: run_epoch:edgescope_board_energy_joules:increase_in_epoch)
  its targets         $PROM/targets
  alerts              $PROM/alerts
  exporter metrics    http://127.0.0.1:$EXPORTER_PORT/metrics
EOF
fi
cat <<EOF
  the whole report    $OUT/report.html   (one self-contained page, all of the above and the plots: open it in a browser)
  loader timeline     $OUT/timeline-w1.png   (run -w1's last epoch: each worker's reads and decodes, each step)
  its Chrome trace    $OUT/timeline-w1.trace.json   (open it in https://ui.perfetto.dev or chrome://tracing)
  report plots        $OUT/plots/*.png
  per-epoch results   $OUT/results-w1.jsonl, $OUT/results-w2.jsonl   (every figure of every epoch)
  logs                $OUT/exporter.log, $OUT/prometheus.log, $OUT/report.log
  dashboards          Grafana is not run natively: 'GF_ADMIN_PASSWORD=... docker compose up -d' on a
                      monitoring host (see docs/deployment.md) provisions them.
EOF
[ "$KEEP" = 1 ] || echo "  (the stack has stopped; EDGESCOPE_KEEP_RUNNING=1 keeps Prometheus and the exporter up to browse)"
if [ "$KEEP" = 1 ]; then
    echo "quickstart: the stack stays up; Ctrl-C stops it."
    wait
fi
