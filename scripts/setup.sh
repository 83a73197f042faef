#!/usr/bin/env bash
# Set up everything napari-cellnet needs on a fresh Debian/Ubuntu machine, idempotently:
# the virtual display + OpenGL libraries napari's canvas needs, a virtual environment in
# .venv, torch (CPU build 2.13.0 unless CELLNET_TORCH says otherwise) and the package with
# its test tools. Sourced by scripts/test.sh and scripts/demo.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CELLNET_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

apt_packages=(xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0
  libxcb-cursor0 libdbus-1-3 libfontconfig1 libglib2.0-0)
if command -v dpkg >/dev/null 2>&1; then
  missing=()
  for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.cellnet-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing torch ${CELLNET_TORCH:-2.13.0} and napari-cellnet[testing] into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned: a bare 'torch' requirement would pull a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q "torch==${CELLNET_TORCH:-2.13.0}"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[testing]"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
