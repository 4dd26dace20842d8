"""Where a command computes: its settings' device, precision and layout, placed for this
process's rank, and the teacher put on its own device."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import ComputeConfig
from ..device import Placement, placement
from ..distributed import SINGLE, Distributed
from ..teachers import LocalTeacher, Teacher


@dataclass(frozen=True)
class Where:
    """A run's placement and its place in a data-parallel run, handed to the recipes together."""

    placement: Placement = Placement()
    distributed: Distributed = SINGLE


def run_placement(cfg: ComputeConfig, distributed: Distributed = SINGLE) -> Placement:
    """The checked placement ``cfg`` asks for (a device the machine lacks fails in one line).
    Under torchrun each rank computes on its own device (``cuda:LOCAL_RANK``), as the
    process group chose; a teacher without a device of its own follows it."""
    place = placement(cfg.device, cfg.precision, cfg.channels_last, cfg.teacher_device)
    if distributed.active and distributed.device != place.device:
        place = dataclasses.replace(place, device=distributed.device)
    return place


def place_teacher(teacher: Teacher, where: Placement) -> Teacher:
    """Run an in-process teacher on the placement's teacher device; other teachers (remote,
    TorchScript, ONNX) stay where they compute and answer on the CPU."""
    if isinstance(teacher, LocalTeacher):
        teacher.to(where.teacher)
    return teacher
