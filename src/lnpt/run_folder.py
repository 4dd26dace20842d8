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

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
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

    #: What a run writes before its first training checkpoint: a folder holding only these is
    #: the trace of a start that failed, and a corrected rerun may take it over.
    START_FILES = (CONFIG, STUDENT_INIT, PRUNE_REPORT, PRUNE_REPORT_MD)

    @property
    def failed_start(self) -> bool:
        """Whether the folder holds only what a start that failed before training wrote (an
        older version left these behind: settings, and perhaps the pruned student)."""
        if not self.path.is_dir():
            return False
        names = {p.name for p in self.path.iterdir()}
        return bool(names) and names <= set(self.START_FILES) and all((self.path / n).is_file() for n in names)

    def check_claimable(self, resume: bool = False) -> None:
        """Refuse a folder a new run must not write into: one that exists and is not empty
        (unless the run resumes it, or it holds only a failed start), or one that cannot be
        written. Called before anything slow, so a refusal is immediate."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"run directory {self.path} is a file; choose another --out")
        if self.path.exists() and any(self.path.iterdir()) and not resume and not self.failed_start:
            raise ConfigError(f"run directory {self.path} already exists and is not empty; pass --resume to "
                              "continue it or choose another --out")
        _check_writable(self.path)

    def claim(self, resume: bool = False) -> Path | None:
        """Take the folder for a run, refused as :meth:`check_claimable` says. A missing folder is
        created with one ``mkdir`` (atomic: of two runs racing for it, one gets it, the other is
        refused as for a folder in use); a failed start's leftovers are removed unless resumed.
        Returns the topmost folder this created (None if the folder existed), for :meth:`abandon`."""
        self.check_claimable(resume)
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        created = None
        try:
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                    created = created or folder
                except FileExistsError:
                    if folder == self.path:  # another run took it first
                        self.check_claimable(resume)
        except OSError as exc:
            self.abandon(created)
            raise ConfigError(f"cannot create run directory {self.path}: {exc.strerror}; choose another --out") from None
        if not resume and self.failed_start:
            self._remove_start_files()
        return created

    @contextlib.contextmanager
    def claimed(self, resume: bool = False) -> Iterator[None]:
        """:meth:`claim` the folder for the body; if the body fails before training wrote its
        first checkpoint, :meth:`abandon` it, so a corrected rerun finds it free."""
        created = self.claim(resume)
        try:
            yield
        except BaseException:
            self.abandon(created)
            raise

    def abandon(self, created: Path | None) -> None:
        """Undo a start that failed before training began: its files go, and so do the folders
        the claim created. A folder where training logged or checkpointed is kept (resumable)."""
        if any(p.exists() for p in (self.train_state, self.metrics, self.final, self.summary)):
            return
        self._remove_start_files()
        if created is None:
            return
        for folder in (self.path, *self.path.parents):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only empty folders go
            if folder == created:
                break

    def _remove_start_files(self) -> None:
        for name in self.START_FILES:
            (self.path / name).unlink(missing_ok=True)

    def saved_config(self) -> dict | None:
        """The settings saved by the run that wrote this folder, None before it saved them."""
        return read_json(self.config)

    def saved_summary(self) -> dict | None:
        """The summary of a finished run, None for an unfinished one."""
        return read_json(self.summary)

    def saved_prune_report(self) -> dict | None:
        """The pruning report (also an older ``lnpt prune``'s ``report.json``), None if absent."""
        return read_json(self.prune_report_file)


def _check_writable(path: Path) -> None:
    """Refuse a run directory that cannot be written (a read-only folder, a path under ``/proc``
    or under a file) by creating and removing a probe folder in its nearest existing ancestor:
    a real attempt, since permission bits do not tell (root, read-only mounts, pseudo-files)."""
    base = next(p for p in (path, *path.parents) if p.exists())
    if not base.is_dir():
        raise ConfigError(f"run directory {path} is under {base}, which is a file; choose another --out")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".lnpt-probe-", dir=base))
    except OSError as exc:
        raise ConfigError(f"cannot write run directory {path}: {base} is not writable ({exc.strerror}); "
                          "choose another --out") from None


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
