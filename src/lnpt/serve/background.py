"""A teacher server on a free loopback port, in a thread or a child process.

For tests, benchmarks and notebooks: the real server (uvicorn + the app), not a mock, bound to
127.0.0.1 only, with a bounded wait for readiness and a clean stop. The thread form is fast to
start; the process form can be killed like a real remote machine going down.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx

from ..extras import require
from ..teachers.wire import SAFETENSORS

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> dict:
    """Poll ``/healthz`` until it answers (or ``timeout`` seconds, or ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"teacher server exited with code {proc.returncode} before it was ready")
        try:
            r = httpx.get(f"{url}/healthz", timeout=1.0, trust_env=False)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"teacher server at {url} not healthy after {timeout}s ({last!r})")


class ServerThread:
    """``create_app(...)`` served by uvicorn in a daemon thread of this process.

    The listening socket is bound before the thread starts, so there is no port race; pass the
    ``port`` of a stopped server to bring another one up at the same address.
    """

    def __init__(self, app: object, port: int = 0, ready_timeout: float = 15.0) -> None:
        uvicorn = require("uvicorn", "a teacher server thread")
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections: with proto 0
        # it does not, and Nagle + delayed ACKs add ~40 ms to every response.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, port))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{LOOPBACK}:{self.port}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",  # type: ignore[arg-type]
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name=f"lnpt-serve-{self.port}", daemon=True)
        self._ready_timeout = ready_timeout

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        deadline = time.monotonic() + self._ready_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("in-process teacher server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


class ServerProcess:
    """``lnpt teacher serve`` in a child process on loopback (``--no-auth`` when ``token`` is None).

    ``kill()`` is SIGKILL (a crash: no draining); ``stop()`` is SIGTERM (graceful shutdown).
    ``start()`` again brings it back on the same port. Its JSON-lines log goes to ``log_path``.
    """

    def __init__(self, checkpoint: str | Path, port: int | None = None, token: str | None = None,
                 log_path: str | Path | None = None, extra_args: tuple[str, ...] = (),
                 threads: int | None = 1) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.args = [sys.executable, "-c", "import sys; from lnpt.cli import main; sys.exit(main())",
                     "teacher", "serve", "--checkpoint", str(checkpoint), "--host", LOOPBACK,
                     "--port", str(self.port), "--log-level", "info", *extra_args]
        if threads is not None:
            self.args += ["--threads", str(threads)]
        self.env = {**os.environ}
        self.env.pop("LNPT_TEACHER_TOKEN", None)
        if token is not None:
            self.env["LNPT_TEACHER_TOKEN"] = token  # not on the command line: `ps` would show it
        else:
            self.args.append("--no-auth")  # loopback only, for tests and benchmarks
        self.log_path = Path(log_path) if log_path is not None else None
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self, ready_timeout: float = 60.0) -> "ServerProcess":
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=self._log if self._log is not None else subprocess.DEVNULL)
        wait_healthy(self.url, ready_timeout, self.proc)
        return self

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code. After a graceful shutdown uvicorn re-raises
        the signal, so that is ``-SIGTERM`` (the log's ``teacher stopped`` line tells it apart
        from a process that died without draining)."""
        return self._end(signal.SIGTERM, timeout)

    def _end(self, sig: int, timeout: float = 15.0) -> int:
        code = 0
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        elif self.proc is not None:
            code = int(self.proc.returncode)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class StalledUploads:
    """``n`` connections that announce a ``announced``-byte body, send ``sent`` bytes of it and
    then nothing: the slow (or hostile) clients the server must not let stall the others.

    With ``reopen``, a connection the server closes (its body deadline passed) is opened again
    at once, so ``n`` stalled uploads stay open for as long as the context lasts.
    """

    def __init__(self, url: str, n: int, announced: int = 100_000, sent: int = 10,
                 reopen: bool = False, path: str = "/v1/guide", token: str | None = None) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.address = (host, int(port))
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {SAFETENSORS}\r\n"
                     f"{auth}Content-Length: {announced}\r\n\r\n").encode() + b"\x00" * sent
        self.n, self.reopen = n, reopen
        self.answers: list[bytes] = []  # what the server said before it closed each one
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _hold(self) -> None:
        while not self._stop.is_set():
            with socket.create_connection(self.address, timeout=30) as s:
                s.sendall(self.head)
                s.settimeout(0.1)
                got = b""
                while not self._stop.is_set():
                    try:
                        chunk = s.recv(4096)
                    except socket.timeout:
                        continue
                    if not chunk:
                        break
                    got += chunk
                self.answers.append(got)
            if not self.reopen:
                return

    def __enter__(self) -> "StalledUploads":
        self._threads = [threading.Thread(target=self._hold, daemon=True, name=f"lnpt-stalled-{i}")
                         for i in range(self.n)]
        for t in self._threads:
            t.start()
        return self

    def wait_closed(self, timeout: float) -> bool:
        """Wait until the server has closed every connection (without ``reopen``)."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
