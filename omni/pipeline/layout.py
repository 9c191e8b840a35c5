"""Where the pipeline's work lives: the stages, their units and folders, and which units read which.

A stage runs as one or more *units*, each with its own folder and key:

| stage    | units                                    | folder                       |
|----------|------------------------------------------|------------------------------|
| ingest   | ``ingest/target``, ``ingest/<source>``   | ``<workdir>/ingest/<part>``  |
| extract  | ``extract/target``, ``extract/<source>`` | ``<workdir>/extract/<part>`` |
| teacher  | ``teacher/image``, ``teacher/video``     | ``<workdir>/teacher/<part>`` |
| score    | ``score/<source>``                       | ``<workdir>/score/<part>``   |
| filter   | ``filter``                               | ``<workdir>/filter``         |
| manifest | ``manifest``                             | ``<workdir>/manifest``       |
| train    | ``train/baseline``, [``train/first_round``,] ``train/omnisource`` | ``<workdir>/train/<run>`` |
| evaluate | ``evaluate/baseline``, ``evaluate/omnisource`` | ``<workdir>/eval/<run>`` |

A unit's body receives exactly the settings it reads (``keys.unit_settings``) plus runtime-only
knobs (``keys.RUNTIME_ONLY``: how fast, never what), and its key hashes exactly those settings,
the content of the user files it reads and the keys of the units it reads. So the target
work never depends on a crawl list, and editing one list redoes only that source's units,
``filter``, ``manifest`` and the OmniSource student.

A unit is done when ``<unit dir>/_done.json`` holds its key (keys.py). omni deletes only folders
it can prove it made (they hold its ``_started.json``), and only inside a workdir that it made
(runner.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, SourceConfig

STAGES = ("ingest", "extract", "teacher", "score", "filter", "manifest", "train", "evaluate")
STAGES_BEFORE_TRAINING = STAGES[:STAGES.index("train")]  # what `omni ablate` reads
VERSIONS = {"ingest": 5, "extract": 3, "teacher": 5, "score": 2, "filter": 2, "manifest": 2, "train": 5,
            "evaluate": 3}
# (teacher, train 4: full target batches, omni/learning/train.py FullBatches; 5: the noise augmentation's
# values come from a bank drawn once per process, omni/learning/data.py noise_slice)
FETCH_VERSION = 3  # the downloads journal: bump only when what a fetch records changes
# (3: images and frames under 16 px refused, rotated videos' shown size and thumbnails, TS/WebM measured from packets)
GPU_STAGES = frozenset({"teacher", "score", "train", "evaluate"})
RUNS = ("baseline", "first_round", "omnisource")
RANKED_STAGES = frozenset({"teacher", "score", "train"})  # under torchrun every rank works on these

WORKDIR_MARKER = ".omni-workdir"
STARTED = "_started.json"


class StageError(RuntimeError):
    """A stage that cannot run, with what to do about it."""


@dataclass
class StageResult:
    stage: str  # the unit's name, e.g. "extract/gg_img"
    key: str
    cached: bool
    info: dict = field(default_factory=dict)


FOLDERS = {"evaluate": "eval"}


def stage_dir(cfg: Config, unit: str) -> Path:
    """``<workdir>/<stage>[/<part>]`` (evaluate lives under ``eval``)."""
    top, _, part = unit.partition("/")
    d = Path(cfg.workdir) / FOLDERS.get(top, top)
    return d / part if part else d


def downloads_dir(cfg: Config) -> Path:
    """The content-addressed store of downloaded files, shared by every source."""
    return Path(cfg.workdir) / "downloads"


def source_config(cfg: Config, name: str) -> SourceConfig:
    for s in cfg.sources:
        if s.name == name:
            return s
    raise StageError(f"no source named {name!r} in the config (sources: {[s.name for s in cfg.sources]})")


def teacher_kinds(cfg: Config) -> list[str]:
    """The teachers some source needs: image for images, video for videos and untrimmed videos."""
    from ..learning.teacher import KIND_OF_SOURCE

    needed = {KIND_OF_SOURCE[s.kind] for s in cfg.sources}
    return [k for k in ("image", "video") if k in needed]


def runs(cfg: Config) -> list[str]:
    """Trained models in order; ``omnisource`` is always the student omni hands over (with
    ``filter.refine`` it learns from the second round's selection, made by ``first_round``)."""
    return (["baseline"] if cfg.train.baseline else []) + (["first_round"] if cfg.filter.refine else []) + \
        ["omnisource"]


def units(cfg: Config, stage: str) -> list[str]:
    """The units a stage runs for this config, in order."""
    src = [s.name for s in cfg.sources]
    return {
        "ingest": ["ingest/target"] + [f"ingest/{s}" for s in src],
        "extract": ["extract/target"] + [f"extract/{s}" for s in src],
        "teacher": [f"teacher/{k}" for k in teacher_kinds(cfg)],
        "score": [f"score/{s}" for s in src],
        "filter": ["filter"],
        "manifest": ["manifest"],
        "train": [f"train/{r}" for r in runs(cfg)],
        "evaluate": [f"evaluate/{r}" for r in runs(cfg)],
    }[stage]


def all_units(cfg: Config) -> list[str]:
    return [u for s in STAGES for u in units(cfg, s)]


def upstream(cfg: Config, unit: str) -> list[str]:
    """The units whose outputs a unit reads."""
    stage, _, part = unit.partition("/")
    src = [s.name for s in cfg.sources]
    if stage == "ingest":
        return [] if part == "target" else ["ingest/target"]
    if stage == "extract":
        if part == "target":
            return ["ingest/target"]
        ups = [f"ingest/{part}"]
        if source_config(cfg, part).kind == "untrimmed" and cfg.extract.window_s is None:
            ups.append("ingest/target")  # the window length defaults to the median target clip
        return ups
    if stage == "teacher":
        return ["extract/target"]
    if stage == "score":
        from ..learning.teacher import KIND_OF_SOURCE

        return [f"extract/{part}", f"teacher/{KIND_OF_SOURCE[source_config(cfg, part).kind]}"]
    if stage == "filter":
        return [f"score/{s}" for s in src]
    if stage == "manifest":
        return ["filter", "extract/target"] + [f"ingest/{s}" for s in src] + [f"extract/{s}" for s in src]
    if stage == "train":
        if part == "omnisource" and cfg.filter.refine:
            return ["train/first_round", "manifest", "extract/target"] + [f"ingest/{s}" for s in src] + \
                [f"extract/{s}" for s in src]
        return ["extract/target"] if part == "baseline" else ["manifest"]
    if stage == "evaluate":
        return [f"train/{part}", "extract/target"]
    raise StageError(f"unknown unit {unit!r}")


HELP = {
    "ingest": "fetch, validate and de-duplicate the target clips and every crawl list",
    "extract": "decode and resize frames and clips into the frame store",
    "teacher": "train the image teacher (single frames) and the video teacher (clips) on the target set",
    "score": "score every web sample with its teacher",
    "filter": "keep, per source and query, the samples the teacher scores highest for the query class (filter.keep_fraction; the top-1 rule with filter.require_top1)",
    "manifest": "write manifest/web_items.parquet and manifest/train.parquet",
    "train": "train the target-only baseline and the OmniSource student (with filter.refine: a first-round student, then the student on the second round's selection)",
    "evaluate": "evaluate trained models on the target val set",
}


def read_metrics(cfg: Config, run: str) -> dict | None:
    p = stage_dir(cfg, f"evaluate/{run}") / "metrics.json"
    return json.loads(p.read_text()) if p.exists() else None
