"""Start ``torchrun --standalone`` children with this checkout's sources first (shared by the
tests that run real multi-process gloo groups)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def torchrun_command(*args: str, nproc: int = 2) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N <args>``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]


def child_env() -> dict[str, str]:
    """This environment with the checkout's ``src`` first, one thread per process, and no
    launcher variables leaking in from a surrounding run."""
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def torchrun(*args: str, nproc: int = 2, timeout: float = 240, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run to the end and return the finished process (stdout and stderr captured)."""
    return subprocess.run(torchrun_command(*args, nproc=nproc), check=False, env=child_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
