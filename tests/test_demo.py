"""`lnpt demo` end to end (the README's main job), on a reduced setting."""
import socket

import pytest

from lnpt.cli import main
from lnpt.data import mnist_like
from lnpt.teachers import SHIPPED_DIR


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED_DIR / "fashion-mnist.pt").is_file(), reason="no shipped teacher")
def test_quick_demo_with_the_shipped_teacher(tmp_path, capsys):
    from lnpt.data import load_data
    from lnpt.errors import DatasetNotFoundError

    try:
        load_data("fashion-mnist")
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not on this machine: {exc}")
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "label-free (LNPT loss)" in out and "supervised (true labels)" in out
    assert (tmp_path / "lnpt" / "summary.json").is_file() and (tmp_path / "supervised" / "summary.json").is_file()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_demo_falls_back_to_digits_when_fashion_mnist_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LNPT_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setitem(mnist_like.SYSTEM_DIRS, "fashion-mnist", [tmp_path / "nowhere"])
    monkeypatch.setitem(mnist_like.MIRRORS, "fashion-mnist", [f"http://127.0.0.1:{_unused_port()}/"])
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "running the demo on scikit-learn's bundled digits" in captured.err
    assert "LNPT demo on digits" in captured.out
    # The closing lines say what one run can show and point to the multi-seed table.
    assert "This is one seed on one mask" in captured.out and "docs/RESULTS.md, section 0" in captured.out
