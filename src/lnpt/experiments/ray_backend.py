"""``lnpt sweep --backend ray``: each cell is a Ray task with its own resource request.

Ray (the optional extra ``lnpt[ray]``) schedules the tasks on a running cluster
(``--ray-address``, or ``RAY_ADDRESS``) or on a local instance it starts for the sweep. A task
asks for ``--cpus-per-cell`` CPUs and ``--gpus-per-cell`` GPUs (fractions share a GPU) and runs
the same :func:`~lnpt.experiments.execution.run_cell` as the local backend, writing the same
cell folder; the sweep's process triages, records failures and writes the cell log as before,
so finished cells are skipped and interrupted ones resumed whichever backend ran them.

Every node must see the sweep folder at the same path (a shared filesystem) and have lnpt
installed; a task that dies with its worker is recorded as a failed cell (no silent retry),
and rerunning the sweep resumes it from its folder.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from ..errors import ConfigError
from ..extras import require
from .execution import BACKENDS, CellOutcome, Execution, Finish, Runner, Task, run_cell


def ray_cell(runner: Runner, task: Task, device: str, threads: int) -> CellOutcome:
    """The body of one Ray task: torch limited to the CPUs the task asked for, then the cell."""
    torch.set_num_threads(threads)
    return run_cell(runner, task, device)


@BACKENDS.register("ray")
def run_ray(tasks: list[Task], runner: Runner, execution: Execution, finish: Finish) -> None:
    """Submit every cell as a task, hand each outcome to ``finish`` as it arrives; cancel the
    rest if the sweep is interrupted. A Ray instance this call started is shut down after."""
    ray = require("ray", "lnpt sweep --backend ray")  # extra: lnpt[ray]
    if not tasks:
        return  # every cell finished: no cluster to start or join
    started = not ray.is_initialized()
    if started:
        ray.init(address=execution.ray_address, include_dashboard=False, logging_level=logging.WARNING)
    # A task with GPUs sees only its own (Ray sets CUDA_VISIBLE_DEVICES): its first one is cuda:0.
    device = "cuda:0" if execution.gpus_per_cell > 0 else "cpu"
    threads = max(1, int(execution.cpus_per_cell))
    remote = ray.remote(ray_cell)
    request = {"num_cpus": execution.cpus_per_cell, "num_gpus": execution.gpus_per_cell, "max_retries": 0}
    refs: dict[Any, Task] = {}
    try:
        check_feasible(ray.nodes(), execution.cpus_per_cell, execution.gpus_per_cell)
        for task in tasks:
            refs[remote.options(name=task.cell.name, **request).remote(runner, task, device, threads)] = task
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                task = refs.pop(ref)
                finish(_outcome(ray, ref, task), task.resume)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def check_feasible(nodes: list[dict], cpus: float, gpus: float) -> None:
    """Refuse, in one line, a request no live node can hold. Ray would accept the tasks and
    leave them pending forever ("infeasible"), so a sweep asking one GPU per cell of a CPU-only
    cluster would hang without a word; this turns that into an error before any task starts."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in alive):
        return
    biggest = ", ".join(sorted({f"{r.get('CPU', 0):g} CPU / {r.get('GPU', 0):g} GPU" for r in alive})) or "none"
    raise ConfigError(f"no node of the Ray cluster can run a cell asking for --cpus-per-cell {cpus:g} "
                      f"--gpus-per-cell {gpus:g} (its nodes: {biggest}); ask for less, or add such a node first")


def _outcome(ray: Any, ref: Any, task: Task) -> CellOutcome:
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001  (a task or its worker died: record, go on)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return CellOutcome(task.cell.name, "failed", error=f"ray task failed: {type(exc).__name__}: {first}")
