"""Quality measures, numpy only: pixel, instance (Cell Tracking Challenge SEG, AP/F1) and
classification metrics.

Every function takes plain arrays and returns plain floats or dicts, so the CLI, the
training loops, the Evaluate widget and the benchmarks report the same numbers.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------
# Pixel and instance metrics (segmentation)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Classification metrics
# ---------------------------------------------------------------------------
