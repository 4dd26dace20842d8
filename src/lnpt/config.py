"""Frozen dataclasses for every setting: the single source of truth.

They generate the CLI flags (see :mod:`lnpt.cli.options`), are saved in each run directory and
are read back from TOML/YAML files. Field names are unique across sections so that each one
is also a flat CLI flag (``sparsity`` -> ``--sparsity``). A new setting defaults to the old
behaviour. Choices that docs/METHOD.md marks as [choice] are fields here, so measurements can pick
their defaults.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None, *, low: float | None = None,
       high: float | None = None, open_low: bool = False, open_high: bool = False) -> Any:
    """A setting: its default, help text, and what it may hold: one of ``choices``, or a number
    in the range ``low``..``high`` (each end excluded when ``open_*``). A number with a range
    must also be finite. :func:`validate_section` checks them for config files and flags alike,
    so a new setting is checked by declaring its range here."""
    return field(default=default, metadata={"help": help, "choices": choices, "low": low, "high": high,
                                            "open_low": open_low, "open_high": open_high})


@dataclass(frozen=True)
class DataConfig:
    dataset: str = _f("fashion-mnist", "dataset name (see `lnpt list datasets`)")
    data_dir: str | None = _f(None, "folder holding the dataset files (else $LNPT_DATA, system folders, download)")
    val_fraction: float = _f(0.1, "fraction of the training set held out as validation (unlabeled gap metric)",
                              low=0, high=1, open_high=True)
    split_seed: int = _f(0, "seed of the train/validation split and of subsets", low=0)
    train_subset: int | None = _f(None, "use only this many training samples (CPU-sized runs)", low=1)
    test_subset: int | None = _f(None, "evaluate on only this many test samples", low=1)
    batch_size: int = _f(128, "training batch size", low=1)
    augment: bool = _f(False, "random crop (and flip where it fits) during training")
    unlabeled: tuple[str, ...] = _f((), "train on your own unlabeled images instead of the dataset: a folder "
                                        "(searched recursively; sub-folder names are never read) or a text "
                                        "file listing image paths; repeat the flag for several sources. "
                                        "Images are sized and normalised as the teacher expects; "
                                        "--val-fraction of them (drawn with --split-seed) are held out for "
                                        "the label-free metrics")
    on_bad_image: str = _f("skip", "--unlabeled: an unreadable image is skipped and counted (skip) or "
                                   "ends the run naming the file (fail)", ("skip", "fail"))
    loader_workers: int = _f(2, "--unlabeled: worker processes decoding images (0 = in this process; "
                                "the batches are the same for any count)", low=0)
    eval: str | None = _f(None, "--unlabeled: a labeled folder <class>/<images> whose class names are the "
                                "teacher's; the student's accuracy is measured on it")


@dataclass(frozen=True)
class ModelConfig:
    model: str = _f("lenet5", "student architecture (see `lnpt list models`)")
    width: float = _f(1.0, "width multiplier of the student", low=0, open_low=True)
    init_from: str | None = _f(None, "start from the weights of this dense lnpt checkpoint, or a run "
                                     "folder's final.pt (e.g. of `lnpt run --sparsity 0`), instead of a "
                                     "fresh initialisation: train, then prune, then fine-tune with "
                                     "--epochs/--lr; '{seed}' in the path becomes the run's seed")
    model_args: str | None = _f(None, "JSON object of keyword arguments for a user model's factory "
                                      "(--model package.module:function or file.py:function), e.g. "
                                      "'{\"channels\": 32}'")


@dataclass(frozen=True)
class TeacherConfig:
    teacher: str = _f("shipped", "teacher checkpoint path, http(s)://host:port of a teacher server (several, "
                                 "comma-separated: spread with failover), or 'shipped'")
    teacher_cache: bool = _f(True, "cache teacher outputs of un-augmented inputs (teacher runs once per sample)")
    teacher_store: str | None = _f(None, "folder where teacher outputs are stored and reused across runs (sweeps)")
    teacher_timeout: float = _f(30.0, "seconds before a remote teacher request times out")
    teacher_retry_budget: float = _f(120.0, "seconds a remote teacher may be unreachable before the run stops")
    teacher_token: str | None = _f(None, "bearer token of a remote teacher (else $LNPT_TEACHER_TOKEN); "
                                         "never written to the run directory")
    teacher_prefetch: str = _f("auto", "compute the next batch's teacher outputs in a worker thread while the "
                                       "student trains: auto = for remote teachers, and for local ones when "
                                       "torch leaves half the CPU cores idle (results are identical either way)",
                               ("auto", "on", "off"))
    teacher_weights: str | None = _f(None, "weights (torch.save state_dict or .safetensors) of a teacher "
                                           "given as a model factory (--teacher package.module:function)")
    teacher_sidecar: str | None = _f(None, "JSON naming the teacher's input size, normalisation and classes "
                                           "(default: the file beside the teacher's file)")
    teacher_features: str | None = _f(None, "ONNX teacher: name of the penultimate feature tensor "
                                            "(default: found in the graph)")
    teacher_trust_code: bool = _f(False, "a teacher that is an lnpt checkpoint of a user model: run the factory "
                                         "it names to rebuild it (only for files you trust)")


@dataclass(frozen=True)
class PruneConfig:
    """What every pruning run reads, by weight masking or channel removal: the criterion, the
    scoring batches, where labels come from and when the student is pruned."""
    criterion: str = _f("lnpt", "pruning criterion (see `lnpt list criteria`, `lnpt list channel-criteria`)")
    structured: bool = _f(False, "remove whole channels physically (the model really shrinks) instead of "
                                 "masking weights; --criterion names the channel criterion")
    batches: int = _f(4, "number of unlabeled scoring batches")
    score_batch_size: int = _f(256, "batch size of the scoring batches", low=1)
    score_bn: str = _f("train", "BatchNorm while scoring: 'train' normalises each scoring batch by its own "
                                "statistics (as in training); 'frozen' first estimates the statistics on "
                                "the scoring batches, then scores with them fixed, so a filter's scale is "
                                "no longer invisible to the score", ("train", "frozen"))
    label_source: str = _f("teacher", "labels for SNIP/GraSP: teacher pseudo-labels or true labels",
                           ("teacher", "true"))
    prune_first: bool = _f(True, "also prune the first layer")
    prune_after_epochs: int = _f(0, "lnpt run: train the dense student label-free for this many epochs "
                                    "before scoring and pruning it (0 = prune at initialisation, as the "
                                    "paper; > 0 = early pruning: the scores see a partly trained network, "
                                    "and --epochs more follow after pruning)")


@dataclass(frozen=True)
class WeightPruneConfig:
    """Weight pruning (masks): read unless ``--structured``."""
    sparsity: float = _f(0.9, "fraction of prunable weights removed, in [0, 1)")
    scope: str = _f("global", "rank scores across all layers or within each layer", ("global", "layer"))
    rounds: int | None = _f(None, "scoring rounds (1 = one-shot; K > 1 = exponential density schedule d^(k/K), "
                                  "rescoring under the current mask); none = the criterion's own default "
                                  "(100 for synflow as in its paper, 1 for the others)", low=1)
    prune_classifier: bool = _f(False, "also prune the final classifier (dense by default, as Synaptic-Flow)")
    min_kept: int = _f(1, "layer-collapse guard: every prunable layer keeps at least this many weights", low=0)


@dataclass(frozen=True)
class ChannelPruneConfig:
    """Channel pruning (physical removal): read with ``--structured``."""
    channel_ratio: float = _f(0.5, "fraction of each layer's channels removed, in [0, 1)")
    channel_scope: str = _f("layer", "the same ratio in every layer, or rank channels across "
                                     "layers (scores normalised by their layer's mean)", ("layer", "global"))
    channel_budget: str = _f("channels", "global scope: remove --channel-ratio of all channels "
                                          "(channels), or as many as it takes to cost no more MACs than the "
                                          "layer-wise plan at the same ratio (macs: the criterion only decides "
                                          "how the same compute is spread over the layers)",
                             ("channels", "macs"))
    channel_norm: str = _f("mean", "global scope: how scores of different layers are made "
                                   "comparable before one ranking: divided by their layer's mean (mean), or "
                                   "by the MACs one channel of the layer costs (per-mac: saliency per unit "
                                   "of compute, the greedy knapsack of resource-aware pruning)",
                           ("mean", "per-mac"))
    min_channels: int = _f(1, "every layer keeps at least this many channels", low=1)
    round_to: int = _f(1, "round each layer's kept channel count to a multiple of this "
                          "(8 suits CPU vector units); 1 = no rounding", low=1)


@dataclass(frozen=True)
class ScoreConfig:
    """Criterion settings. Each criterion declares which of them it reads (its settings
    dataclass in :mod:`lnpt.pruning.criteria`); the others are refused for it."""
    score_tau: float = _f(4.0, "temperature of the feature smoothing in the LNPT score", low=0, open_low=True)
    score_distance: str = _f("kl", "feature distance of the LNPT score", ("kl", "mse"))
    score_smoothing: str = _f("softmax", "feature smoothing of the LNPT score", ("softmax", "l2", "none"))
    score_adapter: str = _f("auto", "how the LNPT score compares student and teacher features: 'auto' "
                                    "fits a ridge least-squares map only when their sizes differ and "
                                    "compares channel i with teacher channel i when they match; 'fit' "
                                    "always fits the map, so an arbitrary pairing of a random student's "
                                    "channels with the teacher's does not steer the score", ("auto", "fit"))
    score_ce_weight: float = _f(0.0, "weight of the teacher pseudo-label cross-entropy added to L_fm in the "
                                     "lnpt scores, so the classifier gets a score (needed with --prune-classifier)",
                                 low=0)
    fm_saliency: str = _f("abs-sum", "channel criterion lnpt-fm: per sample, sum |a*g| over positions "
                                      "(abs-sum) or take |sum a*g| (sum-abs: the first-order change of L_fm when "
                                      "the channel is zeroed, Molchanov et al.'s Taylor criterion)",
                          ("abs-sum", "sum-abs"))


@dataclass(frozen=True)
class TrainConfig:
    """Defaults chosen on validation accuracy (docs/RESULTS.md, "Tuning"): lr 0.2 with gradient
    clipping at 1.0 and one warm-up epoch was the best recipe for every loss, supervised
    included; the LNPT loss did best with beta 1 and tau 1."""
    loss: str = _f("lnpt", "training loss (see `lnpt list losses`)")
    epochs: int = _f(10, "training epochs", low=1)
    optimizer: str = _f("sgd", "optimizer", ("sgd", "adam"))
    lr: float = _f(0.2, "peak learning rate", low=0, open_low=True)
    momentum: float = _f(0.9, "SGD momentum", low=0, high=1, open_high=True)
    weight_decay: float = _f(5e-4, "weight decay", low=0)
    schedule: str = _f("cosine", "learning-rate schedule after warm-up: cosine decay to zero, constant, or step "
                                 "(divided by 10 at half and again at three quarters of the steps)", ("cosine", "constant", "step"))
    clip_grad_norm: float | None = _f(1.0, "clip the gradient's global L2 norm to this value (None: no clipping)",
                                      low=0, open_low=True)
    warmup_epochs: float = _f(1.0, "linear learning-rate warm-up over this many epochs before the schedule", low=0)
    early_schedule: str = _f("restart", "with --prune-after-epochs N: the pruned student's training starts "
                                        "its own learning-rate schedule (restart), or both phases follow "
                                        "one schedule over N + --epochs epochs and pruning happens at epoch N "
                                        "(continue: no second warm-up, no return to the peak rate)",
                             ("restart", "continue"))
    eval_every: int = _f(1, "evaluate (and log metrics) every N epochs", low=1)


@dataclass(frozen=True)
class LossConfig:
    """Loss settings. Each loss declares which of them it reads (its settings dataclass in
    :mod:`lnpt.train.losses`); the others are refused for it."""
    beta: float = _f(1.0, "weight of the feature-map term in the LNPT loss", low=0)
    tau: float = _f(1.0, "temperature of the feature smoothing in the LNPT loss and in the learning-gap metric",
                     low=0, open_low=True)
    distance: str = _f("kl", "feature distance in the LNPT loss", ("kl", "mse"))
    smoothing: str = _f("softmax", "feature smoothing in the LNPT loss", ("softmax", "l2", "none"))
    kd_tau: float = _f(4.0, "temperature of Hinton soft-target distillation (loss 'kd')", low=0, open_low=True)
    kd_alpha: float = _f(0.9, "weight of the soft targets in loss 'kd'", low=0, high=1)


@dataclass(frozen=True)
class ComputeConfig:
    """Where and how a run computes (:mod:`lnpt.device`, :mod:`lnpt.distributed`). These say how
    a run executes, not what it computes: they are saved with the run but leave its fingerprint
    alone (they are :data:`OPERATIONAL`), so a run started on one device resumes on another."""
    device: str = _f("auto", "where the student trains and is scored: auto (the first CUDA GPU when there is "
                             "one, else the CPU), cpu, cuda, cuda:N or mps")
    teacher_device: str | None = _f(None, "where an in-process teacher runs (default: the student's device)")
    precision: str = _f("fp32", "training forward passes in fp32, or under autocast to bf16 or fp16 (fp16 with "
                                "a gradient scaler); pruning scores are computed in fp32 either way",
                        ("fp32", "bf16", "fp16"))
    channels_last: bool = _f(False, "NHWC memory layout for convolutions (what GPU tensor cores prefer)")
    sync_batchnorm: bool = _f(False, "under torchrun on CUDA: BatchNorm statistics over the global batch "
                                     "instead of each process's share")


@dataclass(frozen=True)
class PruneSettings:
    """Everything pruning reads: the shared settings, both modes' sections (only the chosen
    one is read) and the criterion settings. :attr:`RunConfig.pruning` builds it."""
    prune: PruneConfig = field(default_factory=PruneConfig)
    weights: WeightPruneConfig = field(default_factory=WeightPruneConfig)
    channels: ChannelPruneConfig = field(default_factory=ChannelPruneConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    weights: WeightPruneConfig = field(default_factory=WeightPruneConfig)
    channels: ChannelPruneConfig = field(default_factory=ChannelPruneConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    seed: int = _f(0, "seed of the student's initialisation, scoring batches and training order")

    @property
    def pruning(self) -> PruneSettings:
        return PruneSettings(self.prune, self.weights, self.channels, self.score)


SECTIONS: dict[str, type] = {
    "data": DataConfig, "model": ModelConfig, "teacher": TeacherConfig, "prune": PruneConfig,
    "weights": WeightPruneConfig, "channels": ChannelPruneConfig, "score": ScoreConfig,
    "train": TrainConfig, "loss": LossConfig, "compute": ComputeConfig,
}
#: Which section owns each flat setting name (names are unique across sections).
HOME: dict[str, str] = {f.name: name for name, cls in SECTIONS.items() for f in fields(cls)}


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


#: Settings that change how a run executes, not what it computes. They are left out of a run's
#: fingerprint and of the resume check, so moving the teacher store, raising a timeout or
#: turning prefetch on does not orphan a run folder.
OPERATIONAL: frozenset[str] = frozenset(
    {"teacher_store", "teacher_timeout", "teacher_retry_budget", "teacher_token", "teacher_prefetch",
     "on_bad_image", "loader_workers", "teacher_trust_code", *(f.name for f in fields(ComputeConfig))})
#: Settings never written to disk (run folders are shared and committed to result tables).
SECRET: frozenset[str] = frozenset({"teacher_token"})
REDACTED = "<redacted>"


#: Today's sections as they were before weight, channel, score and loss settings got their own
#: (every key in its old order). Run folders and sweep files written then use this layout; a
#: run's fingerprint and a sweep cell's name are computed from it, so they did not change.
LEGACY_LAYOUT: dict[str, tuple[str, ...]] = {
    "data": ("dataset", "data_dir", "val_fraction", "split_seed", "train_subset", "test_subset", "batch_size",
             "augment"),
    "model": ("model", "width", "init_from"),
    "teacher": ("teacher", "teacher_cache", "teacher_store", "teacher_timeout", "teacher_retry_budget",
                "teacher_token", "teacher_prefetch"),
    "prune": ("criterion", "sparsity", "scope", "rounds", "batches", "score_batch_size", "score_tau",
              "score_distance", "score_smoothing", "score_adapter", "score_bn", "label_source", "prune_first",
              "prune_classifier", "min_kept", "score_ce_weight", "structured", "channel_ratio", "channel_scope",
              "channel_budget", "channel_norm", "min_channels", "fm_saliency", "round_to", "prune_after_epochs",
              "early_schedule"),
    "train": ("loss", "epochs", "optimizer", "lr", "momentum", "weight_decay", "schedule", "clip_grad_norm",
              "warmup_epochs", "beta", "tau", "distance", "smoothing", "kd_tau", "kd_alpha", "eval_every"),
}
#: Every flat setting name in the legacy order (the order of sweep cell names), seed last.
SETTING_ORDER: tuple[str, ...] = tuple(k for keys in LEGACY_LAYOUT.values() for k in keys) + ("seed",)


def _flat(cfg: RunConfig) -> dict[str, Any]:
    return {k: v for name in SECTIONS for k, v in to_dict(getattr(cfg, name)).items()}


def legacy_settings(cfg: RunConfig) -> dict:
    """``cfg`` rendered in :data:`LEGACY_LAYOUT` (the five sections of config.json before the
    change): what a run's fingerprint is computed from. A setting added later enters only when
    it differs from its default: a new setting defaults to the old behaviour, so at its default
    the run is the run it was, keeps its name and resumes."""
    flat = _flat(cfg)
    out: dict[str, Any] = {section: {k: flat[k] for k in keys} for section, keys in LEGACY_LAYOUT.items()}
    for name in SECTIONS:  # settings added since: in their own section, when not at their default
        section = getattr(cfg, name)
        default = to_dict(type(section)())
        for key, value in sorted(to_dict(section).items()):
            if key not in SETTING_ORDER and value != default[key]:
                out.setdefault(name, {})[key] = value
    return {**out, "seed": cfg.seed}


def migrate_layout(d: dict) -> dict:
    """A parsed config in either layout, in the current one: each key an old section held
    that now lives elsewhere moves to its home (``prune.sparsity`` -> ``weights.sparsity``)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for section, keys in LEGACY_LAYOUT.items():
        values = out.get(section)
        if not isinstance(values, dict):
            continue
        for key in [k for k in values if k in keys and HOME[k] != section]:
            home = out.setdefault(HOME[key], {})
            if not isinstance(home, dict):
                continue  # reported as a bad section by run_config_from_dict
            if key in home:
                raise ConfigError(f"config key {key!r} is given twice: as '{section}.{key}' and '{HOME[key]}.{key}'")
            home[key] = values.pop(key)
    return out


