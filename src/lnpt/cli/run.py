"""``lnpt run``: prune + train + evaluate one student, from a config file plus flag overrides."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import SECTIONS, RunConfig, given_settings, read_settings_file, replace_flat, run_config_from_dict
from ..device import resolve_device
from ..distributed import process_group
from ..recipes.pipeline import default_run_name, run_pipeline
from ..recipes.settings import check_given
from ..run_folder import RunFolder
from .options import add_run_sections, overrides
from .output import add_output_flags, progress_setting


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="prune a student with teacher guidance, train it label-free, evaluate",
        description="Prune at initialisation, train and evaluate one student. Settings come from "
                    "--config (TOML/YAML/JSON with sections data, model, teacher, prune, weights, channels, "
                    "score, train, loss; the older layout with five sections still loads) and are overridden "
                    "by flags. A flag the chosen mode does not read is refused. --help shows the common "
                    "flags of each group, --help-all every flag.")
    p.add_argument("--config", help="run configuration file (.toml, .yaml, .json)")
    p.add_argument("--out", help="run directory (default: runs/<model>-<criterion>-s<sparsity>-<loss>-seed<seed>-<hash>)")
    p.add_argument("--resume", action="store_true", help="continue a stopped run in --out")
    add_output_flags(p)
    p.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="seed of init, scoring and training order (default: 0)")
    add_run_sections(p, SECTIONS)
    p.set_defaults(func=_run)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The config file (if any) with the flags given on top; settings the resulting run does
    not read are refused when the file or a flag sets them."""
    raw = read_settings_file(args.config, "config") if getattr(args, "config", None) else {}
    given = overrides(args, *SECTIONS.values())
    cfg = replace_flat(run_config_from_dict(raw), given)
    check_given(cfg, given_settings(raw) | set(given))
    return cfg


def _run(args: argparse.Namespace) -> int:
    """One process, or one rank of ``torchrun --nproc_per_node N -m lnpt run ...`` (the process
    group is joined here and left when the run ends; rank 0 alone prints)."""
    cfg = config_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / default_run_name(cfg)
    with process_group(resolve_device(cfg.compute.device)) as ctx:
        summary = run_pipeline(cfg, out, resume=args.resume, progress=progress_setting(args), distributed=ctx)
    if ctx.is_main:
        print(RunFolder(out).summary_md.read_text())
        print(f"run directory: {out}")
    return 0 if summary else 1
