"""The settings a user changes most, as typed deployment parameters (fields in the UI's run form).

Each field left empty keeps the config file's value; a filled one becomes a ``--set`` override.
Types and bounds are checked by Prefect when the run is created, before any stage starts.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# field -> the config keys it sets
TARGETS = {
    "workdir": ("workdir",),
    "seed": ("train.seed",),
    "student_steps": ("train.model.steps",),
    "teacher_steps": ("teacher.image.steps", "teacher.video.steps"),
    "device": ("train.device",),
    "threads": ("train.threads",),
    "keep_fraction": ("filter.keep_fraction",),
    "require_top1": ("filter.require_top1",),
}


class RunSettings(BaseModel):
    """Commonly changed settings; empty fields keep the config file's values."""

    model_config = ConfigDict(extra="forbid")

    workdir: str | None = Field(None, description="folder for every output of the run")
    seed: int | None = Field(None, ge=0, description="training seed (teachers and students)")
    student_steps: int | None = Field(None, ge=1, description="optimisation steps of the baseline and the student")
    teacher_steps: int | None = Field(None, ge=1, description="optimisation steps of each teacher")
    device: Literal["auto", "cpu", "cuda"] | None = Field(None, description="where training and scoring run")
    threads: int | None = Field(None, ge=1, description="compute threads this run may use (share a machine)")
    keep_fraction: float | None = Field(None, gt=0, le=1, description="share of each source and query the "
                                        "filter keeps (best-scored first)")
    require_top1: bool | None = Field(None, description="keep only samples whose teacher top-1 is their query "
                                      "(the paper's rule)")

    def overrides(self) -> list[str]:
        out = []
        for name, keys in TARGETS.items():
            value = getattr(self, name)
            if value is not None:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                out += [f"{k}={text}" for k in keys]
        return out


def all_overrides(overrides: list[str] | None, settings: RunSettings | None) -> list[str]:
    """The form's fields first, then the free-form overrides (which win where both set a key)."""
    return (settings.overrides() if settings else []) + list(overrides or [])
