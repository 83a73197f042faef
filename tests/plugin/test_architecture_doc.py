"""docs/architecture.md's package diagram is the one the code draws today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_architecture_diagram_is_up_to_date():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "architecture.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + "\nRun: python scripts/architecture.py and paste it into docs/architecture.md"
