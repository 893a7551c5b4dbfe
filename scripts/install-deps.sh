#!/usr/bin/env bash
# Installs everything edgescope's tests and its native quick start need on a
# Debian machine (x86_64 workstation or CI). Idempotent: skips what is there.
# NOT for a Jetson: there, follow the README's "On a Jetson" section so that
# NVIDIA's CUDA torch is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(prometheus prometheus-alertmanager victoria-metrics sysstat vmtouch docker-compose systemd faketime chromium fonts-dejavu-core texlive-latex-base texlive-latex-recommended)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
    echo "install-deps: pip install torch==2.14.1 torchvision==0.29.1"
    "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
echo "install-deps: pip install -e .[train,exporter,report,dev]"
"$PY" -m pip install -q -e ".[train,exporter,report,dev]"
