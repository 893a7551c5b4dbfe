#!/usr/bin/env bash
# Installs everything edgescope's tests and its native quick start need on a
# Debian machine (x86_64 workstation or CI): Debian's tools through apt, and
# the Python side into a project-local virtual environment, .venv, so that it
# works with Debian's own python3 (externally managed, PEP 668) as well as a
# pyenv one. Idempotent: a second run checks and skips (seconds).
# Root is needed only for apt; without root, it says which packages are
# missing and the exact command to install them.
# PYTHON=/path/to/python3 picks the interpreter the venv is made from.
# NOT for a Jetson: there, follow docs/jetson.md ("On a Jetson") so that
# NVIDIA's CUDA torch is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(prometheus prometheus-alertmanager prometheus-node-exporter victoria-metrics sysstat vmtouch docker-compose systemd faketime shellcheck libfuse2 chromium fonts-dejavu-core texlive-latex-base texlive-latex-recommended)
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
EXTRAS=".[train,exporter,report,docs,dev]"
BASE=${PYTHON:-python3}
VENV=.venv
VPY=$VENV/bin/python
STAMP=$VENV/edgescope-installed   # what the last complete install was made from

say() { echo "install-deps: $*"; }

# Installs Debian packages as root; otherwise prints the exact command and exits 2.
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        say "missing Debian packages: $*; apt needs root: run 'sudo apt-get update && sudo apt-get install -y --no-install-recommends $*', then run this script again"
        exit 2
    fi
    say "apt-get install $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
    deb_installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
elif [ "$(id -u)" -ne 0 ]; then
    say "not root: skipping apt, the Debian packages are all present"
fi

command -v "$BASE" >/dev/null || { say "no Python interpreter '$BASE'; set PYTHON=/path/to/python3 (3.8 or newer)"; exit 2; }
# A venv is tied to its base interpreter: an explicit PYTHON other than the venv's makes a new one.
base_id() { "$1" -c 'import sys; print(sys.base_prefix, "%d.%d" % sys.version_info[:2])'; }
if [ -e "$VENV" ] && ! "$VPY" -c '' 2>/dev/null; then
    say "$VENV exists but $VPY does not run (its base Python moved, or this user cannot read it); remove $VENV and run this again"
    exit 2
fi
if [ -n "${PYTHON:-}" ] && [ -e "$VENV" ] && [ "$(base_id "$VPY")" != "$(base_id "$BASE")" ]; then
    say "$VENV was made from another Python than $BASE; making it again"
    rm -rf "$VENV"
fi
if [ ! -e "$VENV" ]; then
    say "python -m venv $VENV (from $("$BASE" -c 'import sys; print(sys.executable)'))"
    if ! "$BASE" -m venv "$VENV" >/dev/null 2>&1; then
        # Debian's python3 ships venv's pip support in a separate package.
        rm -rf "$VENV"
        deb_installed python3-venv || apt_install python3-venv
        "$BASE" -m venv "$VENV"   # again; if it still fails, its own error says why
    fi
fi

# Reinstalls only when pyproject.toml or the torch pins changed since the last complete install.
want="$(sha256sum pyproject.toml | cut -d' ' -f1) ${TORCH_PINS[*]} $EXTRAS"
# (Package metadata, not imports: importing torch alone takes seconds.)
installed=$("$VPY" -c "import importlib.metadata as m; print(*(m.version(p) for p in ('torch', 'torchvision', 'edgescope')))" 2>/dev/null || true)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -n "$installed" ]; then
    say "$VENV is up to date (torch, torchvision, edgescope: $installed)"
    exit 0
fi
rm -f "$STAMP"
pip=("$VPY" -m pip install -q --disable-pip-version-check)
say "pip install ${TORCH_PINS[*]} into $VENV (a few minutes and about 5.5 GB the first time)"
if ! "${pip[@]}" "${TORCH_PINS[@]}"; then
    say "pip could not install ${TORCH_PINS[*]} for $("$VPY" --version) (no wheel for it on the indexes pip reads?); set PYTHON to a Python they have wheels for"
    exit 2
fi
say "pip install -e $EXTRAS into $VENV"
"${pip[@]}" -e "$EXTRAS"
echo "$want" >"$STAMP"
say "done: use $VPY (or 'source $VENV/bin/activate')"
