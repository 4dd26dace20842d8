"""lnpt: label-free network pruning and training (LNPT, arXiv 2403.12690)."""
from __future__ import annotations

__version__ = "0.1.0"
