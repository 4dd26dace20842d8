"""Download files from the first mirror that answers, atomically (temp file, then rename)."""
from __future__ import annotations

import http.client
import os
import urllib.request
from pathlib import Path

from ..atomic import atomic_path


def data_root(data_dir: Path | None) -> Path:
    """Where downloads go: ``data_dir``, else ``$LNPT_DATA``, else ``~/.cache/lnpt``."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("LNPT_DATA")
    return Path(env) if env else Path.home() / ".cache" / "lnpt"


def download_files(mirrors: list[str], names: list[str], target: Path, timeout: float = 30.0) -> None:
    """Fetch every file in ``names`` into ``target``; raise ``OSError`` if no mirror serves one.

    Each file is streamed into a temporary file beside its destination and renamed only once
    complete, so an interrupted or truncated transfer (``Content-Length`` not reached) leaves
    nothing behind and the next mirror is tried. Files already present are kept.
    """
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (target / name).is_file():
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(target / name) as tmp:
                    _stream(resp, tmp)
                break
            # HTTPException (e.g. a malformed response) is not an OSError.
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
        else:
            raise OSError("; ".join(errors))


def _stream(resp: http.client.HTTPResponse, path: Path) -> None:
    """Copy the body to ``path``; a body shorter than its ``Content-Length`` is an error.

    ``HTTPResponse.read(amt)`` returns short data rather than raising when the server closes
    the connection early, so without this check a cut transfer would be kept as complete.
    """
    expected = resp.headers.get("Content-Length")
    got = 0
    with open(path, "wb") as f:
        while chunk := resp.read(1 << 20):
            f.write(chunk)
            got += len(chunk)
    if expected is not None and expected.isdigit() and got < int(expected):
        raise OSError(f"incomplete download: got {got} of {expected} bytes")