def given_settings(d: dict) -> set[str]:
    """The flat names of the settings a parsed config (either layout) sets to something other
    than their default: what a run that does not read them must refuse. (A saved config.json
    lists every setting, so a default value in a file counts as not given.)"""
    defaults = json.loads(json.dumps(_flat(RunConfig())))  # tuples as lists, as a parsed file has them
    return {k for v in migrate_layout(d).values() if isinstance(v, dict)
            for k, value in v.items() if k in defaults and value != defaults[k]}


def result_settings(cfg: RunConfig) -> dict:
    """The nested settings that decide a run's result: everything but :data:`OPERATIONAL`."""
    return _without_operational(to_dict(cfg))


def fingerprint_settings(cfg: RunConfig) -> dict:
    """:func:`result_settings` in the legacy layout: hashed into a run's fingerprint, so a run
    folder written before the layout changed keeps its name and resumes."""
    return _without_operational(legacy_settings(cfg))


def _without_operational(nested: dict) -> dict:
    """``nested`` without :data:`OPERATIONAL` settings, and without a section that held only
    those (``compute``), so adding one changes no fingerprint."""
    kept = {k: ({kk: vv for kk, vv in v.items() if kk not in OPERATIONAL} if isinstance(v, dict) else v)
            for k, v in nested.items()}
    return {k: v for k, v in kept.items() if v != {} or not isinstance(nested[k], dict) or nested[k] == {}}


