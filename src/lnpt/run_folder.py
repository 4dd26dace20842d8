"""The run folder: the one place that names the files a run writes and its readers look for.

``lnpt run`` (each ``lnpt sweep`` cell) and ``lnpt prune`` write the same names for the same
things, and ``lnpt gap``, ``lnpt report``, ``lnpt export``, ``lnpt bench-latency`` and
``--resume`` find them here, so a renamed file cannot leave one reader behind. A run folder
holds:

- ``config.json``        the settings of the run (secrets redacted)
- ``student_init.pt``    the pruned, untrained student (initial weights and masks, or shrunk layers)
- ``prune_report.json`` / ``prune_report.md``  per-layer kept fractions, params, MACs, time
- ``metrics.jsonl``      one record per epoch; ``train_state.pt`` the resumable state
- ``final.pt``           the trained student
- ``summary.json`` / ``summary.md``  written last: its presence means the run finished
- ``export/``            what ``lnpt export`` writes by default (see :class:`ExportFiles`)

``lnpt prune`` writes only the student and its report. Folders it wrote before it used these
names (``student.pt``, ``report.json``, ``report.md``) are still read. A teacher-training
folder (``lnpt teacher train``) shares the training files and adds ``best.pt`` and ``last.pt``.

Only the standard library and the ground floor are imported: analysis reads run folders
without torch.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError, LnptError


class RunDirError(LnptError):
    """A folder given as a run directory is not one, or holds a file that cannot be read."""


class ExportFiles:
    """The files of an export folder (``RUN_DIR/export`` unless ``lnpt export --out`` says)."""

    MANIFEST = "manifest.json"
    ONNX = "model.onnx"
    TORCHSCRIPT = "model.torchscript.pt"
    SAFETENSORS = "model.safetensors"
    SPARSE_SAFETENSORS = "model.sparse.safetensors"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def manifest(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def onnx(self) -> Path:
        return self.path / self.ONNX

    @property
    def torchscript(self) -> Path:
        return self.path / self.TORCHSCRIPT

    @property
    def safetensors(self) -> Path:
        return self.path / self.SAFETENSORS

    @property
    def sparse_safetensors(self) -> Path:
        return self.path / self.SPARSE_SAFETENSORS


class RunFolder:
    """Paths, state and saved JSON of one run folder; creating nothing until :meth:`claim`."""

    CONFIG = "config.json"
    STUDENT_INIT = "student_init.pt"
    PRUNE_REPORT = "prune_report.json"
    PRUNE_REPORT_MD = "prune_report.md"
    METRICS = "metrics.jsonl"
    TRAIN_STATE = "train_state.pt"
    FINAL = "final.pt"
    SUMMARY = "summary.json"
    SUMMARY_MD = "summary.md"
    EXPORT = "export"
    TEACHER_BEST = "best.pt"
    TEACHER_LAST = "last.pt"
    # What `lnpt prune` wrote before it used the names of `lnpt run`; read, never written.
    LEGACY_STUDENT = "student.pt"
    LEGACY_PRUNE_REPORT = "report.json"
    LEGACY_PRUNE_REPORT_MD = "report.md"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def student_init(self) -> Path:
        return self.path / self.STUDENT_INIT

    @property
    def prune_report(self) -> Path:
        return self.path / self.PRUNE_REPORT

    @property
    def prune_report_md(self) -> Path:
        return self.path / self.PRUNE_REPORT_MD

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def train_state(self) -> Path:
        return self.path / self.TRAIN_STATE

    @property
    def final(self) -> Path:
        return self.path / self.FINAL

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def summary_md(self) -> Path:
        return self.path / self.SUMMARY_MD

    @property
    def teacher_best(self) -> Path:
        return self.path / self.TEACHER_BEST

    @property
    def teacher_last(self) -> Path:
        return self.path / self.TEACHER_LAST

    @property
    def export(self) -> ExportFiles:
        return ExportFiles(self.path / self.EXPORT)

    @property
    def untrained_student(self) -> Path:
        """``student_init.pt``, or ``student.pt`` in a folder an older ``lnpt prune`` wrote."""
        legacy = self.path / self.LEGACY_STUDENT
        return legacy if legacy.is_file() and not self.student_init.is_file() else self.student_init

    @property
    def prune_report_file(self) -> Path:
        """``prune_report.json``, or ``report.json`` beside an older ``lnpt prune``'s ``student.pt``."""
        legacy = self.path / self.LEGACY_PRUNE_REPORT
        if not self.prune_report.is_file() and legacy.is_file() and (self.path / self.LEGACY_STUDENT).is_file():
            return legacy
        return self.prune_report

    def checkpoint_candidates(self) -> tuple[Path, ...]:
        """The checkpoints a folder may hold, the one to deploy first: the trained student, the
        pruned untrained one (also under its old ``lnpt prune`` name), a trained teacher."""
        return (self.final, self.student_init, self.path / self.LEGACY_STUDENT, self.teacher_best)

    @property
    def is_run(self) -> bool:
        """Whether training has logged here (what analysis needs of a run folder)."""
        return self.metrics.is_file()

    @property
    def finished(self) -> bool:
        """``summary.json`` is written last: a folder with it holds a complete run."""
        return self.summary.is_file()

    @property
    def started(self) -> bool:
        """Whether a run began here (its settings or first epochs were written) without finishing."""
        return not self.finished and (self.config.is_file() or self.metrics.is_file())

    def check_claimable(self, resume: bool = False) -> None:
        """Refuse a folder a new run must not write into: one that exists and is not empty,
        unless the run resumes it. Called before anything slow, so a refusal is immediate."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"run directory {self.path} is a file; choose another --out")
        if self.path.exists() and any(self.path.iterdir()) and not resume:
            raise ConfigError(f"run directory {self.path} already exists and is not empty; pass --resume to "
                              "continue it or choose another --out")

    def claim(self, resume: bool = False) -> None:
        """Take the folder for a run (create it); refused as :meth:`check_claimable` says."""
        self.check_claimable(resume)
        self.path.mkdir(parents=True, exist_ok=True)

    def saved_config(self) -> dict | None:
        """The settings saved by the run that wrote this folder, None before it saved them."""
        return read_json(self.config)

    def saved_summary(self) -> dict | None:
        """The summary of a finished run, None for an unfinished one."""
        return read_json(self.summary)

    def saved_prune_report(self) -> dict | None:
        """The pruning report (also an older ``lnpt prune``'s ``report.json``), None if absent."""
        return read_json(self.prune_report_file)


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None if the file is absent; a one-line error if it is not one."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise RunDirError(f"cannot parse {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path} must hold a JSON object")
    return data
