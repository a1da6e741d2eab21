"""Array helpers the storage layer and the appliance above it share."""

from __future__ import annotations

import numpy as np


def distinct_values(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)``, by sorting: numpy 2.4's hash-based ``unique`` (used when no
    inverse is asked for) is tens of times slower on millions of integers (~2x on 300,000
    visitor hashes of 100,000 visitors, ~8x on 6 million of 2 million)."""
    if len(values) < 2:
        return np.array(values, copy=True)
    ordered = np.sort(values)
    keep = np.empty(len(ordered), bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]
