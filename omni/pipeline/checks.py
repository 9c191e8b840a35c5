"""What a config must satisfy before any stage runs."""
from __future__ import annotations

from pathlib import Path

from ..config import Config, ConfigError
from .keys import source_local_paths
from .layout import teacher_kinds


def check_config(cfg: Config) -> None:
    """Problems a config has before any stage runs (raises ConfigError, or ListError for a list
    that cannot be read at all): class names, workdir, each model's arch and pretrained weights
    (a file, or a name in its library's cache), and every target and crawl list (a bad row of a
    crawl list is not an error: ingest records its reason)."""
    from ..fetching.lists import read_target_list
    from ..learning.models import arch_problem
    from ..learning.pretrained import problem as pretrained_problem

    names = cfg.class_names()
    if Path(cfg.workdir).exists() and not Path(cfg.workdir).is_dir():
        raise ConfigError(f"workdir {cfg.workdir} is a file, not a folder")
    used = [(f"teacher.{k}", getattr(cfg.teacher, k)) for k in teacher_kinds(cfg)] + [("train.model", cfg.train.model)]
    for where, m in used:
        problem = arch_problem(m.arch)
        if problem:
            raise ConfigError(f"{where}.arch: {problem}")
        if m.pretrained is not None:  # a file, or a name in its library's cache (never downloaded)
            problem = pretrained_problem(m.pretrained, m.arch)
            if problem:
                raise ConfigError(f"{where}.pretrained: {problem}")
    seen: set[str] = set()
    for pair in cfg.train.augment.flip_label_map:
        unknown = [c for c in pair if c not in names]
        if unknown:
            raise ConfigError(f"train.augment.flip_label_map: {unknown[0]!r} is not a class (classes: "
                              f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
        if pair[0] == pair[1] or seen & set(pair):
            raise ConfigError(f"train.augment.flip_label_map: {list(pair)}: each class may be in one pair, "
                              "with another class")
        seen |= set(pair)
    for split in ("train", "val"):
        read_target_list(getattr(cfg.target, split), names)
    for src in cfg.sources:
        folder = Path(src.list)
        if folder.is_dir() and Path(cfg.workdir).resolve().is_relative_to(folder.resolve()):
            raise ConfigError(f"workdir {cfg.workdir} is inside the folder of source {src.name!r}'s lists "
                              f"({folder}): omni's own files would be read as crawl lists; put it elsewhere")
        source_local_paths(cfg, src)  # reads the list (and keeps what the keys need from it)
