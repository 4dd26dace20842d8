"""Atomic writes: all or nothing, with ordinary permissions."""
import os
import stat

import pytest

from lnpt.atomic import atomic_path, write_text


def test_write_is_all_or_nothing(tmp_path):
    target = tmp_path / "f.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_result_has_umask_permissions_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "g.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "g.txt").stat().st_mode) == 0o644
