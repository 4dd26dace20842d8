"""``lnpt teacher serve``: put a teacher checkpoint behind HTTP (see :mod:`lnpt.serve`)."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import logging.config
import os

import torch

from ..errors import ConfigError
from ..extras import require
from ..teachers import LocalTeacher, shipped_teacher_path
from ..teachers.wire import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, TOKEN_ENV


def register(tsub: argparse._SubParsersAction) -> None:
    p = tsub.add_parser(
        "serve", help="serve a teacher's guidance over HTTP (students use --teacher http://HOST:PORT)",
        description="Serve logits and penultimate features of a teacher checkpoint over HTTP. "
                    f"The bearer token comes from --token or ${TOKEN_ENV} (prefer the variable: "
                    "a flag is visible to other users in the process list).")
    p.add_argument("--checkpoint", default=None, help="teacher checkpoint (default: the shipped teacher of --dataset)")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset of the shipped teacher (default: fashion-mnist)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument("--token", default=None, help=f"require this bearer token (default: ${TOKEN_ENV}, else none)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                   help=f"largest batch accepted (default: {DEFAULT_MAX_BATCH})")
    p.add_argument("--max-body-mb", type=float, default=DEFAULT_MAX_BODY_BYTES / 2**20,
                   help=f"largest request body in MiB (default: {DEFAULT_MAX_BODY_BYTES / 2**20:g})")
    p.add_argument("--max-concurrency", type=int, default=2,
                   help="batches computed at once, each on its own teacher replica (default: 2)")
    p.add_argument("--max-queue", type=int, default=16,
                   help="requests that may wait for a worker; beyond that the answer is 503 (default: 16)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--graceful-timeout", type=float, default=10.0,
                   help="seconds to finish in-flight requests on SIGTERM/SIGINT (default: 10)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log level of the JSON-lines log on stderr (default: info)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    for package in ("fastapi", "uvicorn"):
        require(package, "serving a teacher")
    from ..serve.logs import (  # the serve extra (FastAPI, uvicorn)
        SERVER_LOGGER,
        log_config,
    )
    from ..serve.server import create_app, run_server  # the serve extra

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    path = args.checkpoint or shipped_teacher_path(args.dataset)
    teacher = LocalTeacher.from_checkpoint(str(path))
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    try:
        app = create_app(teacher, token=token, max_batch=args.max_batch,
                         max_body_bytes=int(args.max_body_mb * 2**20),
                         max_concurrency=args.max_concurrency, max_queue=args.max_queue)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    logging.config.dictConfig(log_config(args.log_level))  # JSON lines from the first message on
    if token is None and not _is_loopback(args.host):
        logging.getLogger(SERVER_LOGGER).warning(
            "serving without a token on a non-loopback address: anyone who reaches it gets guidance")
    run_server(app, args.host, args.port, args.log_level, args.graceful_timeout)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
