#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every check CI runs: ruff, import-linter, mypy on the
# core, and the whole pytest suite under a virtual X display (napari needs OpenGL).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
echo "== ruff" >&2
ruff check src tests benchmarks scripts
echo "== import-linter" >&2
lint-imports
echo "== mypy" >&2
mypy
echo "== pytest" >&2
xvfb-run -a -s "-screen 0 1600x1200x24" python -m pytest "$@"
