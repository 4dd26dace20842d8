"""Experiments: sweeps over settings (``lnpt sweep``) and their reports (``lnpt report``,
in :mod:`lnpt.experiments.report`, not imported here so sweep workers stay light)."""
from .grid import Cell, SweepSpec, cell_name, expand, load_sweep, sweep_from_dict
from .sweep import SweepResult, run_sweep

__all__ = ["Cell", "SweepSpec", "SweepResult", "cell_name", "expand", "load_sweep", "run_sweep",
           "sweep_from_dict"]
