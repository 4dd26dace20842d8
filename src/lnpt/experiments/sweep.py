"""``lnpt sweep``: run every cell of a sweep, resumably, optionally in parallel.

Each cell is a normal run directory ``SWEEP_DIR/<cell name>/`` written by
:func:`lnpt.recipes.pipeline.run_pipeline`. Re-running a sweep is always safe and cheap:

* a cell with ``summary.json`` is finished and skipped;
* a cell folder without it was interrupted and is resumed (``resume=True``; decided when the
  cell starts, so a folder left by a killed sweep is resumed, never refused);
* a cell that raises is recorded in ``SWEEP_DIR/failures.json`` and the others go on; a later
  successful attempt removes its entry.

With ``jobs > 1`` cells run in separate processes (spawn: a clean interpreter, no forked torch
state), each limited to one torch thread so N jobs use N cores instead of fighting over them.
Workers die with the sweep, however it ends (SIGKILL of the sweep included: see
:func:`_die_with_parent`). Every cell's settings are validated before the first cell runs.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..atomic import write_text
from ..config import RunConfig, settings_differences
from ..errors import ConfigError, LnptError
from ..pruning.student import validate
from ..recipes.pipeline import run_pipeline
from ..run_folder import RunDirError, RunFolder
from ..teachers.guidance import wants_prefetch
from ..train.callbacks import progress_mode
from .grid import Cell, SweepSpec

FAILURES_FILE = "failures.json"
SWEEP_FILE = "sweep.json"
Runner = Callable[..., dict]  # runner(cfg, out, resume=..., progress=...) -> summary dict
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_CHECK_SECONDS = 1.0


def default_runner(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """:func:`lnpt.recipes.pipeline.run_pipeline`, imported late (and picklable for worker processes)."""

    return run_pipeline(cfg, out, resume=resume, progress=progress)


@dataclass
class CellOutcome:
    name: str
    status: str  # "done" | "skipped" | "failed"
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    error: str = ""
    traceback: str = ""


@dataclass
class SweepResult:
    outcomes: list[CellOutcome]

    def names(self, status: str) -> list[str]:
        return [o.name for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[str]:
        return self.names("failed")


def _init_worker(parent: int) -> None:
    """Runs first in every worker process: one torch thread, and the worker's life tied to the
    sweep's. A sweep that is killed (any signal, SIGKILL included) must not leave workers that
    finish their cells and start new ones next to a rerun."""
    torch.set_num_threads(1)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``). Everywhere:
    a daemon thread checks once a second that the parent is still ours, which also covers a
    parent that died before the first line of this worker ran."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no usable libc: the watcher below still works
            pass
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="lnpt-sweep-parent").start()


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(1)  # orphaned: the sweep is gone, stop now rather than after the cell


def _run_cell(runner: Runner, name: str, cfg: RunConfig, out: Path, resume: bool) -> CellOutcome:
    """Run one cell and turn any exception into a recorded failure (also in worker processes,
    where an exception would otherwise only surface as a pickled traceback)."""
    t0 = time.perf_counter()
    resume = resume or out.is_dir()  # decided now: a folder may have appeared since the sweep planned
    try:
        summary = runner(cfg, out, resume=resume, progress=False)
    except Exception as exc:  # noqa: BLE001  (a cell's failure must not stop the sweep)
        return CellOutcome(name, "failed", time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc())
    if not RunFolder(out).finished:
        return CellOutcome(name, "failed", time.perf_counter() - t0,
                           error=f"the runner returned without writing {RunFolder(out).summary}")
    return CellOutcome(name, "done", time.perf_counter() - t0, summary=dict(summary or {}))


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


def run_sweep(spec: SweepSpec, sweep_dir: str | Path, jobs: int = 1, runner: Runner | None = None,
              progress: bool = True, log: Callable[[str], None] | None = None) -> SweepResult:
    """Run all cells of ``spec`` into ``sweep_dir``; see the module docstring for the rules.

    ``runner`` defaults to the real pipeline; tests inject a fake that writes run files. With
    ``jobs > 1`` it must be picklable (a module-level function). Each finished cell is one line
    through ``log`` (default: printed); ``progress`` adds a bar when stderr is a terminal.
    """
    sweep_dir = Path(sweep_dir)
    runner = runner or default_runner
    say = log or tqdm.write
    cells = spec.cells()
    validate_cells(cells)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text(sweep_dir / SWEEP_FILE, json.dumps({**spec.to_dict(), "cells": [c.name for c in cells]}, indent=2) + "\n")
    failures = _Failures(sweep_dir)
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
        if o.status == "done":
            failures.clear(o.name)
            acc = o.summary.get("final_acc")
            acc_text = f"final_acc {acc:.4f}" if isinstance(acc, (int, float)) else "done"
            say(f"[{n}/{total}] {o.name}: {acc_text} ({o.seconds:.1f}s{', resumed' if resumed else ''})")
        else:
            failures.record(o)
            say(f"[{n}/{total}] {o.name}: FAILED {o.error} (see {failures.path})")

    try:
        if jobs <= 1:
            for cell, resume in todo:
                finish(_run_cell(runner, cell.name, cell.config, sweep_dir / cell.name, resume), resume)
        else:
            _run_parallel(todo, sweep_dir, jobs, runner, finish)
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


def _run_parallel(todo: list[tuple[Cell, bool]], sweep_dir: Path, jobs: int, runner: Runner,
                  finish: Callable[[CellOutcome, bool], None]) -> None:
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        pending: dict[Future, tuple[Cell, bool]] = {
            pool.submit(_run_cell, runner, cell.name, cell.config, sweep_dir / cell.name, resume): (cell, resume)
            for cell, resume in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    cell, resume = pending.pop(fut)
                    try:
                        outcome = fut.result()
                    except Exception as exc:  # noqa: BLE001  (a worker died: record, go on)
                        outcome = CellOutcome(cell.name, "failed", error=f"worker process failed: {exc!r}")
                    finish(outcome, resume)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
