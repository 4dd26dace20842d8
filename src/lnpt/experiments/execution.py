"""Where a sweep's cells run: in this process, in worker processes pinned to devices, or as
tasks of a cluster engine. Backends are a registry (``local`` here, ``ray`` in
:mod:`lnpt.experiments.ray_backend`); every backend runs the same :func:`run_cell` on the same
cell folders, so a sweep started with one backend resumes with another.

Local backend, ``jobs`` processes per device:

* no ``devices`` and ``jobs == 1``: cells run one after another in this process;
* otherwise each entry of ``devices`` (or the cells' own ``--device`` when none is given) is a
  slot with its own pool of ``jobs`` spawned worker processes, pinned to that device. A cell is
  given a slot when it starts and the slot back when it ends, so a device never holds more than
  ``jobs`` cells at once. A device listed twice is two slots.

Workers are spawned (a clean interpreter, no forked torch or CUDA state), run one torch thread
each (N jobs use N cores instead of fighting over them), and die with the sweep however it ends
(SIGKILL of the sweep included: see :func:`_die_with_parent`).

The device a cell ran on is operational, like ``--device`` itself: it is written to the cell's
``config.json`` (``compute.device``) and the sweep's cell log, never to its name or fingerprint.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import torch

from ..config import RunConfig
from ..device import resolve_device
from ..errors import ConfigError
from ..extras import require
from ..recipes.pipeline import run_pipeline
from ..registry import Registry
from ..run_folder import RunFolder
from .grid import Cell

Runner = Callable[..., dict]  # runner(cfg, out, resume=..., progress=...) -> summary dict
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_CHECK_SECONDS = 1.0


def default_runner(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """:func:`lnpt.recipes.pipeline.run_pipeline` as a module-level function, so worker
    processes and cluster tasks can unpickle it by name."""
    return run_pipeline(cfg, out, resume=resume, progress=progress)


@dataclass
class CellOutcome:
    """What became of one cell, and where and when it ran (for the sweep's cell log)."""
    name: str
    status: str  # "done" | "skipped" | "failed"
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    error: str = ""
    traceback: str = ""
    device: str = ""  # the device the cell ran on (its compute.device, resolved)
    worker: str = ""  # host:pid of the process that ran it
    slot: int = -1  # index into Execution.devices (local backend with devices), else -1
    started: float = 0.0  # wall-clock time.time(), comparable across the workers of one machine
    ended: float = 0.0


@dataclass(frozen=True)
class Task:
    """One cell to run into ``out``; ``resume``: its folder existed when the sweep planned."""
    cell: Cell
    out: Path
    resume: bool


@dataclass(frozen=True)
class Execution:
    """How a sweep runs its cells (see the module docstring). None of it is part of a cell.

    ``jobs``: processes per entry of ``devices``, or in all when ``devices`` is empty.
    ``ray_address``, ``cpus_per_cell``, ``gpus_per_cell``: the ``ray`` backend's cluster and
    each cell's resource request.
    """
    backend: str = "local"
    devices: tuple[str, ...] = ()
    jobs: int = 1
    ray_address: str | None = None
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0

    @property
    def workers(self) -> int:
        """Cells that may run at once on the local backend."""
        return max(1, len(self.devices)) * self.jobs

    def checked(self, cells: Sequence[Cell] = ()) -> "Execution":
        """This execution with each device resolved (``auto`` -> ``cuda:0`` or ``cpu``), or a
        one-line ConfigError before any cell runs: an unknown backend, a device this machine
        lacks, a count out of range, the ``ray`` backend without Ray installed. Without
        ``devices`` the local backend runs each cell on its own ``--device``, so those are the
        devices checked here; Ray tasks may land on machines other than this one and check theirs."""
        BACKENDS.get(self.backend)  # an unknown name fails here, listing the known ones
        backend = self.backend.lower()
        if self.jobs < 1:
            raise ConfigError(f"--jobs/--jobs-per-device must be >= 1, got {self.jobs}")
        if self.cpus_per_cell <= 0 or self.gpus_per_cell < 0:
            raise ConfigError(f"--cpus-per-cell must be > 0 and --gpus-per-cell >= 0, got "
                              f"{self.cpus_per_cell} and {self.gpus_per_cell}")
        devices = tuple(_resolved(d) for d in self.devices)
        if backend == "local" and not devices:
            for device in sorted({c.config.compute.device for c in cells}):
                resolve_device(device)
        if backend == "ray":
            require("ray", "lnpt sweep --backend ray")  # extra: lnpt[ray]
            if devices:
                raise ConfigError("--devices is for the local backend; with --backend ray ask each cell "
                                  "for GPUs with --gpus-per-cell")
        return replace(self, backend=backend, devices=devices)


def _ran_on(device: str) -> str:
    """``device`` as the run will resolve it (``auto`` -> ``cuda:0`` or ``cpu``) for the cell log;
    as given when it does not resolve (the run then fails and says why)."""
    try:
        return str(resolve_device(device))
    except ConfigError:
        return device


def _resolved(device: str) -> str:
    try:
        return str(resolve_device(device))
    except ConfigError as exc:
        raise ConfigError(f"--devices entry {device!r} cannot be used here: {exc}") from None


Finish = Callable[[CellOutcome, bool], None]  # called in the sweep's process as each cell ends
Backend = Callable[[list[Task], Runner, Execution, Finish], None]
BACKENDS: Registry[Backend] = Registry("sweep backend")


def on_device(cfg: RunConfig, device: str | None) -> RunConfig:
    """``cfg`` with ``compute.device`` set to ``device`` (None: unchanged). Operational: the
    cell's fingerprint, folder and resume check do not see it."""
    return cfg if device is None else replace(cfg, compute=replace(cfg.compute, device=device))


def run_cell(runner: Runner, task: Task, device: str | None = None) -> CellOutcome:
    """Run one cell (on ``device`` when given) and turn any exception into a recorded failure
    (also in worker processes, where an exception would otherwise only surface as a pickled
    traceback). Whether it resumes is decided now: a folder may have appeared since planning."""
    cfg = on_device(task.cell.config, device)
    t0, started = time.perf_counter(), time.time()
    where = {"device": _ran_on(cfg.compute.device), "worker": f"{socket.gethostname()}:{os.getpid()}", "started": started}
    resume = task.resume or task.out.is_dir()
    try:
        summary = runner(cfg, task.out, resume=resume, progress=False)
    except Exception as exc:  # noqa: BLE001  (a cell's failure must not stop the sweep)
        return CellOutcome(task.cell.name, "failed", time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc(), ended=time.time(), **where)
    if not RunFolder(task.out).finished:
        return CellOutcome(task.cell.name, "failed", time.perf_counter() - t0, ended=time.time(),
                           error=f"the runner returned without writing {RunFolder(task.out).summary}", **where)
    return CellOutcome(task.cell.name, "done", time.perf_counter() - t0, summary=dict(summary or {}),
                       ended=time.time(), **where)


@BACKENDS.register("local")
def run_local(tasks: list[Task], runner: Runner, execution: Execution, finish: Finish) -> None:
    """This machine: in this process (one slot, one job), else in pools of worker processes."""
    slots: list[str | None] = list(execution.devices) or [None]
    if len(slots) == 1 and execution.jobs == 1:
        for task in tasks:
            finish(run_cell(runner, task, slots[0]), task.resume)
        return
    _run_pools(tasks, runner, slots, execution.jobs, finish)


def _run_pools(tasks: list[Task], runner: Runner, slots: list[str | None], per_slot: int, finish: Finish) -> None:
    """One pool of ``per_slot`` workers per slot; a cell is submitted to the least busy slot
    only when that slot has a free worker, so no slot ever holds more than ``per_slot`` cells."""
    ctx = get_context("spawn")
    pools = [ProcessPoolExecutor(max_workers=per_slot, mp_context=ctx, initializer=_init_worker,
                                 initargs=(os.getpid(), device)) for device in slots]
    busy = [0] * len(slots)
    queue = list(tasks)
    pending: dict[Future, tuple[Task, int]] = {}
    try:
        while queue or pending:
            while queue and min(busy) < per_slot:
                slot = busy.index(min(busy))
                task = queue.pop(0)
                pending[pools[slot].submit(run_cell, runner, task, slots[slot])] = (task, slot)
                busy[slot] += 1
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                task, slot = pending.pop(fut)
                busy[slot] -= 1
                outcome = _outcome(fut, task)
                outcome.slot = slot if slots[slot] is not None else -1
                finish(outcome, task.resume)
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def _outcome(fut: Future, task: Task) -> CellOutcome:
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001  (a worker died: record, go on)
        return CellOutcome(task.cell.name, "failed", error=f"worker process failed: {exc!r}")


def _init_worker(parent: int, device: str | None = None) -> None:
    """Runs first in every worker process: one torch thread, the worker pinned to its device
    (``torch.cuda.set_device``, so a stray ``cuda`` allocation lands there too), and the worker's
    life tied to the sweep's. A sweep that is killed (any signal, SIGKILL included) must not
    leave workers that finish their cells and start new ones next to a rerun."""
    torch.set_num_threads(1)
    if device is not None and device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
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
