"""Dataset readers on files the tests write themselves: IDX (Fashion-MNIST/MNIST), CIFAR
pickles, image folders, and downloads from a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import pickle
import socket
import struct
import tarfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from lnpt.data import DATASETS, DatasetInfo, cifar, load_data, mnist_like
from lnpt.data.download import download_files
from lnpt.data.idx import read_idx, write_idx
from lnpt.errors import DatasetNotFoundError

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real $LNPT_DATA, home cache, system folder or proxy can leak into a test."""
    monkeypatch.delenv("LNPT_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setitem(mnist_like.SYSTEM_DIRS, "fashion-mnist", [tmp_path / "no-system-dir"])


class _Server:
    """A real HTTP server on 127.0.0.1 serving ``routes``: path -> body, or (body, declared length)."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes | tuple[bytes, int]] = {}
        self.hits: list[str] = []
        routes, hits = self.routes, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                hits.append(self.path)
                entry = routes.get(self.path)
                if entry is None:
                    self.send_error(404)
                    return
                body, length = entry if isinstance(entry, tuple) else (entry, len(entry))
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True  # a short body then ends the transfer early

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def _closed_port_url() -> str:
    """A 127.0.0.1 URL where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as f:
        f.write(data)
    return buf.getvalue()


def write_mnist_like(folder: Path, n_train: int = 12, n_test: int = 5, seed: int = 0,
                     gz: bool = True) -> dict[str, np.ndarray]:
    """Four IDX files in the Fashion-MNIST naming; returns what was written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in mnist_like.FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / f"x{suffix}", a)
    b = read_idx(tmp_path / f"x{suffix}")
    assert b.dtype == np.uint8 and b.shape == (2, 3, 4)
    np.testing.assert_array_equal(a, b)


def test_idx_rejects_bad_magic_and_truncation(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04" + b"\0" * 16)
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "ok", np.zeros((4, 5), np.uint8))
    data = (tmp_path / "ok").read_bytes()
    (tmp_path / "short").write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


# ----------------------------------------------------------------------------- Fashion-MNIST search order


def _check_raw(raw, arrays: dict[str, np.ndarray]) -> None:
    assert raw.train_x.shape == (len(arrays["train_x"]), 1, 28, 28) and raw.train_x.dtype == torch.uint8
    assert torch.equal(raw.train_x[:, 0], torch.from_numpy(arrays["train_x"]))
    assert torch.equal(raw.train_y, torch.from_numpy(arrays["train_y"]).long())
    assert torch.equal(raw.test_x[:, 0], torch.from_numpy(arrays["test_x"]))
    assert torch.equal(raw.test_y, torch.from_numpy(arrays["test_y"]).long())


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_data_dir(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist_like(tmp_path / "data", gz=gz)
    raw = DATASETS.get("fashion-mnist")(tmp_path / "data")
    _check_raw(raw, arrays)
    assert raw.info.input_shape == (1, 28, 28) and raw.info.num_classes == 10
    assert raw.info.classes[0] == "T-shirt/top"


def test_fashion_mnist_sub_folder_named_after_dataset_comes_first(tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "data", seed=1)
    inner = write_mnist_like(tmp_path / "data" / "fashion-mnist", seed=2)
    _check_raw(DATASETS.get("fashion-mnist")(tmp_path / "data"), inner)


def test_fashion_mnist_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = DATASETS.get("fashion-mnist")
    in_system = write_mnist_like(tmp_path / "system", seed=3)
    monkeypatch.setitem(mnist_like.SYSTEM_DIRS, "fashion-mnist", [tmp_path / "system"])
    _check_raw(reader(None), in_system)                       # only the system folder

    in_env = write_mnist_like(tmp_path / "env" / "fashion-mnist", seed=4)
    monkeypatch.setenv("LNPT_DATA", str(tmp_path / "env"))
    _check_raw(reader(None), in_env)                          # $LNPT_DATA before system

    in_dir = write_mnist_like(tmp_path / "explicit", seed=5)
    _check_raw(reader(tmp_path / "explicit"), in_dir)         # data_dir before $LNPT_DATA


def test_fashion_mnist_downloads_into_data_dir(tmp_path: Path, server: _Server,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_mnist_like(tmp_path / "served", seed=6, gz=True)
    for stem in mnist_like.FILES.values():
        server.routes[f"/fm/{stem}.gz"] = (tmp_path / "served" / f"{stem}.gz").read_bytes()
    monkeypatch.setitem(mnist_like.MIRRORS, "fashion-mnist", [_closed_port_url(), server.url + "/fm/"])
    raw = DATASETS.get("fashion-mnist")(tmp_path / "data")
    _check_raw(raw, src)
    got = sorted(p.name for p in (tmp_path / "data" / "fashion-mnist").iterdir())
    assert got == sorted(s + ".gz" for s in mnist_like.FILES.values())  # no temp files left


def test_fashion_mnist_not_found_says_where_it_looked(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(mnist_like.MIRRORS, "fashion-mnist", [_closed_port_url()])
    monkeypatch.setenv("LNPT_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as err:
        load_data("fashion-mnist", data_dir=tmp_path / "data")
    msg = str(err.value)
    for looked in (tmp_path / "data", tmp_path / "env", tmp_path / "no-system-dir"):
        assert str(looked) in msg
    assert "download failed" in msg and "127.0.0.1" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "LNPT_DATA" in msg
    assert not list((tmp_path / "data" / "fashion-mnist").glob("*"))  # nothing half-written


def test_idx_dataset_without_download_is_a_clear_error(tmp_path: Path) -> None:
    info = DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.5,), (0.5,))
    with pytest.raises(DatasetNotFoundError, match="downloading is switched off"):
        mnist_like.load_idx_dataset("fashion-mnist", tmp_path, info, download=False)


def test_corrupted_idx_file_is_named(tmp_path: Path) -> None:
    write_mnist_like(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DatasetNotFoundError, match="train-labels-idx1-ubyte.gz is corrupted"):
        DATASETS.get("fashion-mnist")(tmp_path)


def test_mnist_uses_the_same_reader(tmp_path: Path) -> None:
    arrays = write_mnist_like(tmp_path / "mnist", seed=7)
    raw = DATASETS.get("mnist")(tmp_path)
    _check_raw(raw, arrays)
    assert raw.info.name == "mnist" and raw.info.hflip is False


# ----------------------------------------------------------------------------- download_files


def test_download_success(tmp_path: Path, server: _Server) -> None:
    server.routes["/a.bin"] = b"A" * 3000
    server.routes["/b.bin"] = b"hello"
    download_files([server.url], ["a.bin", "b.bin"], tmp_path / "t", timeout=5)
    assert (tmp_path / "t" / "a.bin").read_bytes() == b"A" * 3000
    assert (tmp_path / "t" / "b.bin").read_bytes() == b"hello"
    download_files([server.url], ["a.bin"], tmp_path / "t", timeout=5)
    assert server.hits.count("/a.bin") == 1  # present files are not fetched again


def test_download_falls_back_to_next_mirror(tmp_path: Path, server: _Server) -> None:
    server.routes["/good/f.gz"] = b"payload"
    mirrors = [_closed_port_url(), server.url + "/missing/", server.url + "/good/"]
    download_files(mirrors, ["f.gz"], tmp_path, timeout=5)
    assert (tmp_path / "f.gz").read_bytes() == b"payload"
    assert server.hits == ["/missing/f.gz", "/good/f.gz"]


def test_download_failure_leaves_no_partial_file(tmp_path: Path, server: _Server) -> None:
    server.routes["/f.gz"] = (b"only the first bytes", 100_000)  # connection closes early
    with pytest.raises(OSError) as err:
        download_files([server.url, server.url + "/nope/"], ["f.gz"], tmp_path / "t", timeout=5)
    assert "incomplete download: got 20 of 100000 bytes" in str(err.value) and "404" in str(err.value)
    assert list((tmp_path / "t").iterdir()) == []


# ----------------------------------------------------------------------------- CIFAR


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING), like the official CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n])) if n < 256
                   else (pickle.BINSTRING + struct.pack("<i", n)))
        self.write(obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # Python 2's numpy lived at numpy.core; the official files name that module.
    return buf.getvalue().replace(b"numpy._core.", b"numpy.core.")


def _batch(rng: np.random.Generator, n: int, classes: int, label_key: str) -> tuple[dict, np.ndarray, np.ndarray]:
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    return {"data": data, label_key: [int(v) for v in labels]}, data, labels


def write_cifar10(root: Path, n: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``root/cifar-10-batches-py`` in the official (Python 2 pickle) format."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d, x, y = _batch(rng, n, 10, "labels")
        d = {k.encode(): v for k, v in d.items()} | {b"batch_label": name.encode()}
        (folder / name).write_bytes(_py2_pickle(d))
        xs.append(x)
        ys.append(y)
    names = [f"class{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(_py2_pickle({b"label_names": names, b"num_vis": 3072}))
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def test_cifar10_official_layout(tmp_path: Path) -> None:
    tx, ty, vx, vy = write_cifar10(tmp_path)
    raw = DATASETS.get("cifar10")(tmp_path)
    assert raw.train_x.shape == (20, 3, 32, 32) and raw.train_x.dtype == torch.uint8
    assert torch.equal(raw.train_x, torch.from_numpy(tx.reshape(-1, 3, 32, 32)))
    assert torch.equal(raw.train_y, torch.from_numpy(ty).long())
    assert torch.equal(raw.test_x, torch.from_numpy(vx.reshape(-1, 3, 32, 32)))
    assert torch.equal(raw.test_y, torch.from_numpy(vy).long())
    assert raw.info.classes == tuple(f"class{i}" for i in range(10))
    assert raw.info.hflip and raw.info.crop_padding == 4 and raw.info.input_shape == (3, 32, 32)
    # the folder itself works as data_dir too, and so does $LNPT_DATA
    assert torch.equal(DATASETS.get("cifar10")(tmp_path / "cifar-10-batches-py").test_y, raw.test_y)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar100_python3_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int) -> None:
    rng = np.random.default_rng(protocol)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    expected = {}
    for name in ("train", "test"):
        d, x, y = _batch(rng, 6, 100, "fine_labels")
        d["coarse_labels"] = [0] * 6
        (folder / name).write_bytes(pickle.dumps(d, protocol=protocol))
        expected[name] = (x, y)
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]},
                                               protocol=protocol))
    monkeypatch.setenv("LNPT_DATA", str(tmp_path))
    raw = DATASETS.get("cifar100")(None)
    assert raw.info.num_classes == 100 and raw.info.classes[99] == "c99"
    assert torch.equal(raw.train_x, torch.from_numpy(expected["train"][0].reshape(-1, 3, 32, 32)))
    assert torch.equal(raw.test_y, torch.from_numpy(expected["test"][1]).long())


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_cifar_malicious_pickle_runs_no_code(tmp_path: Path) -> None:
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Evil(control)))
    assert control.is_dir()  # the payload really runs code under a plain pickle.load

    write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    d = {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3], "x": _Evil(marker)}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DatasetNotFoundError, match="data_batch_3 is not a valid CIFAR file.*mkdir"):
        DATASETS.get("cifar10")(tmp_path)
    assert not marker.exists()


def test_cifar_wrong_contents_are_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 10]}))
    with pytest.raises(DatasetNotFoundError, match=r"integers in \[0, 10\)"):
        DATASETS.get("cifar10")(tmp_path)
    batch.write_bytes(pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}))
    with pytest.raises(DatasetNotFoundError, match="3x32x32"):
        DATASETS.get("cifar10")(tmp_path)
    batch.write_bytes(b"garbage")
    with pytest.raises(DatasetNotFoundError, match="not a valid CIFAR file"):
        DATASETS.get("cifar10")(tmp_path)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_cifar10_download_and_unpack(tmp_path: Path, server: _Server,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tx, ty, _, _ = write_cifar10(tmp_path / "src")
    members = {f"cifar-10-batches-py/{p.name}": p.read_bytes()
               for p in (tmp_path / "src" / "cifar-10-batches-py").iterdir()}
    members["../escape.txt"] = b"must not be written outside the target"
    server.routes["/kriz/cifar-10-python.tar.gz"] = _tar_gz(members)
    monkeypatch.setattr(cifar, "MIRRORS", [server.url + "/kriz/"])
    data = tmp_path / "data"
    raw = DATASETS.get("cifar10")(data)
    assert torch.equal(raw.train_x, torch.from_numpy(tx.reshape(-1, 3, 32, 32)))
    assert torch.equal(raw.train_y, torch.from_numpy(ty).long())
    assert sorted(p.name for p in data.iterdir()) == ["cifar-10-batches-py"]  # archive + temp gone
    assert not (tmp_path / "escape.txt").exists()


def test_cifar_bad_archive_and_no_network(tmp_path: Path, server: _Server,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    server.routes["/cifar-10-python.tar.gz"] = b"not a tar.gz at all"
    monkeypatch.setattr(cifar, "MIRRORS", [server.url])
    with pytest.raises(DatasetNotFoundError, match="could not unpack") as err:
        DATASETS.get("cifar10")(tmp_path / "data")
    assert str(tmp_path / "data" / "cifar-10-batches-py") in str(err.value)
    assert list((tmp_path / "data").iterdir()) == []  # bad archive and temp folder removed

    monkeypatch.setattr(cifar, "MIRRORS", [_closed_port_url()])
    with pytest.raises(DatasetNotFoundError, match="download failed.*cifar-10-python.tar.gz"):
        DATASETS.get("cifar10")(tmp_path / "data")


# ----------------------------------------------------------------------------- image folder


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_imagefolder_grayscale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("zebra", "ant"):  # sorted: ant=0, zebra=1
            for i in range(n):
                a = rng.integers(0, 256, (10, 12), dtype=np.uint8)
                _png(tmp_path / split / cls / f"{i}.png", a)
                imgs[(split, cls, i)] = a
    (tmp_path / "train" / "ant" / "notes.txt").write_text("ignored")
    raw = DATASETS.get("imagefolder")(tmp_path)
    assert raw.info.classes == ("ant", "zebra") and raw.info.num_classes == 2
    assert raw.info.input_shape == (1, 10, 12) and raw.train_x.shape == (6, 1, 10, 12)
    assert raw.train_y.tolist() == [0, 0, 0, 1, 1, 1] and raw.test_y.tolist() == [0, 0, 1, 1]
    assert torch.equal(raw.train_x[4, 0], torch.from_numpy(imgs[("train", "zebra", 1)]))
    assert torch.equal(raw.test_x[1, 0], torch.from_numpy(imgs[("test", "ant", 1)]))
    assert raw.info.hflip is False
    expected_mean = torch.stack([torch.from_numpy(v) for k, v in imgs.items() if k[0] == "train"]).float().mean() / 255
    assert raw.info.mean[0] == pytest.approx(float(expected_mean), abs=1e-3)


def test_imagefolder_rgb_detection_and_common_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _png(tmp_path / "train" / "a" / "0.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    _png(tmp_path / "train" / "a" / "1.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    _png(tmp_path / "train" / "b" / "0.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    _png(tmp_path / "test" / "b" / "0.png", rng.integers(0, 256, (5, 7), dtype=np.uint8))
    raw = DATASETS.get("imagefolder")(tmp_path)
    assert raw.info.input_shape == (3, 8, 8)  # one RGB image makes all RGB; 8x8 is most common
    assert raw.train_x.shape == (3, 3, 8, 8) and raw.test_x.shape == (1, 3, 8, 8)
    assert torch.equal(raw.train_x[0, 0], raw.train_x[0, 2])  # gray -> RGB replicates channels
    assert raw.test_y.tolist() == [1]


def test_imagefolder_options_file(tmp_path: Path) -> None:
    for split in ("train", "test"):
        _png(tmp_path / split / "a" / "0.png", np.full((8, 8), 7, np.uint8))
    (tmp_path / "lnpt-dataset.json").write_text(json.dumps({"size": [6, 4], "hflip": True,
                                                            "crop_padding": 3}))
    raw = DATASETS.get("imagefolder")(tmp_path)
    assert raw.info.input_shape == (1, 6, 4) and raw.info.hflip and raw.info.crop_padding == 3
    assert int(raw.train_x.min()) == int(raw.train_x.max()) == 7  # constant image stays constant
    (tmp_path / "lnpt-dataset.json").write_text(json.dumps({"flip": True}))
    with pytest.raises(DatasetNotFoundError, match="crop_padding, hflip, size"):
        DATASETS.get("imagefolder")(tmp_path)


def test_imagefolder_errors(tmp_path: Path) -> None:
    reader = DATASETS.get("imagefolder")
    with pytest.raises(DatasetNotFoundError, match="--data-dir"):
        reader(None)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        reader(tmp_path / "nowhere")
    _png(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetNotFoundError, match=r"test does not exist.*train/<class>"):
        reader(tmp_path)
    _png(tmp_path / "test" / "b" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetNotFoundError, match="classes missing from train/: b"):
        reader(tmp_path)
    (tmp_path / "test" / "b" / "0.png").unlink()
    (tmp_path / "test" / "b").rmdir()
    _png(tmp_path / "test" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetNotFoundError, match="broken.png is not a readable image"):
        reader(tmp_path)
