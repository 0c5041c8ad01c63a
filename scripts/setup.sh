#!/usr/bin/env bash
# Set up (idempotently) a Python environment for genlab.
#
#   scripts/setup.sh ENV_DIR [EXTRAS]     e.g. scripts/setup.sh .venv test
#
# * ENV_DIR is created as a virtualenv if it does not exist. When the python3 on PATH
#   already has torch (say a CUDA build), the new env sees it (--system-site-packages)
#   so that torch is kept, never replaced.
# * When the env has no torch at all, the CPU build torch==2.13.0 is installed: first
#   from the local wheel cache (pip's find-links), else from PyTorch's CPU index. Set-up
#   never lets pip resolve a bare "torch" from PyPI, which would pull a multi-GB CUDA build.
# * genlab is installed in editable mode with the requested extras, with the present torch
#   pinned so that no dependency can replace it.
# * With the test extras, the browser of the end-to-end tests (Debian's chromium and chromium-driver)
#   is installed with apt-get when /usr/bin/chromium or /usr/bin/chromedriver is missing (as root, or
#   through passwordless sudo); if that cannot be done, a warning, and the browser tests skip.
# A stamp file skips the pip work when nothing changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR=${1:-.venv}
EXTRAS=${2:-}
PYTHON=${PYTHON:-python3}

if [ ! -x "$ENV_DIR/bin/python" ]; then
    if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
        echo "setup: $PYTHON already has torch $("$PYTHON" -c 'import torch; print(torch.__version__)'); creating $ENV_DIR on top of it"
        "$PYTHON" -m venv --system-site-packages "$ENV_DIR"
    else
        echo "setup: creating $ENV_DIR"
        "$PYTHON" -m venv "$ENV_DIR"
    fi
fi
PY="$ENV_DIR/bin/python"

# The browser of the end-to-end tests (tests/e2e): Debian's chromium and its driver, from apt-get only
# (never a downloaded browser build). Checked before the stamp, so a machine that gains root or apt later
# gets it; without it the browser tests skip with the reason and everything else runs.
if [[ ",$EXTRAS," == *,test,* ]] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
    browser_ok=0
    if command -v apt-get >/dev/null 2>&1; then
        as_root=()
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
                as_root=(sudo -n)
            else
                as_root=(false)
            fi
        fi
        if [ "${as_root[0]:-}" != false ]; then
            echo "setup: installing Debian's chromium and chromium-driver for the browser tests (apt-get)"
            apt_install() { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
            # an 'apt-get update' only when the install fails without it (a fresh image has no package lists)
            if apt_install 2>/dev/null \
                || { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && apt_install; }; then
                browser_ok=1
            fi
        fi
    fi
    if [ "$browser_ok" = 1 ] && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
        echo "setup: $(/usr/bin/chromium --version 2>/dev/null | head -n1) ready for the browser tests"
    else
        echo "setup: WARNING: /usr/bin/chromium and /usr/bin/chromedriver are missing and could not be installed" \
            "(needs apt-get as root or passwordless sudo): the browser tests in tests/e2e will be skipped;" \
            "install them with 'sudo apt-get install chromium chromium-driver'" >&2
    fi
fi
stamp="$ENV_DIR/.genlab-setup${EXTRAS:+-${EXTRAS//,/-}}"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/setup.sh ] && "$PY" -c "import genlab, torch" >/dev/null 2>&1; then
    exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
if "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "setup: keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    echo "setup: no torch found; installing the CPU build torch==2.13.0"
    # the wheel itself only from the local file or PyTorch's CPU index (never PyPI's CUDA build) ...
    "$PY" -m pip install --quiet --no-index --no-deps "torch==2.13.0" 2>/dev/null \
        || "$PY" -m pip install --quiet --no-deps "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
        || { echo "setup: could not install a CPU build of torch 2.13.0; install torch yourself (https://pytorch.org/get-started/locally/) into $ENV_DIR and run this again" >&2; exit 1; }
    # ... then its small pure-Python dependencies (typing_extensions, sympy, ...) from PyPI; the
    # installed CPU torch already satisfies the pin, so pip keeps it
    "$PY" -m pip install --quiet "torch==$("$PY" -m pip show torch | sed -n 's/^Version: //p')"
fi
echo "setup: installing genlab${EXTRAS:+[$EXTRAS]} into $ENV_DIR"
# pin the torch that is there now, so no extra (e.g. one that wants a newer torchvision) can swap it
pin=$(mktemp)
trap 'rm -f "$pin"' EXIT
"$PY" -c "import torch; print('torch==' + torch.__version__)" > "$pin"
"$PY" -m pip install --quiet -c "$pin" -e ".${EXTRAS:+[$EXTRAS]}"
"$PY" -c "import genlab, torch; print(f'setup: genlab {genlab.__version__} with torch {torch.__version__} ready')"
touch "$stamp"
