"""``lnpt sweep``: run every cell of a sweep, resumably, optionally in parallel.

Each cell is a normal run directory ``SWEEP_DIR/<cell name>/`` written by
:func:`lnpt.recipes.pipeline.run_pipeline`. Re-running a sweep is always safe and cheap:

* a cell with ``summary.json`` is finished and skipped;
* a cell folder without it was interrupted and is resumed (``resume=True``; decided when the
  cell starts, so a folder left by a killed sweep is resumed, never refused);
* a cell that raises is recorded in ``SWEEP_DIR/failures.json`` and the others go on; a later
  successful attempt removes its entry.

Cells run through a backend (:mod:`lnpt.experiments.execution`): in this process, in worker
processes (``jobs`` per device of ``devices``), or as Ray tasks (:mod:`.ray_backend`). Every
cell's settings and the execution are validated before the first cell runs. Each attempt at a
cell is one line of ``SWEEP_DIR/cells.jsonl``: status, device, worker, start and end.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..atomic import write_text
from ..config import settings_differences
from ..errors import ConfigError, LnptError
from ..pruning.student import validate
from ..run_folder import RunDirError, RunFolder
from ..teachers.guidance import wants_prefetch
from ..train.callbacks import progress_mode
from . import ray_backend  # noqa: F401  (registers the "ray" backend; Ray itself is imported on use)
from .execution import BACKENDS, CellOutcome, Execution, Runner, Task, default_runner
from .grid import Cell, SweepSpec

FAILURES_FILE = "failures.json"
SWEEP_FILE = "sweep.json"
CELL_LOG = "cells.jsonl"


@dataclass
class SweepResult:
    outcomes: list[CellOutcome]

    def names(self, status: str) -> list[str]:
        return [o.name for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[str]:
        return self.names("failed")


def _config_mismatch(cell: Cell, cell_dir: Path) -> str | None:
    """A finished or partial cell folder written under other settings must not be mistaken for
    this cell (e.g. after the base of the sweep file changed): name the first differing key.
    Operational settings (teacher store, timeouts, prefetch) may differ."""
    try:
        saved = RunFolder(cell_dir).saved_config()
    except RunDirError:
        return None
    if saved is None:
        return None
    changed = settings_differences(saved, cell.config)
    if not changed:
        return None
    section, _, key = changed[0].partition(".")
    have = saved.get(section, {}).get(key) if key else saved.get(section)
    want = getattr(getattr(cell.config, section), key) if key else getattr(cell.config, section)
    return f"{changed[0]}: folder has {have!r}, sweep wants {want!r}"


def validate_cells(cells: list[Cell]) -> None:
    """Run the checks every cell's run would make first (pruning settings, prefetch), on every
    cell before the first one starts: a value out of range in the grid (``sparsity: [0.9,
    1.5]``) is found now, not after the other cells have run for hours. Nothing is trained."""
    for cell in cells:
        try:
            validate(cell.config.pruning)
            wants_prefetch(cell.config.teacher.teacher_prefetch, None)
        except (LnptError, ValueError) as exc:
            raise ConfigError(f"sweep cell {cell.name} is invalid: {exc}; fix the sweep file "
                              "(no cell was run)") from None


class _Failures:
    """SWEEP_DIR/failures.json, rewritten atomically after each change."""

    def __init__(self, sweep_dir: Path) -> None:
        self.path = sweep_dir / FAILURES_FILE
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def record(self, o: CellOutcome) -> None:
        self.data[o.name] = {"error": o.error, "traceback": o.traceback, "seconds": round(o.seconds, 3),
                             "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._write()

    def clear(self, name: str) -> None:
        if self.data.pop(name, None) is not None:
            self._write()

    def _write(self) -> None:
        if self.data:
            write_text(self.path, json.dumps(self.data, indent=2) + "\n")
        else:
            self.path.unlink(missing_ok=True)


class _CellLog:
    """SWEEP_DIR/cells.jsonl: one line per attempt at a cell (which cell, how it ended, where
    and when it ran), rewritten atomically after each. Operational: reports read run folders,
    not this; it says which device or worker ran what, e.g. to find a bad GPU."""

    def __init__(self, sweep_dir: Path, backend: str) -> None:
        self.path = sweep_dir / CELL_LOG
        self.backend = backend
        self.text = self.path.read_text() if self.path.is_file() else ""

    def record(self, o: CellOutcome, resumed: bool) -> None:
        line = {"cell": o.name, "status": o.status, "resumed": resumed, "backend": self.backend, "device": o.device,
                "slot": o.slot, "worker": o.worker, "started": o.started, "ended": o.ended,
                "seconds": round(o.seconds, 3)}
        self.text += json.dumps(line) + "\n"
        write_text(self.path, self.text)


def run_sweep(spec: SweepSpec, sweep_dir: str | Path, jobs: int = 1, runner: Runner | None = None,
              progress: bool = True, log: Callable[[str], None] | None = None,
              execution: Execution | None = None) -> SweepResult:
    """Run all cells of ``spec`` into ``sweep_dir``; see the module docstring for the rules.

    ``execution`` says where cells run (default: the local backend with ``jobs`` processes);
    ``jobs`` is a shorthand for ``Execution(jobs=jobs)``. ``runner`` defaults to the real
    pipeline; tests inject a fake that writes run files. Outside this process it must be
    picklable (a module-level function). Each finished cell is one line through ``log``
    (default: printed); ``progress`` adds a bar when stderr is a terminal.
    """
    sweep_dir = Path(sweep_dir)
    cells = spec.cells()
    execution = (execution or Execution(jobs=jobs)).checked(cells)
    say = log or tqdm.write
    validate_cells(cells)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text(sweep_dir / SWEEP_FILE, json.dumps({**spec.to_dict(), "cells": [c.name for c in cells]}, indent=2) + "\n")
    failures, cell_log = _Failures(sweep_dir), _CellLog(sweep_dir, execution.backend)
    outcomes, todo = _triage(cells, sweep_dir, failures)
    total = len(cells)
    bar = tqdm(total=total, initial=total - len(todo), desc="sweep", unit="cell", disable=progress_mode(progress, sys.stderr) != "bar")
    if total - len(todo):
        say(f"{total - len(todo)} of {total} cell(s) already finished or blocked; {len(todo)} to run")

    counter = [total - len(todo)]  # a disabled tqdm does not count, so count here

    def finish(o: CellOutcome, resumed: bool) -> None:
        outcomes.append(o)
        bar.update(1)
        counter[0] += 1
        n = counter[0]
        cell_log.record(o, resumed)
        if o.status == "done":
            failures.clear(o.name)
            acc = o.summary.get("final_acc")
            acc_text = f"final_acc {acc:.4f}" if isinstance(acc, (int, float)) else "done"
            say(f"[{n}/{total}] {o.name}: {acc_text} ({o.seconds:.1f}s{', resumed' if resumed else ''}"
                f"{', ' + o.device if execution.devices else ''})")
        else:
            failures.record(o)
            say(f"[{n}/{total}] {o.name}: FAILED {o.error} (see {failures.path})")

    try:
        tasks = [Task(cell, sweep_dir / cell.name, resume) for cell, resume in todo]
        BACKENDS.get(execution.backend)(tasks, runner or default_runner, execution, finish)
    finally:
        bar.close()
    order = {c.name: i for i, c in enumerate(cells)}
    return SweepResult(sorted(outcomes, key=lambda o: order[o.name]))


def _triage(cells: list[Cell], sweep_dir: Path,
            failures: "_Failures") -> tuple[list[CellOutcome], list[tuple[Cell, bool]]]:
    """Sort cells into those already settled (finished, or blocked by a folder another
    configuration wrote) and those to run, each with whether it resumes a started folder."""
    outcomes: list[CellOutcome] = []
    todo: list[tuple[Cell, bool]] = []
    for cell in cells:
        cell_dir = sweep_dir / cell.name
        mismatch = _config_mismatch(cell, cell_dir)
        if mismatch:
            o = CellOutcome(cell.name, "failed", error=f"{cell_dir} was written by other settings ({mismatch}); "
                            "move it away or use another sweep folder")
            failures.record(o)
            outcomes.append(o)
        elif RunFolder(cell_dir).finished:
            outcomes.append(CellOutcome(cell.name, "skipped"))
            failures.clear(cell.name)
        else:
            todo.append((cell, cell_dir.is_dir()))
    return outcomes, todo
