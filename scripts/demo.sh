#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: napari opens the C2C12 sample movie and
# segments it with the bundled demo model. Without a display it runs headless under a
# virtual display and writes labels, metrics and a screenshot to ./cellnet-demo/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${CELLNET_HEADLESS:-}" ]; then
  exec napari-cellnet demo "$@"
else
  echo "demo: no display found; running headless, outputs go to ./cellnet-demo/" >&2
  exec xvfb-run -a -s "-screen 0 1600x1200x24" napari-cellnet demo --headless -o cellnet-demo "$@"
fi