def saved_settings(cfg: RunConfig) -> dict:
    """What a run directory's ``config.json`` holds: every setting, secrets redacted."""
    return {k: ({kk: (REDACTED if kk in SECRET and vv is not None else vv) for kk, vv in v.items()}
                if isinstance(v, dict) else v)
            for k, v in to_dict(cfg).items()}


def settings_differences(saved: dict, cfg: RunConfig) -> list[str]:
    """``section.key`` of every result-deciding setting whose value in ``saved`` (a config.json
    read back, in either layout) differs from ``cfg``. Keys ``saved`` lacks are settings added
    after it was written; they default to the old behaviour, so they count only if ``cfg``
    changed them."""
    saved = migrate_layout(saved)
    want = json.loads(json.dumps(result_settings(cfg)))
    defaults = json.loads(json.dumps(result_settings(RunConfig())))
    out = []
    for section, values in want.items():
        have = saved.get(section)
        if isinstance(values, dict):
            have = have if isinstance(have, dict) else {}
            for key, value in values.items():
                if have.get(key, defaults[section].get(key)) != value:
                    out.append(f"{section}.{key}")
        elif have != values:
            out.append(section)
    return out


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(tp) is tuple:  # a list of strings (a repeatable flag)
        if isinstance(value, str):
            return (value,)
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"config key {key!r} must be a list of strings, got {value!r}")
    else:
        return value
    raise ConfigError(f"config key {key!r} must be {tp.__name__}, got {value!r} ({type(value).__name__})")


