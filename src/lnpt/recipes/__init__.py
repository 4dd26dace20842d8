"""Recipes: what the commands compose from the layers below.

Prune and train one student (:mod:`.pipeline`), the student a run starts from
(:mod:`.start`), and training a teacher (:mod:`.teacher_training`). Nothing below this
package knows these recipes exist.
"""
from __future__ import annotations

from .pipeline import default_run_name, fingerprint, run_pipeline
from .teacher_training import train_teacher

__all__ = ["default_run_name", "fingerprint", "run_pipeline", "train_teacher"]
