"""``lnpt teacher serve``: put a teacher checkpoint behind HTTP (see :mod:`lnpt.serve`)."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import logging.config
import math
import os

import torch

from ..device import resolve_device
from ..errors import ConfigError
from ..extras import require
from ..serve.limits import Batching, ClientLimits
from ..teachers import LocalTeacher, load_teacher_source, shipped_teacher_path
from ..teachers.wire import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, TOKEN_ENV, Limits
from .teacher import add_teacher_options, teacher_options


def register(tsub: argparse._SubParsersAction) -> None:
    p = tsub.add_parser(
        "serve", help="serve a teacher's guidance over HTTP (students use --teacher http://HOST:PORT)",
        description="Serve logits and penultimate features of a teacher checkpoint over HTTP. "
                    f"The bearer token comes from --token or ${TOKEN_ENV} (prefer the variable: "
                    "a flag is visible to other users in the process list).")
    p.add_argument("--checkpoint", default=None,
                   help="teacher of any format: an lnpt checkpoint, a TorchScript or ONNX file, or a model "
                        "factory with --teacher-weights (default: the shipped teacher of --dataset)")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset of the shipped teacher (default: fashion-mnist)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument("--token", default=None, help=f"require this bearer token (default: ${TOKEN_ENV})")
    p.add_argument("--no-auth", action="store_true",
                   help="serve without a token (anyone who reaches the address gets guidance); "
                        "without a token this flag is required")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                   help=f"largest batch one request may send (default: {DEFAULT_MAX_BATCH}); see --dynamic-batch for "
                        "the size of merged forwards")
    p.add_argument("--max-body-mb", type=float, default=DEFAULT_MAX_BODY_BYTES / 2**20,
                   help=f"largest request body in MiB (default: {DEFAULT_MAX_BODY_BYTES / 2**20:g})")
    p.add_argument("--max-concurrency", type=int, default=2,
                   help="batches computed at once, each on its own teacher replica (default: 2)")
    p.add_argument("--max-queue", type=int, default=16,
                   help="requests that may wait for a worker; beyond that the answer is 503 (default: 16)")
    p.add_argument("--dynamic-batch", type=int, default=Batching.max_images, metavar="N",
                   help="merge concurrent requests into one teacher forward of up to N images, run by one "
                        "worker (helps on a GPU with many small requests); 0 = off, every request is its own "
                        "forward on one of --max-concurrency replicas (default: %(default)d)")
    p.add_argument("--dynamic-batch-wait-ms", type=float, default=Batching.max_wait_ms, metavar="MS",
                   help="with --dynamic-batch: how long the oldest request waits for others to join its "
                        "forward (default: %(default)g)")
    p.add_argument("--body-timeout", type=float, default=ClientLimits.body_timeout,
                   help="seconds a client has to send a request's body; then 408 (default: %(default)g)")
    p.add_argument("--request-timeout", type=float, default=ClientLimits.request_timeout,
                   help="seconds for a whole request, body, queue and compute; then 504 (default: %(default)g)")
    p.add_argument("--max-uploads", type=int, default=ClientLimits.max_uploads,
                   help="request bodies received at once; beyond that 503 (default: %(default)d)")
    p.add_argument("--max-uploads-per-client", type=int, default=ClientLimits.max_uploads_per_client,
                   help="of those, from one client address (default: %(default)d)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="where the teacher runs: auto (the first CUDA GPU when there "
                                                     "is one), cpu, cuda, cuda:N, mps (default: auto)")
    p.add_argument("--graceful-timeout", type=float, default=10.0,
                   help="seconds to finish in-flight requests on SIGTERM/SIGINT (default: 10)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log level of the JSON-lines log on stderr (default: info)")
    add_teacher_options(p)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    for package in ("fastapi", "uvicorn"):
        require(package, "serving a teacher")
    from ..serve.logs import (  # the serve extra (FastAPI, uvicorn)
        SERVER_LOGGER,
        log_config,
    )
    from ..serve.server import create_app, run_server  # the serve extra

    _check_flags(args)
    token = _token(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)  # a device this machine lacks: one line, before loading
    path = args.checkpoint or shipped_teacher_path(args.dataset)
    teacher = load_teacher_source(str(path), teacher_options(args))
    if isinstance(teacher, LocalTeacher):
        teacher.to(device)  # other formats compute where their own runtime does
    try:
        clients = ClientLimits(args.body_timeout, args.request_timeout, args.max_uploads,
                               args.max_uploads_per_client)
        app = create_app(teacher, token=token, limits=Limits(args.max_batch, int(args.max_body_mb * 2**20)),
                         max_concurrency=args.max_concurrency, max_queue=args.max_queue,
                         allow_unauthenticated=args.no_auth, clients=clients,
                         batching=Batching(args.dynamic_batch, args.dynamic_batch_wait_ms))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    logging.config.dictConfig(log_config(args.log_level))  # JSON lines from the first message on
    if token is None and not _is_loopback(args.host):
        logging.getLogger(SERVER_LOGGER).warning(
            "serving without a token on a non-loopback address: anyone who reaches it gets guidance")
    run_server(app, args.host, args.port, args.log_level, args.graceful_timeout)
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse numbers no server can use before anything is loaded or bound."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if not args.max_body_mb > 0 or not math.isfinite(args.max_body_mb):
        raise ConfigError(f"--max-body-mb must be a positive number, got {args.max_body_mb:g}")
    if not args.graceful_timeout >= 0 or not math.isfinite(args.graceful_timeout):
        raise ConfigError(f"--graceful-timeout must be >= 0 seconds, got {args.graceful_timeout:g}")


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token, from --token or the environment; None only with --no-auth."""
    if args.token is not None:
        token, source = args.token, "--token"
    else:
        token, source = os.environ.get(TOKEN_ENV), f"${TOKEN_ENV}"
    if token is not None and not token.strip():
        raise ConfigError(f"{source} is empty: an empty token would switch authentication off; "
                          "pass a real token, or --no-auth to serve without one")
    if token is not None and args.no_auth:
        raise ConfigError(f"--no-auth contradicts the token from {source}; drop one of them")
    if token is None and not args.no_auth:
        raise ConfigError(f"no token: set ${TOKEN_ENV} (or --token), or pass --no-auth to serve "
                          "without authentication")
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
