"""Download files from the first mirror that answers, atomically (temp file, then rename)."""
from __future__ import annotations

import urllib.request
from pathlib import Path

from ..atomic import atomic_path


def download_files(mirrors: list[str], names: list[str], target: Path, timeout: float = 30.0) -> None:
    """Fetch every file in ``names`` into ``target``; raise ``OSError`` if no mirror serves one."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (target / name).is_file():
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(target / name) as tmp:
                    with open(tmp, "wb") as f:
                        while chunk := resp.read(1 << 20):
                            f.write(chunk)
                break
            except OSError as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise OSError("; ".join(errors))
