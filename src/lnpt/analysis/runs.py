"""Reading run directories written by ``lnpt run`` (and each cell of ``lnpt sweep``).

A run directory (:class:`lnpt.run_folder.RunFolder`) holds ``config.json`` (the RunConfig as
nested sections), ``metrics.jsonl`` (one record per epoch), ``prune_report.json``,
``summary.json`` and ``final.pt``. Analysis only needs the JSON files, so it never imports
torch and works on a copy of the folders without checkpoints.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..run_folder import RunDirError, RunFolder, read_json


@dataclass
class Run:
    """One run directory, parsed. ``history`` is the list of per-epoch records in order."""

    path: Path
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict | None = None
    prune_report: dict | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def setting(self, key: str, default: object = None) -> object:
        """A flat setting (``"criterion"``, ``"seed"``) from whichever config section holds it."""
        if key in self.config and not isinstance(self.config[key], dict):
            return self.config[key]
        for section in self.config.values():
            if isinstance(section, dict) and key in section:
                return section[key]
        return default

    def epochs(self) -> np.ndarray:
        return np.array([r.get("epoch", i + 1) for i, r in enumerate(self.history)], dtype=float)

    def series(self, key: str) -> np.ndarray:
        """Per-epoch values of ``key``; NaN where an epoch did not log it (``eval_every`` > 1)."""
        return np.array([_as_float(r.get(key)) for r in self.history], dtype=float)

    def final(self, key: str) -> float:
        """The last logged finite value of ``key`` (the final evaluation), else NaN."""
        values = self.series(key)
        finite = values[np.isfinite(values)]
        return float(finite[-1]) if len(finite) else float("nan")

    def at_epoch(self, key: str, epoch: int) -> float:
        """The value of ``key`` logged at ``epoch`` (1-based, as in metrics.jsonl), else NaN."""
        for i, r in enumerate(self.history):
            if r.get("epoch", i + 1) == epoch:
                return _as_float(r.get(key))
        return float("nan")


def _as_float(v: object) -> float:
    if v is None or isinstance(v, bool):
        return float("nan")
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def prune_layers(report: dict | None) -> dict[str, dict]:
    """Per-layer mask statistics of a prune report as ``{name: {kept, total, kept_fraction}}``.

    Accepts both layouts in use: a mapping keyed by parameter name (with ``total``) and the
    list of ``{"name", "size", "kept", "kept_fraction"}`` that :mod:`lnpt.pruning.report` writes.
    """
    layers = (report or {}).get("layers") or {}
    items = layers.items() if isinstance(layers, dict) else \
        ((x.get("name"), x) for x in layers if isinstance(x, dict))
    out = {}
    for name, x in items:
        if not isinstance(x, dict) or name is None:
            continue
        kept, total = x.get("kept"), x.get("total", x.get("size"))
        frac = x.get("kept_fraction")
        if not isinstance(frac, (int, float)):
            frac = kept / total if isinstance(kept, (int, float)) and total else float("nan")
        out[str(name)] = {"kept": kept, "total": total, "kept_fraction": float(frac)}
    return out


def read_metrics(path: Path) -> list[dict]:
    """Parse metrics.jsonl. A malformed *last* line (a run killed mid-append) is dropped;
    a malformed line elsewhere is an error naming the file and line."""
    lines = [(i + 1, s) for i, s in enumerate(path.read_text().splitlines()) if s.strip()]
    records = []
    for k, (lineno, text) in enumerate(lines):
        try:
            record = json.loads(text)
        except ValueError as exc:
            if k == len(lines) - 1:
                break
            raise RunDirError(f"cannot parse {path} line {lineno}: {exc}") from None
        if not isinstance(record, dict):
            raise RunDirError(f"{path} line {lineno} must hold a JSON object")
        records.append(record)
    return records


def load_run(path: str | Path) -> Run:
    """Read one run directory; it must have a metrics.jsonl, the other files are optional."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory {path} does not exist")
    run = RunFolder(path)
    if not run.is_run:
        hint = ""
        if any(RunFolder(p).is_run for p in path.iterdir() if p.is_dir()):
            hint = f"; it holds run directories (a sweep?): pass them instead, e.g. {path}/*"
        raise RunDirError(f"run directory {path} has no {RunFolder.METRICS} (is it an `lnpt run` output folder?)"
                          f"{hint}")
    return Run(path=path, config=run.saved_config() or {}, history=read_metrics(run.metrics),
               summary=run.saved_summary(), prune_report=read_json(run.prune_report))


def load_runs(paths: list[str | Path], expand_sweeps: bool = False) -> list[Run]:
    """Read several run directories. With ``expand_sweeps``, a folder that is not a run but
    holds runs (a sweep directory) stands for all of them, in name order."""
    if not paths:
        raise RunDirError("no run directories given")
    dirs: list[Path] = []
    for p in map(Path, paths):
        cells = sorted(c for c in p.iterdir() if RunFolder(c).is_run) \
            if expand_sweeps and p.is_dir() and not RunFolder(p).is_run else []
        dirs += cells or [p]
    return [load_run(p) for p in dirs]


def run_labels(runs: list[Run]) -> list[str]:
    """Short legend labels: the settings that differ between runs ("criterion=snip, seed=1"),
    falling back to folder names when the configs do not tell the runs apart."""
    flat = [flatten_config(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f})
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]
    labels = [", ".join(f"{k}={_fmt(f.get(k))}" for k in varying) for f in flat]
    if len(runs) > 1 and all(labels) and len(set(labels)) == len(labels):
        return labels
    names = [r.name for r in runs]
    return names if len(set(names)) == len(names) else [str(r.path) for r in runs]


def flatten_config(config: dict) -> dict:
    """A nested config.json as one flat mapping (field names are unique across sections)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(v)
        else:
            out[k] = v
    return out


def _fmt(v: object) -> str:
    if isinstance(v, float) and not math.isnan(v):
        return f"{v:g}"
    return str(v)