def _section_from(cls: type, values: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config key '{where}{unknown[0]}'; known in this section: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], where + k) for k, v in values.items()}
    obj = cls(**kwargs)
    validate_section(obj)
    return obj


def validate_section(obj: Any) -> None:
    """Check each field's choices and declared range (see :func:`_f`): the one check that config
    files and flags both pass, before anything is loaded or written."""
    for f in fields(obj):
        choices = f.metadata.get("choices")
        value = getattr(obj, f.name)
        if choices and value not in choices:
            raise ConfigError(f"config key {f.name!r} must be one of {', '.join(choices)}, got {value!r}")
        _check_range(f, value)


def _check_range(f: dataclasses.Field, value: Any) -> None:
    """Refuse a number outside the field's declared range (or not finite), naming the flag, the
    config key and the range."""
    low, high = f.metadata.get("low"), f.metadata.get("high")
    if (low is None and high is None) or value is None or isinstance(value, bool):
        return
    if not isinstance(value, (int, float)):
        return  # a wrong type is refused by _coerce (files) or argparse (flags)
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if f.metadata.get("open_low") else value >= low
    if ok and high is not None:
        ok = value < high if f.metadata.get("open_high") else value <= high
    if ok:
        return
    if low is not None and high is not None:
        span = ("(" if f.metadata.get("open_low") else "[") + f"{low:g}, {high:g}" + (
            ")" if f.metadata.get("open_high") else "]")
        want = f"in {span}"
    elif low is not None:
        want = (">" if f.metadata.get("open_low") else ">=") + f" {low:g}"
    else:
        want = ("<" if f.metadata.get("open_high") else "<=") + f" {high:g}"
    kind = "an integer" if isinstance(value, int) else "a finite number"
    raise ConfigError(f"--{f.name.replace('_', '-')} (config key '{HOME.get(f.name, '?')}.{f.name}') must be "
                      f"{kind} {want}, got {value!r}; give a value in that range")


