"""One order of a batch in numeric form: its lines and its candidate nodes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class Order:
    skus: list[str]
    sku_ids: np.ndarray  # (L,) global sku index
    qty: np.ndarray  # (L,) int64
    cand: np.ndarray  # (C,) node indices, ascending
    dist: np.ndarray  # (C,)
    fixed: np.ndarray  # (C,)
    unit: np.ndarray  # (C,)
    full: list[int]  # node indices that held every line in full at the start, cheapest first
    max_shipments: int | None
