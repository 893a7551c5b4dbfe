#!/usr/bin/env bash
# The README's main command: on a fresh Debian machine, bring up the whole
# edgescope stack natively and run a short instrumented training into it:
#   - Prometheus (Debian's package) with the project's prometheus.yml and rules,
#   - the exporter (on a Jetson its real sources; elsewhere it replays a
#     recorded Jetson Nano tegrastats log as the power source, for the demo),
#   - a short training run of the reference experiment on a synthetic CIFAR-10.
# Then it prints where to look. Interactive: keeps the stack up until Ctrl-C.
# Otherwise (CI, pipes) it prints figures read back from Prometheus and stops.
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
[ -d "$DATA/cifar-10-batches-py" ] || \
    "$PY" -m trainer.datasets_cli cifar10 --out "$DATA" --train-images 2000 --test-images 200

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
    --dataset "$DATA" --pagecache-interval 5 >"$OUT/exporter.log" 2>&1 &
PIDS+=($!)

# --- Prometheus: the project's config, this machine as the one board ---------
# 2 s scrapes so that a minute-long demo run has data points; production is 15 s.
sed -e 's/^\(  scrape_interval:\).*/\1 2s/' -e 's/^\(  scrape_timeout:\).*/\1 2s/' \
    -e 's/^\(  evaluation_interval:\).*/\1 2s/' prometheus/prometheus.yml >"$OUT/prometheus/prometheus.yml"
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

# --- a short run of the reference experiment ------------------------------------
# The trainer reads the exporter's energy counter at each epoch's edges (energy_joules in results.jsonl).
"$PY" -m trainer.cli --data-dir "$DATA" --epochs 2 --max-batches 40 --device-name "$DEVICE" \
    --run-id "$RUN_ID" --metrics-port "$TRAINER_PORT" --metrics-addr 127.0.0.1 --linger 6 \
    --exporter-url "http://127.0.0.1:$EXPORTER_PORT/metrics" \
    --results "$OUT/results.jsonl" --metrics-textfile "$OUT/trainer.prom"
sleep 4  # the rules' last evaluation after the final scrape

echo
echo "quickstart: run $RUN_ID on device $DEVICE, the report read back from Prometheus ($PROM):"
"$PY" -m report.cli --prometheus "$PROM" --run "$RUN_ID" --warmup-epochs 1 --format table \
    --plots "$OUT/plots" || die "the report could not read run $RUN_ID back from $PROM"

[ -z "$REPLAYED" ] || echo "quickstart: its power and energy are a REPLAYED DEMO (a recorded Jetson Nano log), not this machine's"
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
  per-epoch results   $OUT/results.jsonl   (energy_joules: measured by the trainer at the epoch edges)
  report plots        $OUT/plots/*.png
  logs                $OUT/exporter.log, $OUT/prometheus.log
  dashboards          Grafana is not run natively: 'GF_ADMIN_PASSWORD=... docker compose up -d' on a
                      monitoring host (see README, Deployment) provisions them.
EOF
[ "$KEEP" = 1 ] || echo "  (the stack has stopped; EDGESCOPE_KEEP_RUNNING=1 keeps Prometheus and the exporter up to browse)"
if [ "$KEEP" = 1 ]; then
    echo "quickstart: the stack stays up; Ctrl-C stops it."
    wait
fi
