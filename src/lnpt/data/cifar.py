"""CIFAR-10 and CIFAR-100 in their standard python layout, found locally or downloaded.

The layout is the one the official ``*-python.tar.gz`` archives unpack to:
``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``cifar-100-python/{train, test, meta}``. Search order: ``data_dir``, ``$LNPT_DATA`` (each as
the parent of that folder or as the folder itself), the download folder (``data_dir``, else
``$LNPT_DATA``, else ``~/.cache/lnpt``), then a download of the official archive.

Why a restricted unpickler: the files *are* Python pickles (dicts of numpy arrays and lists),
so there is no way to read them without unpickling, and a plain ``pickle.load`` runs whatever
callable a tampered file names. :class:`_ArrayUnpickler` resolves only the numpy functions that
rebuild an ``ndarray``/``dtype`` (and a latin-1-only ``_codecs.encode``, which Python 3 uses for
``bytes`` at pickle protocol 2); any other global (``os.system``, ``builtins.eval``, …) makes
it fail before anything is called. Everything else in a pickle (dicts, lists, strings, numbers)
is built by the unpickler itself without running code.
"""
from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DatasetNotFoundError
from .download import data_root, download_files
from .info import DatasetInfo, RawData
from .registry import DATASETS

MIRRORS = ["https://www.cs.toronto.edu/~kriz/"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


@dataclass(frozen=True)
class CifarLayout:
    name: str
    folder: str
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


LAYOUTS = {
    "cifar10": CifarLayout(
        "cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
        "labels", "label_names", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": CifarLayout(
        "cifar100", "cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",), "meta",
        "fine_labels", "fine_label_names", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 pickles of ``bytes`` at protocol 2 call (``_codecs.encode``), but only
    for the one encoding such pickles use."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_rebuilders() -> dict[tuple[str, str], Callable[..., Any]]:
    # Take the functions from numpy's own pickling rather than importing them by module path:
    # the path moved (numpy.core -> numpy._core) and files from either era must load.
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    table: dict[tuple[str, str], Callable[..., Any]] = {("numpy", "ndarray"): np.ndarray,
                                                        ("numpy", "dtype"): np.dtype,
                                                        ("_codecs", "encode"): _latin1_bytes}
    for module in ("numpy.core", "numpy._core"):
        table[(module + ".multiarray", "_reconstruct")] = reconstruct
        table[(module + ".numeric", "_frombuffer")] = frombuffer
    return table


_ALLOWED = _numpy_rebuilders()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and plain containers, and nothing that runs code."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: a CIFAR file holds only numpy arrays and lists"
            ) from None


def load_cifar_pickle(path: Path) -> dict[str, Any]:
    """Read one CIFAR batch/meta file with :class:`_ArrayUnpickler`; keys come back as ``str``.

    ``encoding="latin1"`` is what numpy documents for Python 2 pickles (the official files).
    Any failure means a corrupted or foreign file and is reported as such.
    """
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001  any parse failure = unusable file
        raise DatasetNotFoundError(
            f"{path} is not a valid CIFAR file ({type(exc).__name__}: {exc}); delete it so that "
            "it is downloaded again, or replace it with a good copy"
        ) from None
    if not isinstance(obj, dict):
        raise DatasetNotFoundError(f"{path} is not a CIFAR file (holds {type(obj).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    d = load_cifar_pickle(path)
    if "data" not in d or layout.label_key not in d:
        raise DatasetNotFoundError(
            f"{path} lacks the keys 'data' and '{layout.label_key}' of a {layout.name} batch "
            f"(has: {', '.join(sorted(d)) or 'nothing'})")
    data, labels = d["data"], np.asarray(d[layout.label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim not in (2, 4) \
            or data.size != data.shape[0] * 3 * 32 * 32:
        raise DatasetNotFoundError(f"{path}: 'data' must be uint8 images of 3x32x32 "
                                   f"(got {getattr(data, 'dtype', type(data).__name__)} "
                                   f"{getattr(data, 'shape', '')})")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or labels.dtype.kind not in "iu" \
            or (labels.size and (labels.min() < 0 or labels.max() >= layout.num_classes)):
        raise DatasetNotFoundError(
            f"{path}: '{layout.label_key}' must be {data.shape[0]} integers in "
            f"[0, {layout.num_classes})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _class_names(folder: Path, layout: CifarLayout) -> tuple[str, ...]:
    meta = folder / layout.meta
    if meta.is_file():
        names = load_cifar_pickle(meta).get(layout.names_key)
        if isinstance(names, (list, tuple)) and len(names) == layout.num_classes:
            return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)
    return CIFAR10_CLASSES if layout.num_classes == 10 else tuple(str(i) for i in range(layout.num_classes))


def _complete(folder: Path, layout: CifarLayout) -> bool:
    return all((folder / f).is_file() for f in layout.train + layout.test)


def candidate_dirs(layout: CifarLayout, data_dir: Path | None) -> list[Path]:
    """Folders that may hold the batch files, in search order (download folder last)."""
    dirs: list[Path] = []
    for root in (data_dir, Path(os.environ["LNPT_DATA"]) if os.environ.get("LNPT_DATA") else None):
        if root is not None:
            dirs += [root / layout.folder, root]
    target = data_root(data_dir) / layout.folder
    return dirs + ([target] if target not in dirs else [])


def _safe_member(m: tarfile.TarInfo, folder: str) -> bool:
    parts = Path(m.name).parts
    return ((m.isfile() or m.isdir()) and not Path(m.name).is_absolute() and ".." not in parts
            and len(parts) > 0 and parts[0] == folder)


def download_cifar(layout: CifarLayout, root: Path, mirrors: list[str] | None = None) -> Path:
    """Fetch and unpack the official archive into ``root/<folder>``; return that folder.

    The archive is unpacked into a temporary folder beside the destination and renamed into
    place only once every batch file is there, so an interrupted run leaves no half folder.
    Raises ``OSError`` when no mirror serves the archive or it does not unpack.
    """
    archive, dest = root / layout.archive, root / layout.folder
    if dest.exists():
        raise OSError(f"{dest} exists but is incomplete; delete it and try again")
    download_files(MIRRORS if mirrors is None else mirrors, [layout.archive], root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{layout.folder}.", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if _safe_member(m, layout.folder)]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # Python < 3.11.4; members are already restricted to plain files in `folder`
                tar.extractall(tmp, members=members)
        if not _complete(tmp / layout.folder, layout):
            raise OSError(f"the archive does not hold {layout.folder}/ with "
                          f"{', '.join(layout.train + layout.test)}")
        os.replace(tmp / layout.folder, dest)
    except (tarfile.TarError, EOFError, OSError) as exc:
        archive.unlink(missing_ok=True)  # a bad archive is fetched again next time
        raise OSError(f"could not unpack {archive.name}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink(missing_ok=True)  # the unpacked folder is what we read from now on
    return dest


def load_cifar(name: str, data_dir: Path | None, download: bool = True,
               mirrors: list[str] | None = None) -> RawData:
    layout = LAYOUTS[name]
    dirs = candidate_dirs(layout, data_dir)
    folder = next((d for d in dirs if _complete(d, layout)), None)
    if folder is None:
        why = "downloading is switched off"
        if download:
            try:
                folder = download_cifar(layout, data_root(data_dir), mirrors)
            except OSError as exc:
                why = f"the download failed ({exc})"
        if folder is None:
            raise DatasetNotFoundError(
                f"{name} not found (looked in: {', '.join(str(d) for d in dirs)}) and {why}. "
                f"Fix: download {MIRRORS[0]}{layout.archive}, unpack it and pass its parent "
                f"folder with --data-dir (or set LNPT_DATA); the folder {layout.folder}/ must "
                f"hold {', '.join(layout.train + layout.test)}")
    train = [_read_batch(folder / f, layout) for f in layout.train]
    test = [_read_batch(folder / f, layout) for f in layout.test]
    info = DatasetInfo(name, (3, 32, 32), layout.num_classes, layout.mean, layout.std, hflip=True,
                       crop_padding=4, classes=_class_names(folder, layout))
    return RawData(
        train_x=torch.from_numpy(np.concatenate([x for x, _ in train])),
        train_y=torch.from_numpy(np.concatenate([y for _, y in train])),
        test_x=torch.from_numpy(np.concatenate([x for x, _ in test])),
        test_y=torch.from_numpy(np.concatenate([y for _, y in test])),
        info=info,
    )


@DATASETS.register("cifar10")
def cifar10(data_dir: Path | None) -> RawData:
    return load_cifar("cifar10", data_dir)


@DATASETS.register("cifar100")
def cifar100(data_dir: Path | None) -> RawData:
    return load_cifar("cifar100", data_dir)