def check_choice(obj: Any, name: str, error: type[Exception] = ConfigError) -> None:
    """Refuse ``obj.<name>`` outside its field's choices, naming the flag and the choices: the
    check library callers get when they build a config directly, past :func:`validate_section`."""
    choices = next(f.metadata["choices"] for f in fields(obj) if f.name == name)
    value = getattr(obj, name)
    if value not in choices:
        raise error(f"unknown --{name.replace('_', '-')} {value!r}; known: {', '.join(choices)}")


def run_config_from_dict(d: dict) -> RunConfig:
    """Build a RunConfig from nested dicts (a parsed TOML/YAML/JSON file, in the current or the
    legacy layout), rejecting unknown keys."""
    if not isinstance(d, dict):
        raise ConfigError("a config file must hold a table/mapping at its top level")
    unknown = sorted(set(d) - set(SECTIONS) - {"seed"})
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; known: {', '.join(sorted(SECTIONS))}, seed")
    d = migrate_layout(d)
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        section = d.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"config key {name!r} must be a table of settings")
        kwargs[name] = _section_from(cls, section, f"{name}.")
    if "seed" in d:
        kwargs["seed"] = _coerce(d["seed"], int, "seed")
    return RunConfig(**kwargs)


def read_settings_file(path: str | Path, what: str = "config") -> Any:
    """Parse a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file (run configs and sweep files);
    any failure is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {path} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"{what} file {path} must end in .toml, .yaml, .yml or .json")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return _toml_loads(text)
        if path.suffix == ".json":
            return json.loads(text)
        import yaml
        return yaml.safe_load(text) or {}
    except Exception as exc:  # tomllib/json raise ValueError, yaml its own YAMLError
        raise ConfigError(f"cannot parse {what} file {path}: {exc}") from None


def load_config_file(path: str | Path) -> RunConfig:
    """Read a ``.toml``, ``.yaml``/``.yml`` or ``.json`` run configuration."""
    return run_config_from_dict(read_settings_file(path, "config"))


def replace_flat(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply flat overrides (``{"sparsity": 0.95}``) to the section that owns each key."""
    changes: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key != "seed" and key not in HOME:
            raise ConfigError(f"unknown setting {key!r}")
        if key != "seed":
            changes.setdefault(HOME[key], {})[key] = value
    sections = {}
    for name, values in changes.items():
        sections[name] = dataclasses.replace(getattr(cfg, name), **values)
        validate_section(sections[name])
    return dataclasses.replace(cfg, **sections, seed=overrides.get("seed", cfg.seed))


def prune_settings(**flat: Any) -> PruneSettings:
    """Pruning settings from flat names (``prune_settings(criterion="snip", sparsity=0.95)``),
    each checked like a flag: the library's shorthand for what ``lnpt prune`` reads."""
    unknown = [k for k in flat if HOME.get(k) not in ("prune", "weights", "channels", "score")]
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a pruning setting")
    return replace_flat(RunConfig(), flat).pruning


def _toml_loads(text: str) -> dict:
    """TOML from the standard library (Python 3.11+), or from tomli, its backport, on 3.10."""
    try:
        import tomllib  # standard library from 3.11; deferred so 3.10 can fall back
    except ModuleNotFoundError:
        import tomli as tomllib  # the backport, a core dependency only on Python 3.10
    return tomllib.loads(text)
