"""The pipeline's layout, cache keys and runner: one table of stages, each run unit by unit.

A stage runs as one or more *units*, each with its own folder and key:

| stage    | units                                    | folder                       |
|----------|------------------------------------------|------------------------------|
| ingest   | ``ingest/target``, ``ingest/<source>``   | ``<workdir>/ingest/<part>``  |
| extract  | ``extract/target``, ``extract/<source>`` | ``<workdir>/extract/<part>`` |
| teacher  | ``teacher/image``, ``teacher/video``     | ``<workdir>/teacher/<part>`` |
| score    | ``score/<source>``                       | ``<workdir>/score/<part>``   |
| filter   | ``filter``                               | ``<workdir>/filter``         |
| manifest | ``manifest``                             | ``<workdir>/manifest``       |
| train    | ``train/baseline``, ``train/omnisource`` | ``<workdir>/train/<run>``    |
| evaluate | ``evaluate/baseline``, ``evaluate/omnisource`` | ``<workdir>/eval/<run>`` |

A unit's body receives exactly the settings it reads (``unit_settings``) plus runtime-only
knobs (``RUNTIME_ONLY``: how fast, never what), and its key hashes exactly those settings,
the content of the user files it reads and the keys of the units it reads. So the target
work never depends on a crawl list, and editing one list redoes only that source's units,
``filter``, ``manifest`` and the OmniSource student.

A unit is done when ``<unit dir>/_done.json`` holds its key. omni deletes only folders it can
prove it made (they hold its ``_started.json``), and only inside a workdir that it made.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from . import cache, diskspace
from .atomic import write_json_atomic
from .ranks import Ranks, current as current_ranks
from .config import Config, ConfigError, SourceConfig
from .cores import CoreShare, usable_cores

log = logging.getLogger("omni")

Progress = Callable[[int, int], None]

STAGES = ("ingest", "extract", "teacher", "score", "filter", "manifest", "train", "evaluate")
VERSIONS = {"ingest": 5, "extract": 3, "teacher": 5, "score": 2, "filter": 2, "manifest": 2, "train": 5,
            "evaluate": 3}
# (teacher, train 4: full target batches, omni/train.py FullBatches; 5: the noise augmentation's
# values come from a bank drawn once per process, omni/data.py noise_slice)
FETCH_VERSION = 3  # the downloads journal: bump only when what a fetch records changes
# (3: images and frames under 16 px refused, rotated videos' shown size and thumbnails, TS/WebM measured from packets)
GPU_STAGES = frozenset({"teacher", "score", "train", "evaluate"})
RUNS = ("baseline", "first_round", "omnisource")
RANKED_STAGES = frozenset({"teacher", "score", "train"})  # under torchrun every rank works on these

# Settings that change how fast or where work runs, never what it computes: passed to the
# units that use them, left out of every key.
RUNTIME_ONLY = frozenset({
    "ingest.workers", "ingest.per_host", "extract.workers", "train.device", "train.threads",
    "train.loader_workers", "train.checkpoint_every_steps", "train.baseline", "train.nproc_per_node",
    "evaluate.batch_size",
    "cluster.scheduler_address", "cluster.shard_items", "cluster.score_resources",
})
# ingest settings that only web items use (target clips are checked in place, never leak-checked)
_WEB_ONLY_INGEST = frozenset({"leak_threshold", "leak_check", "image_short_side", "max_image_pixels"})
# extract settings that only untrimmed videos use, and the few that images use
_UNTRIMMED_ONLY_EXTRACT = frozenset({"window_s", "stride_s", "shot_split", "shot_threshold",
                                     "max_windows_per_video"})
_IMAGE_EXTRACT = frozenset({"short_side", "shard_items", "frame_codec", "jpeg_quality"})
# filter settings only the second (refined) round reads
_REFINE_ONLY_FILTER = frozenset({"refine", "refine_rule", "refine_kind_rules", "refine_min_score",
                                 "refine_min_relative", "refine_crossfit", "refine_crossfit_steps",
                                 "refine_min_contradiction", "refine_relabel"})
# joint-training settings that only matter when web data joins the target
_AUX_ONLY_TRAIN = ("aux_batch_size", "aux_loss_weight", "resample_power", "cap_per_class", "pseudo_clip",
                   "warp_strength", "mixup_alpha", "aux_drop", "aux_drop_ramp")
# training settings only the second round's student reads (absent from other keys, and from its
# own while off: the keys of runs before it stay valid)
_SECOND_ROUND_ONLY_TRAIN = frozenset({"soft_target_weight", "soft_target_kinds"})

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


# ---------------------------------------------------------------- layout

FOLDERS = {"evaluate": "eval"}


def stage_dir(cfg: Config, unit: str) -> Path:
    """``<workdir>/<stage>[/<part>]`` (evaluate lives under ``eval``)."""
    top, _, part = unit.partition("/")
    d = Path(cfg.workdir) / FOLDERS.get(top, top)
    return d / part if part else d


def downloads_dir(cfg: Config) -> Path:
    """The content-addressed store of downloaded files, shared by every source."""
    return Path(cfg.workdir) / "downloads"


def _source(cfg: Config, name: str) -> SourceConfig:
    for s in cfg.sources:
        if s.name == name:
            return s
    raise StageError(f"no source named {name!r} in the config (sources: {[s.name for s in cfg.sources]})")


def teacher_kinds(cfg: Config) -> list[str]:
    """The teachers some source needs: image for images, video for videos and untrimmed videos."""
    from .teacher import KIND_OF_SOURCE

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


# ---------------------------------------------------------------- what each unit reads

def _section(model, exclude: set | frozenset = frozenset(), prefix: str = "") -> dict:
    skip = {k.split(".", 1)[1] for k in RUNTIME_ONLY if k.startswith(prefix + ".")} if prefix else set()
    return model.model_dump(mode="json", exclude=set(exclude) | skip)


def _video_pixel_cap(cfg: Config) -> dict:
    """Extract decodes no video frame past ``ingest.max_video_pixels`` (absent at its default: the
    keys of runs before it stay valid)."""
    cap = cfg.ingest.max_video_pixels
    return {} if cap == type(cfg.ingest).model_fields["max_video_pixels"].default else {"max_video_pixels": cap}


def unit_settings(cfg: Config, unit: str) -> dict:
    """Exactly the settings a unit's body reads; its key hashes exactly these."""
    stage, _, part = unit.partition("/")
    names = cfg.class_names()
    if stage == "ingest":
        if part == "target":
            return {"classes": names, "ingest": _section(cfg.ingest, _WEB_ONLY_INGEST, "ingest")}
        s = _source(cfg, part)
        return {"classes": names, "ingest": _section(cfg.ingest, prefix="ingest"),
                "source": s.model_dump(mode="json", exclude={"name", "list"}),
                # relative URLs resolve against the list's folder, and local files are read only
                # under the allowed roots: both are part of what a list means
                "list_folder": str(Path(s.list).parent), "local_roots": list(local_roots(cfg, part))}
    if stage == "extract":
        # the short side as resolved: with "auto" it follows the models' input sizes
        if part == "target":
            ex = _section(cfg.extract, _UNTRIMMED_ONLY_EXTRACT, "extract")
            return {"extract": {**ex, "short_side": cfg.frame_short_side()}, **_video_pixel_cap(cfg)}
        kind = _source(cfg, part).kind
        ex = _section(cfg.extract, prefix="extract")
        if kind == "image":
            ex = {k: v for k, v in ex.items() if k in _IMAGE_EXTRACT}
            return {"extract": {**ex, "short_side": cfg.frame_short_side()}}
        if kind == "video":
            ex = {k: v for k, v in ex.items() if k not in _UNTRIMMED_ONLY_EXTRACT}
        return {"extract": {**ex, "short_side": cfg.frame_short_side()}, **_video_pixel_cap(cfg)}
    if stage == "teacher":
        return {"classes": names, "model": getattr(cfg.teacher, part).model_dump(mode="json"),
                "augment": cfg.train.augment.model_dump(mode="json"), "seed": cfg.train.seed, "amp": cfg.train.amp}
    if stage == "score":
        return {"amp": cfg.train.amp}
    if stage == "filter":
        return {"classes": names, "filter": _section(cfg.filter, _REFINE_ONLY_FILTER)}
    if stage == "manifest":
        return {"classes": names, "source_order": [s.name for s in cfg.sources]}
    if stage == "train":
        t = _section(cfg.train, _SECOND_ROUND_ONLY_TRAIN, prefix="train")
        if part == "baseline":  # web-data knobs never retrain the baseline
            t = {k: v for k, v in t.items() if k not in _AUX_ONLY_TRAIN}
        if part == "omnisource" and cfg.filter.refine:  # re-scores with the first-round student and
            # selects again with refine_rule (top-1, or the filter's own rule)
            out = {"classes": names, "train": t, "filter": _section(cfg.filter, _REFINE_ONLY_FILTER),
                   "refine": True, "refine_rule": cfg.filter.refine_rule,
                   "refine_min_score": cfg.filter.refine_min_score,
                   "refine_min_relative": cfg.filter.refine_min_relative,
                   "source_order": [s.name for s in cfg.sources]}
            if cfg.filter.refine_crossfit:  # (absent when off: the keys of runs before it stay valid)
                out["refine_crossfit"] = True
            if cfg.filter.refine_relabel:
                out["refine_relabel"] = True
            rules = {cfg.filter.refine_rule, *cfg.filter.refine_kind_rules.values()}
            if cfg.filter.refine_kind_rules:  # (absent when empty: the keys of runs before it stay valid)
                out["refine_kind_rules"] = dict(sorted(cfg.filter.refine_kind_rules.items()))
                out["source_kinds"] = {s.name: s.kind for s in cfg.sources}
            if cfg.filter.refine_relabel or "contradict" in rules:
                out["refine_min_contradiction"] = cfg.filter.refine_min_contradiction
            soft = soft_target_sources(cfg)
            if soft:  # learns from the first-round student's probabilities too
                out["train"] = {**t, "soft_target_weight": cfg.train.soft_target_weight}
                out["soft_target_sources"] = soft
            return out
        if part == "first_round" and cfg.filter.refine_crossfit:
            out = {"classes": names, "train": t, "crossfit": True}
            if cfg.filter.refine_crossfit_steps != 1.0:  # (absent at 1: the keys of runs before it stay valid)
                out["crossfit_steps"] = cfg.filter.refine_crossfit_steps
            return out
        return {"classes": names, "train": t}
    if stage == "evaluate":
        return {"classes": names, "evaluate": _section(cfg.evaluate, prefix="evaluate"), "amp": cfg.train.amp}
    raise StageError(f"unknown unit {unit!r}")


def soft_target_sources(cfg: Config) -> list[str]:
    """The sources whose samples the second round's student learns with soft targets (none
    without a second round or with ``train.soft_target_weight`` 0)."""
    t = cfg.train
    if not cfg.filter.refine or t.soft_target_weight <= 0:
        return []
    return [s.name for s in cfg.sources if s.kind in t.soft_target_kinds]


def local_roots(cfg: Config, source: str) -> tuple[str, ...]:
    """Folders a crawl list's local paths may be read under: ``ingest.local_roots``, else the
    list's own folder and the target lists' folders."""
    from .fetch import local_roots_for

    src = _source(cfg, source)
    return local_roots_for(cfg.ingest.local_roots, [src.list, cfg.target.train, cfg.target.val])


def runtime_settings(cfg: Config) -> dict:
    """The runtime-only knobs (see ``RUNTIME_ONLY``), by their dotted names."""
    out = {}
    for dotted in RUNTIME_ONLY:
        section, name = dotted.split(".")
        out[dotted] = getattr(getattr(cfg, section), name)
    return out


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
        if _source(cfg, part).kind == "untrimmed" and cfg.extract.window_s is None:
            ups.append("ingest/target")  # the window length defaults to the median target clip
        return ups
    if stage == "teacher":
        return ["extract/target"]
    if stage == "score":
        from .teacher import KIND_OF_SOURCE

        return [f"extract/{part}", f"teacher/{KIND_OF_SOURCE[_source(cfg, part).kind]}"]
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


def _target_files_fingerprint(cfg: Config) -> str:
    """Target media by path and content (sha256). Hashes are remembered in the workdir by size
    and mtime (``cache.HashMemo``), so a rerun reads no file whose stat is unchanged, and a copy
    of the data with new timestamps keeps every key."""
    from .lists import read_target_list

    h = hashlib.sha256()
    names = cfg.class_names()
    memo = cache.HashMemo(Path(cfg.workdir) / cache.HASH_MEMO, max_bytes=cfg.ingest.max_bytes)
    for path in (cfg.target.train, cfg.target.val):
        try:
            df = read_target_list(path, names)
        except Exception as exc:  # the stage itself reports the bad list
            h.update(str(exc).encode())
            continue
        for p in df["path"]:
            h.update(f"{p}:{memo.fingerprint(p)}".encode())
    memo.save()
    return h.hexdigest()


_LOCAL_PATHS: dict[tuple, list[str]] = {}  # per process: a crawl list's local file paths, by the list's content


def source_local_paths(cfg: Config, src: SourceConfig) -> list[str]:
    """The local files a crawl list names (plain paths, ``file://``), read once per process for
    each content of the list (a long list is parsed once, not once per key). Raises ListError
    for a list that cannot be read."""
    from .fetch import local_path
    from .lists import read_crawl_list

    memo_key = (str(src.list), cache.fingerprint_path(src.list), src.url_column, src.query_column, src.query,
                tuple(cfg.class_names()))
    if memo_key not in _LOCAL_PATHS:
        urls = read_crawl_list(src.list, cfg.class_names(), src.url_column, src.query_column, src.query)["url"]
        found = (local_path(u) for u in dict.fromkeys(urls))
        _LOCAL_PATHS[memo_key] = [p for p in found if p is not None]
    return _LOCAL_PATHS[memo_key]


def _source_files_fingerprint(cfg: Config, src: SourceConfig) -> str:
    """The local files a crawl list names, by path, size and mtime: a file replaced (or touched)
    re-runs its source. Only stat: a crawl list is untrusted, and nothing it names is read for a
    key (the fetcher reads what ``ingest.local_roots`` allows; remote URLs are the downloads
    journal's)."""
    try:
        paths = source_local_paths(cfg, src)
    except Exception as exc:  # the stage itself reports the bad list
        return "unreadable: " + str(exc)[:200]
    h = hashlib.sha256()
    for path in paths:
        h.update(f"{path}:{cache.stat_fingerprint(path)}\n".encode())
    return h.hexdigest()


def user_files(cfg: Config, unit: str) -> dict:
    """Fingerprints of the user's files a unit reads (content hashes)."""
    stage, _, part = unit.partition("/")
    if stage != "ingest":
        return {}
    if part == "target":
        return {"target_train": cache.fingerprint_path(cfg.target.train),
                "target_val": cache.fingerprint_path(cfg.target.val),
                "target_files": _target_files_fingerprint(cfg)}
    src = _source(cfg, part)
    return {"list": cache.fingerprint_path(src.list), "local_files": _source_files_fingerprint(cfg, src)}


class Keys:
    """Cache keys of every unit for one config, each computed once."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._memo: dict[str, str] = {}

    def __getitem__(self, unit: str) -> str:
        if unit not in self._memo:
            self._memo[unit] = self._compute(unit)
        return self._memo[unit]

    def _compute(self, unit: str) -> str:
        stage, _, part = unit.partition("/")
        inputs = {**user_files(self.cfg, unit), **{u: self[u] for u in upstream(self.cfg, unit)}}
        if stage == "ingest" and part != "target":  # rows repaired by `--retry-failed` (absent if none)
            from .retry import retried_fingerprint

            retried = retried_fingerprint(stage_dir(self.cfg, unit) / "journal" / self.fetch(unit))
            if retried:
                inputs["retried"] = retried
        return cache.stage_key(unit, VERSIONS[stage], unit_settings(self.cfg, unit), inputs)

    def fetch(self, unit: str) -> str:
        """The downloads journal's key: fetch and validation settings only, so list edits reuse
        downloads (a list moved to another folder, with other allowed roots, does not)."""
        ing = _section(self.cfg.ingest, _WEB_ONLY_INGEST, "ingest")
        part = unit.split("/", 1)[1]
        if part != "target":
            ing.update(max_image_pixels=self.cfg.ingest.max_image_pixels,
                       image_short_side=self.cfg.ingest.image_short_side,
                       local_roots=list(local_roots(self.cfg, part)))
        return cache.stage_key("fetch", FETCH_VERSION, ing, {})


# ---------------------------------------------------------------- ownership and the runner

def _is_empty_dir(d: Path) -> bool:
    return d.is_dir() and not any(d.iterdir())


def claim_workdir(cfg: Config) -> Path:
    """Make (or re-open) the workdir; refuse a file, or a non-empty folder omni did not make."""
    wd = Path(cfg.workdir)
    if wd.exists() and not wd.is_dir():
        raise StageError(f"workdir {wd} is a file, not a folder")
    marker = wd / WORKDIR_MARKER
    if wd.is_dir() and not marker.exists() and not _is_empty_dir(wd):
        raise StageError(f"workdir {wd} is not empty and was not made by omni: refusing to write into it "
                         f"(choose an empty or new folder)")
    try:
        wd.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            write_json_atomic(marker, {"made_by": "omni"})
    except OSError as exc:
        raise StageError(f"workdir {wd}: cannot write: {exc.strerror or exc}") from None
    return wd


def _owned(d: Path) -> bool:
    return (d / STARTED).exists() or cache.done_marker(d).exists()


def require(cfg: Config, keys: Keys, unit: str) -> Path:
    d = stage_dir(cfg, unit)
    if not cache.is_done(d, keys[unit]):
        broken = (cache.read_done(d) or {}).get("key") == keys[unit] and cache.damage(d)
        if broken:
            raise StageError(f"{unit}'s outputs are damaged ({broken}): run `omni {unit.split('/')[0]} CONFIG` "
                             f"(or `omni run CONFIG`) to redo it")
        raise StageError(f"{unit} has not run for this config: run `omni {unit.split('/')[0]} CONFIG` "
                         f"(or `omni run CONFIG`) first")
    return d


@dataclass
class Unit:
    """What a unit's body gets: its settings, the runtime knobs, where to read and write."""

    name: str
    part: str
    settings: dict
    runtime: dict
    dir: Path
    workdir: Path
    keys: Keys
    cfg: Config  # for paths only (workdir, lists); bodies read settings from ``settings``
    progress: Progress | None = None
    should_stop: Callable[[], bool] | None = None
    cores: CoreShare = field(default_factory=CoreShare)
    ranks: Ranks = field(default_factory=Ranks)

    def input(self, unit: str) -> Path:
        return require(self.cfg, self.keys, unit)


class workdir_lock:
    """Held while a unit runs: one workdir is never worked on by two omni processes at once."""

    def __init__(self, cfg: Config):
        self.path = Path(cfg.workdir) / ".omni-lock"
        self.fh = None

    def __enter__(self) -> "workdir_lock":
        import fcntl

        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise StageError(f"workdir {self.path.parent} is in use by another omni run ({holder}): wait for it "
                             f"to finish or use another workdir") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}")
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()  # closing releases the lock


def run_unit(cfg: Config, unit: str, keys: Keys | None = None, progress: Progress | None = None,
             should_stop: Callable[[], bool] | None = None) -> StageResult:
    """Run one unit unless its key is already done; returns what it did."""
    keys = keys or Keys(cfg)
    ranks = current_ranks()
    if ranks.many:  # a torchrun job: rank 0 prepares and records, every rank of a RANKED_STAGES unit works
        return _run_ranked_unit(cfg, unit, keys, progress, should_stop, ranks)
    claim_workdir(cfg)
    with workdir_lock(cfg):
        return _run_unit(cfg, unit, keys, progress, should_stop)


def _run_ranked_unit(cfg: Config, unit: str, keys: Keys, progress: Progress | None,
                     should_stop: Callable[[], bool] | None, ranks: Ranks) -> StageResult:
    stage = unit.partition("/")[0]
    d = stage_dir(cfg, unit)
    if cache.is_done(d, keys[unit]):  # every rank sees the same files: the previous unit ended at a barrier
        ranks.barrier()
        return StageResult(unit, keys[unit], True, cache.read_done(d) or {})
    error = None
    if ranks.main:
        claim_workdir(cfg)
        try:
            with workdir_lock(cfg):
                result = _run_unit(cfg, unit, keys, progress, should_stop, ranks,
                                   prepared=lambda: ranks.barrier() if stage in RANKED_STAGES else None)
        except BaseException as exc:
            error = exc
    else:
        try:
            if stage in RANKED_STAGES:
                ranks.barrier()  # rank 0 has cleared and claimed the unit's folder
                _run_body(cfg, unit, keys, None, should_stop, ranks)
        except BaseException as exc:
            error = exc
    if error is not None:
        raise error  # the others stop at their next collective call when this process exits
    ranks.barrier()  # rank 0 has recorded the unit as done
    return result if ranks.main else StageResult(unit, keys[unit], False, cache.read_done(d) or {})


def _run_unit(cfg: Config, unit: str, keys: Keys, progress: Progress | None,
              should_stop: Callable[[], bool] | None, ranks: Ranks = Ranks(),
              prepared: Callable[[], None] | None = None) -> StageResult:
    stage, _, part = unit.partition("/")
    d = stage_dir(cfg, unit)
    key = keys[unit]
    if cache.is_done(d, key):
        log.info("%s: cache hit (%s)", unit, key[:12])
        return StageResult(unit, key, True, cache.read_done(d) or {})
    if (cache.read_done(d) or {}).get("key") == key:  # done, but an output went missing or changed size
        log.warning("%s: %s: redoing the unit", unit, cache.damage(d))
        cache.remove_outputs(d)
    for up in upstream(cfg, unit):
        require(cfg, keys, up)
    started_file = d / STARTED
    try:
        started = json.loads(started_file.read_text())
    except (OSError, ValueError):
        started = None
    if d.exists() and not _owned(d) and not _is_empty_dir(d):
        raise StageError(f"{d} exists and was not made by omni: move it away, omni will not overwrite it")
    keeps_partial = stage == "ingest"  # the downloads journal outlives list edits
    if d.exists() and not keeps_partial and (started or {}).get("key") != key:
        shutil.rmtree(d)  # omni's own outputs of another config
    d.mkdir(parents=True, exist_ok=True)
    cache.clear_done(d)
    write_json_atomic(started_file, {"key": key})
    log.info("%s: running (%s)", unit, key[:12])
    if prepared:
        prepared()
    nproc = cfg.train.nproc_per_node
    try:
        if nproc > 1 and stage in RANKED_STAGES and not ranks.many:  # torchrun as a child: the ranks run the body
            from .launch import run_ranked_body

            info = run_ranked_body(cfg.model_dump(mode="json"), unit, d, nproc, should_stop)
        else:
            info = _run_body(cfg, unit, keys, progress, should_stop, ranks)
        cache.mark_done(d, key, **info)
    except BaseException as exc:  # a full disk is one clear line; what was finished stays for the rerun
        if diskspace.is_disk_full(exc) and not isinstance(exc, diskspace.NoSpace):
            raise diskspace.NoSpace(d, diskspace.wanted_more(d)) from None
        raise
    log.info("%s: %s", unit, summarise(info))
    return StageResult(unit, key, False, info)


def _run_body(cfg: Config, unit: str, keys: Keys, progress: Progress | None,
              should_stop: Callable[[], bool] | None, ranks: Ranks) -> dict:
    stage, _, part = unit.partition("/")
    runtime = runtime_settings(cfg)
    with CoreShare(fixed=runtime["train.threads"], reserved=runtime["train.loader_workers"]) as cores:

        def stop_check() -> bool:  # called every training step: a cheap place to follow the core share
            cores.apply()
            return bool(should_stop and should_stop())

        ctx = Unit(unit, part, unit_settings(cfg, unit), runtime, stage_dir(cfg, unit), Path(cfg.workdir), keys,
                   cfg, progress, stop_check, cores, ranks)
        return BODIES[stage](ctx)


def run_body_on_ranks(cfg: Config, unit: str) -> None:
    """``omni _unit``: one unit's body on every rank of a torchrun job started by omni/launch.py
    (the parent process prepared the unit and records it); rank 0 leaves the result."""
    from .launch import RESULT

    ranks = current_ranks()
    info = _run_body(cfg, unit, Keys(cfg), None, None, ranks)
    if ranks.main:
        write_json_atomic(stage_dir(cfg, unit) / RESULT, info)
    ranks.barrier()


def run_stage(cfg: Config, stage: str, keys: Keys | None = None,
              progress_for: Callable[[str], Progress | None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> list[StageResult]:
    """Run every unit of a stage, in order."""
    keys = keys or Keys(cfg)
    return [run_unit(cfg, u, keys, progress_for(u) if progress_for else None, should_stop)
            for u in units(cfg, stage)]


def run_pipeline(cfg: Config, progress_for: Callable[[str], Progress | None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[StageResult]:
    keys = Keys(cfg)  # computed once for the whole run
    return [r for stage in STAGES for r in run_stage(cfg, stage, keys, progress_for, should_stop)]


def summarise(info: dict) -> str:
    """One line of a unit's result for the log."""
    return ", ".join(f"{k} {v}" for k, v in info.items() if not isinstance(v, (dict, list)))


# ---------------------------------------------------------------- the bodies

def _fetch_options(ingest: dict, runtime: dict, roots: list[str] | None):
    from .fetch import FetchOptions

    names = {f.name for f in dataclasses.fields(FetchOptions)}
    opts = {k: v for k, v in ingest.items() if k in names}
    opts["per_host"] = runtime["ingest.per_host"]
    opts["local_roots"] = tuple(roots) if roots is not None else None
    return FetchOptions(**opts)


def _ingest(u: Unit) -> dict:
    from .ingest import ingest_source, ingest_target

    s, ing = u.settings, u.settings["ingest"]
    journal = u.dir / "journal" / u.keys.fetch(u.name)
    # the target lists are the user's own: their clips are read wherever they are (never special files)
    fetch = _fetch_options(ing, u.runtime, s.get("local_roots"))
    if u.part == "target":
        return ingest_target(u.cfg.target.train, u.cfg.target.val, s["classes"], fetch, ing["max_video_pixels"],
                             u.dir, journal, workers=u.runtime["ingest.workers"], progress=u.progress)
    return ingest_source(*_source_list_args(u.cfg, u.part, s), fetch, _validate_options(ing),
                         ing["leak_check"], ing["leak_threshold"], u.input("ingest/target") / "targets.parquet",
                         u.dir, journal, downloads_dir(u.cfg), workers=u.runtime["ingest.workers"],
                         progress=u.progress, scheduler=u.runtime["cluster.scheduler_address"],
                         shard_items=u.runtime["cluster.shard_items"])


def _source_list_args(cfg: Config, part: str, settings: dict) -> tuple:
    """(name, kind, list, url column, query column, default query, class names) of a source unit."""
    src = settings["source"]
    return (part, src["kind"], _source(cfg, part).list, src["url_column"], src["query_column"], src["query"],
            settings["classes"])


def _validate_options(ing: dict):
    from .validate import ValidateOptions

    return ValidateOptions(ing["max_image_pixels"], ing["image_short_side"], ing["max_video_pixels"])


def retry_failed(cfg: Config, reasons: list[str] | None = None) -> list:
    """``omni ingest CONFIG --retry-failed [REASON...]``: fetch again, for every crawl list that
    was ingested, only the URLs whose download failed for a transient reason (omni/retry.py;
    ``reasons`` restricts the classes). Returns one ``retry.RetryCounts`` per source. Run the
    ingest stage after it: a source whose records changed has a new key (``Keys``) and is
    rebuilt from the journal; the others stay cache hits."""
    from .ingest import retry_failed_rows
    from .retry import RetryCounts, parse_classes

    try:
        classes = parse_classes(reasons)
    except ValueError as exc:
        raise StageError(str(exc)) from None
    keys = Keys(cfg)
    claim_workdir(cfg)
    out = []
    with workdir_lock(cfg):
        for unit in units(cfg, "ingest"):
            part = unit.partition("/")[2]
            if part == "target":  # the user's own clips, read in place: nothing transient to retry
                continue
            journal = stage_dir(cfg, unit) / "journal" / keys.fetch(unit)
            if not (journal / "journal.jsonl").exists():  # never ingested: the ingest stage fetches it all
                out.append(RetryCounts(part))
                continue
            s = unit_settings(cfg, unit)
            runtime = runtime_settings(cfg)
            counts = retry_failed_rows(*_source_list_args(cfg, part, s), _fetch_options(s["ingest"], runtime,
                                       s.get("local_roots")), _validate_options(s["ingest"]),
                                       stage_dir(cfg, unit) / "tmp", journal, downloads_dir(cfg), classes,
                                       workers=runtime["ingest.workers"])
            log.info("%s", counts.line())
            out.append(counts)
    return out


def _extract(u: Unit) -> dict:
    from .config import ExtractConfig
    from .extract import default_window_s, estimate_bytes, extract_items, source_work, target_work
    from .media import DEFAULT_MAX_VIDEO_PIXELS

    ecfg = ExtractConfig(**u.settings["extract"])
    prefix = u.dir.relative_to(u.workdir).as_posix()
    if u.part == "target":
        rows = pd.read_parquet(u.input("ingest/target") / "targets.parquet")
        work = target_work(rows)
        info, window_s, stride_s = {}, None, None
    else:
        items = pd.read_parquet(u.input(f"ingest/{u.part}") / "items.parquet")
        window_s = stride_s = None
        if (items["kind"] == "untrimmed").any():
            window_s = ecfg.window_s or default_window_s(
                pd.read_parquet(u.input("ingest/target") / "targets.parquet"))
            stride_s = ecfg.stride_s or window_s
        work = source_work(items, window_s, stride_s)
        info = {"window_s": window_s, "stride_s": stride_s} if window_s else {}
        rows = items
    need = estimate_bytes(rows, ecfg, window_s, stride_s)  # before decoding: refuse what clearly does not fit
    diskspace.expect(u.dir, need)
    diskspace.require(u.dir, need - diskspace.used_bytes(u.dir), f"{u.name} (frames of {len(work)} items)")
    workers = min(u.runtime["extract.workers"], usable_cores())  # decode processes never exceed the cores
    cap = u.settings.get("max_video_pixels", DEFAULT_MAX_VIDEO_PIXELS)  # ingest.max_video_pixels
    return {**extract_items(work, u.dir, prefix, ecfg, workers=workers, progress=u.progress,
                            scheduler=u.runtime["cluster.scheduler_address"], max_pixels=cap), **info}


def _target_samples(u: Unit) -> pd.DataFrame:
    s = pd.read_parquet(u.input("extract/target") / "samples.parquet")
    return s[s["extract_status"] == "ok"]


def run_options(runtime: dict):
    """How fast and where training runs, from the runtime-only settings."""
    from .train import RunOptions

    return RunOptions(device=runtime["train.device"], checkpoint_every_steps=runtime["train.checkpoint_every_steps"],
                      loader_workers=runtime["train.loader_workers"])


def _threads(u: Unit) -> None:
    """Compute threads for this unit: ``train.threads`` when set, else this run's share of the
    machine's cores (omni/cores.py), re-checked while it trains."""
    u.cores.apply(force=True)


def _teacher(u: Unit) -> dict:
    from .config import AugmentConfig, ModelConfig
    from .teacher import train_teacher

    _threads(u)
    s = u.settings
    samples = _target_samples(u)
    if not (samples["split"] == "train").any():
        raise StageError("no usable target training clips: every target train item failed ingest or extract "
                         "(their reasons: ingest/target/targets.parquet, extract/target/samples.parquet)")
    res = train_teacher(ModelConfig(**s["model"]), samples, u.workdir, s["classes"], u.dir,
                        u.keys[u.name], seed=s["seed"], amp=s["amp"], augment=AugmentConfig(**s["augment"]), run=run_options(u.runtime), progress=u.progress,
                        should_stop=u.should_stop)
    if u.ranks.main:
        _curve_png(u, res)
    return {k: v for k, v in res.items() if k != "curve"}


def _curve_png(u: Unit, res: dict) -> None:
    from .plots import training_curve_png

    val = (res.get("val") or {}).get("top1")
    title = f"{u.name}: {res.get('steps')} steps" + (f", val top-1 {100 * val:.1f}%" if val is not None else "")
    try:
        training_curve_png(res.get("curve") or [], title, u.dir / "curve.png")
    except Exception as exc:  # a picture must never fail the stage
        log.warning("%s: no training curve picture: %s", u.name, exc)


def _score(u: Unit) -> dict:
    from .score import assemble_scores, prepare_parts, score_samples
    from .teacher import KIND_OF_SOURCE

    _threads(u)
    teacher = KIND_OF_SOURCE[_source(u.cfg, u.part).kind]
    samples = pd.read_parquet(u.input(f"extract/{u.part}") / "samples.parquet")
    if u.ranks.many:  # rank 0 checks earlier parts before any rank writes one
        if u.ranks.main:
            prepare_parts(u.dir, int((samples["extract_status"] == "ok").sum()), u.runtime["cluster.shard_items"])
        u.ranks.barrier()
    info = score_samples(samples, u.workdir, u.input(f"teacher/{teacher}"), teacher, u.dir, amp=u.settings["amp"],
                         device=u.runtime["train.device"], batch_size=u.runtime["evaluate.batch_size"],
                         loader_workers=u.runtime["train.loader_workers"], shard_items=u.runtime["cluster.shard_items"],
                         scheduler=u.runtime["cluster.scheduler_address"],
                         resources=u.runtime["cluster.score_resources"], rank=u.ranks.rank,
                         world_size=u.ranks.world_size, progress=u.progress)
    u.ranks.barrier()  # every rank's shards have their parts
    if u.ranks.main:
        assemble_scores(u.dir, info["shards"])
    return info


def _filter(u: Unit) -> dict:
    from .atomic import write_parquet_atomic
    from .config import FilterConfig
    from .filter import filter_scores, read_scores
    from .score import SCORE_COLUMNS

    parts = [read_scores(u.input(f"score/{s.name}") / "scores.parquet") for s in u.cfg.sources]
    empty = pd.DataFrame(columns=[c for c in SCORE_COLUMNS if c != "teacher_probs"] + ["query_rank", "top_score"])
    scores = pd.concat(parts, ignore_index=True) if parts else empty
    out = filter_scores(scores, FilterConfig(**u.settings["filter"]), u.settings["classes"])
    write_parquet_atomic(out, u.dir / "filtered.parquet")
    sheets = _inspect_filter(u, scores.merge(out, on="sample_id"))
    return {"kept": int((out["filter_status"] == "kept").sum()),
            "filtered": int((out["filter_status"] == "filtered").sum()), "contact_sheets": sheets}


def _inspect_filter(u: Unit, judged: pd.DataFrame) -> list[str]:
    """Per-class counts and one contact sheet per source (``filter/contact-<source>.png``)."""
    from .config import FilterConfig
    from .contact_sheet import contact_sheet, filter_summary
    from .filter import TEACHERS_KEY, teacher_note

    summary = filter_summary(judged, u.settings["classes"])
    notes = {}  # how far from chance each teacher behind these verdicts is (reporting only)
    for kind in teacher_kinds(u.cfg):  # upstream of every score unit, so of this one: no new input
        try:
            val = json.loads((u.input(f"teacher/{kind}") / "summary.json").read_text()).get("val")
        except (StageError, OSError, ValueError, AttributeError):
            continue  # no summary (or an unreadable one): nothing to say
        note = teacher_note(kind, val, len(u.settings["classes"]), FilterConfig(**u.settings["filter"]))
        if note:
            notes[kind] = note
            if note.get("warning"):
                log.warning("filter: %s", note["warning"])
    if notes and TEACHERS_KEY not in summary:  # a source of that name keeps its counts
        summary[TEACHERS_KEY] = notes
    write_json_atomic(u.dir / "summary.json", summary)
    sheets = []
    for s in u.cfg.sources:
        samples = pd.read_parquet(u.input(f"extract/{s.name}") / "samples.parquet")
        rows = judged[judged["source"] == s.name].merge(
            samples[["sample_id", "shard", "offset", "t", "h", "w"]], on="sample_id")
        try:
            png = contact_sheet(rows, u.workdir, u.settings["classes"], u.dir / f"contact-{s.name}.png")
        except Exception as exc:  # a picture must never fail the stage
            log.warning("filter: no contact sheet for %s: %s", s.name, exc)
            continue
        if png:
            sheets.append(png.name)
    return sheets


def _manifest_inputs(u: Unit) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ingested items, extracted web samples, target samples) of every source."""
    from .extract import SAMPLE_COLUMNS

    names = [s.name for s in u.cfg.sources]

    def cat(paths, columns=None):
        frames = [pd.read_parquet(p) for p in paths]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    items = cat([u.input(f"ingest/{n}") / "items.parquet" for n in names],
                ["item_id", "source", "kind", "url", "query", "status", "reason", "sha256"])
    samples_cols = [c if c not in ("status", "reason") else f"extract_{c}" for c in SAMPLE_COLUMNS]
    web = cat([u.input(f"extract/{n}") / "samples.parquet" for n in names], samples_cols)
    target = pd.read_parquet(u.input("extract/target") / "samples.parquet")
    return items, web, target


def _write_manifest(u: Unit, items, web, scores, filtered, target) -> dict:
    from .atomic import write_parquet_atomic
    from .manifest import build_manifest

    web_items, train = build_manifest(items, web, scores, filtered, target, u.settings["classes"],
                                      u.settings["source_order"])
    write_parquet_atomic(web_items, u.dir / "web_items.parquet")
    write_parquet_atomic(train, u.dir / "train.parquet")
    counts = {f"{src}/{st}": int(n) for (src, st), n in web_items.groupby(["source", "status"]).size().items()}
    return {"web_rows": len(web_items), "train_samples": len(train), "by_source_status": counts}


def _manifest(u: Unit) -> dict:
    from .score import SCORE_COLUMNS

    names = [s.name for s in u.cfg.sources]
    items, web, target = _manifest_inputs(u)
    light = [c for c in SCORE_COLUMNS if c != "teacher_probs"]  # the vectors stay in score/; never all in memory
    scores = pd.concat([pd.read_parquet(u.input(f"score/{n}") / "scores.parquet", columns=light) for n in names],
                       ignore_index=True) if names else pd.DataFrame(columns=light)
    filtered = pd.read_parquet(u.input("filter") / "filtered.parquet")
    return _write_manifest(u, items, web, scores, filtered, target)


def _refine_selection(u: Unit) -> tuple[pd.DataFrame, dict]:
    """The second round's selection: the first-round student scores every extracted web sample
    (the score stage's sharded, resumable scoring, with the student as teacher), the rule
    ``omni.filter.second_round`` gives selects again, and the manifest is rebuilt from those scores
    (``train/omnisource/web_items.parquet``, ``train.parquet``, ``scores.parquet``); ingest,
    duplicate and leak verdicts are unchanged."""
    from .config import FilterConfig
    from .filter import read_scores, second_round
    from .score import assemble_scores, prepare_parts, score_samples

    items, web, target = _manifest_inputs(u)

    def score_with(samples: pd.DataFrame, model_dir: Path, out: Path) -> dict:
        if u.ranks.many:  # rank 0 checks earlier parts before any rank writes one
            if u.ranks.main:
                prepare_parts(out, int((samples["extract_status"] == "ok").sum()), u.runtime["cluster.shard_items"])
            u.ranks.barrier()
        info = score_samples(samples, u.workdir, model_dir, "student", out,
                             amp=u.settings["train"]["amp"], device=u.runtime["train.device"],
                             batch_size=u.runtime["evaluate.batch_size"],
                             loader_workers=u.runtime["train.loader_workers"],
                             shard_items=u.runtime["cluster.shard_items"],
                             scheduler=u.runtime["cluster.scheduler_address"],
                             resources=u.runtime["cluster.score_resources"], rank=u.ranks.rank,
                             world_size=u.ranks.world_size)
        u.ranks.barrier()
        if u.ranks.main:
            assemble_scores(out, info["shards"])
        return info

    first = u.input("train/first_round")
    if u.settings.get("refine_crossfit"):  # each half judged by the student that did not learn from it
        from .atomic import write_parquet_atomic
        from .filter import crossfit_fold

        fold = crossfit_fold(web["item_id"])
        info = {"scored": 0}
        for k in (0, 1):
            part = score_with(web[fold == 1 - k], first / f"fold{k}", u.dir / f"scored_by_fold{k}")
            info["scored"] += part["scored"]
        if u.ranks.main:
            write_parquet_atomic(pd.concat([pd.read_parquet(u.dir / f"scored_by_fold{k}" / "scores.parquet")
                                            for k in (0, 1)], ignore_index=True), u.dir / "scores.parquet")
        u.ranks.barrier()
    else:
        info = score_with(web, first, u.dir)
    if u.ranks.main:
        scores = read_scores(u.dir / "scores.parquet")
        fcfg = FilterConfig(**u.settings["filter"], refine_rule=u.settings["refine_rule"],
                            refine_relabel=u.settings.get("refine_relabel", False),
                            refine_min_contradiction=u.settings.get("refine_min_contradiction", 0.7),
                            refine_kind_rules=u.settings.get("refine_kind_rules", {}))
        filtered = second_round(scores, fcfg, u.settings["classes"], min_score=u.settings["refine_min_score"],
                                min_relative=u.settings["refine_min_relative"],
                                kinds=u.settings.get("source_kinds"))
        _write_manifest(u, items, web, scores.drop(columns=["query_rank", "top_score"], errors="ignore"), filtered,
                        target)
    u.ranks.barrier()
    train = pd.read_parquet(u.dir / "train.parquet")
    return train, {"scored": info["scored"], "train_samples": len(train)}


def _baseline_is_the_video_teacher(u: Unit, rows: pd.DataFrame) -> Path | None:
    """The done ``teacher/video`` folder when the baseline would repeat exactly its training:
    the same recipe, seed and precision on the same target train clips (omni's defaults use one
    recipe for teachers and students), and no still among the clips (the teacher replicates
    stills, a student may warp them). Its key hashes the same settings and inputs as the
    baseline's, so reusing its model is a cache hit in all but name."""
    t = u.settings["train"]
    if "video" not in teacher_kinds(u.cfg) or (rows["t"] <= 1).any():
        return None
    teacher = unit_settings(u.cfg, "teacher/video")
    if (teacher["model"], teacher["augment"], teacher["seed"], teacher["amp"], teacher["classes"]) != \
            (t["model"], t["augment"], t["seed"], t["amp"], u.settings["classes"]):
        return None
    d = stage_dir(u.cfg, "teacher/video")
    if not cache.is_done(d, u.keys["teacher/video"]) or not (d / "model.pt").exists():
        return None
    return d


def _train(u: Unit) -> dict:
    from .config import TrainConfig
    from .train import train_student

    _threads(u)
    if u.part == "baseline":
        rows = _target_samples(u)
        rows = rows[rows["split"] == "train"]
        same = _baseline_is_the_video_teacher(u, rows)
        if same is not None:
            res = {k: v for k, v in json.loads((same / "summary.json").read_text()).items() if k != "val"}
            res.update(same_as="teacher/video", aux_units={}, target_units=len(rows))
            if u.ranks.main:
                shutil.copy2(same / "model.pt", u.dir / "model.pt")
                write_json_atomic(u.dir / "summary.json", res)
                _curve_png(u, res)
            u.ranks.barrier()
            log.info("train/baseline: the same training as teacher/video (same recipe, seed and clips): its model reused")
            return {k: v for k, v in res.items() if k != "curve"}
    elif u.settings.get("crossfit"):
        return _train_crossfit(u)
    elif u.settings.get("refine"):
        rows, selection = _refine_selection(u)
        if u.settings.get("soft_target_sources"):
            from .manifest import with_judge_probs

            rows = with_judge_probs(rows, u.dir / "scores.parquet", u.settings["soft_target_sources"])
    else:
        rows = pd.read_parquet(u.input("manifest") / "train.parquet")
    if (rows["source"] == "target").sum() == 0:
        raise StageError("no usable target training clips: every target train item failed ingest or extract")
    res = train_student(rows, TrainConfig(**u.settings["train"]), u.settings["classes"], u.workdir, u.dir,
                        u.keys[u.name], run=run_options(u.runtime), progress=u.progress, should_stop=u.should_stop)
    if u.settings.get("refine"):
        res["selection"] = selection
    if u.ranks.main:
        write_json_atomic(u.dir / "summary.json", res)
        _curve_png(u, res)
    return {k: v for k, v in res.items() if k != "curve"}


def _train_crossfit(u: Unit) -> dict:
    """The first round with ``filter.refine_crossfit``: two students, each on the target clips and
    one half of the selected web items (``fold0/``, ``fold1/``); ``model.pt`` (what
    ``evaluate/first_round`` reports) is the first one's."""
    from .config import TrainConfig
    from .filter import crossfit_fold
    from .train import train_student

    rows = pd.read_parquet(u.input("manifest") / "train.parquet")
    if (rows["source"] == "target").sum() == 0:
        raise StageError("no usable target training clips: every target train item failed ingest or extract")
    web = rows["source"] != "target"
    fold = crossfit_fold(rows["item_id"])
    tcfg = TrainConfig(**u.settings["train"])
    share = u.settings.get("crossfit_steps", 1.0)
    if share != 1.0:
        if tcfg.model.steps is not None:
            tcfg.model.steps = max(1, round(tcfg.model.steps * share))
        else:
            tcfg.model.epochs = max(1, round(tcfg.model.epochs * share))
    run = run_options(u.runtime)
    jobs = [(rows[~web | (fold == k)], u.dir / f"fold{k}", f"{u.keys[u.name]}-fold{k}") for k in (0, 1)]
    for _, d, _ in jobs:
        d.mkdir(parents=True, exist_ok=True)
    side_by_side = _folds_side_by_side(u, run)
    if side_by_side:
        results = _train_two_side_by_side(u, tcfg, run, jobs)
    else:
        results = [train_student(r, tcfg, u.settings["classes"], u.workdir, d, key, run=run, progress=u.progress,
                                 should_stop=u.should_stop) for r, d, key in jobs]
    first = results[0]
    folds = {f"fold{k}": {key: v for key, v in res.items() if key != "curve"} for k, res in enumerate(results)}
    res = {**first, "crossfit": folds, "crossfit_side_by_side": side_by_side}
    if u.ranks.main:
        shutil.copy2(u.dir / "fold0" / "model.pt", u.dir / "model.pt")
        write_json_atomic(u.dir / "summary.json", res)
        _curve_png(u, res)
    return {k: v for k, v in res.items() if k != "curve"}


def _folds_side_by_side(u: Unit, run) -> bool:
    """Whether the two cross-fitted students train at once, one in a child process: on a CPU with
    at least two usable cores, outside torchrun, and with the core share left to omni
    (``train.threads`` unset). Two processes of half the threads each out-train one process of
    all of them on small 3D CNNs (benchmarks/results/crossfit_side_by_side.md)."""
    from .cores import usable_cores
    from .train import pick_device

    return (not u.ranks.many and u.runtime["train.threads"] is None and usable_cores() >= 2
            and pick_device(run.device).type == "cpu")


def _train_two_side_by_side(u: Unit, tcfg, run, jobs: list) -> list[dict]:
    """The first job here (with the unit's progress and stop check), the second in a spawned
    child process at the same time; each process takes its fair share of the cores (omni/cores.py:
    the child registers as a run of its own, so both follow the share while they train). A stop
    request or a failure here ends the child (its checkpoints stay); the child's failure is
    reported with its traceback's last line."""
    import multiprocessing

    from .cancel import Cancelled
    from .train import train_student

    (rows0, d0, key0), (rows1, d1, key1) = jobs
    result, error = d1 / "_result.json", d1 / "_error.txt"
    for f in (result, error):
        f.unlink(missing_ok=True)
    child = multiprocessing.get_context("spawn").Process(
        target=_train_in_child, name=f"omni-{d1.name}",
        args=(rows1, tcfg, u.settings["classes"], u.workdir, d1, key1, run, u.runtime["train.loader_workers"],
              result, error))
    child.start()
    try:
        first = train_student(rows0, tcfg, u.settings["classes"], u.workdir, d0, key0, run=run, progress=u.progress,
                              should_stop=u.should_stop)
        while child.is_alive():
            child.join(timeout=1.0)
            if u.should_stop():
                raise Cancelled(f"{u.name}: stopped while its second cross-fitted student trained")
    finally:
        if child.is_alive():  # SIGTERM: the child checkpoints and ends (a rerun resumes it)
            child.terminate()
            child.join(timeout=120)
            if child.is_alive():
                child.kill()
                child.join()
    if child.exitcode != 0 or not result.exists():
        why = error.read_text().strip().splitlines()[-1] if error.exists() else f"exit code {child.exitcode}"
        raise StageError(f"{u.name}: the cross-fitted student of {d1.name} failed: {why}")
    return [first, json.loads(result.read_text())]


def _train_in_child(rows, tcfg, class_names, workdir, out_dir, key, run, reserved, result, error) -> None:
    """A spawned child's body (``_train_two_side_by_side``): one student, its fair share of the cores."""
    import traceback

    from .cancel import raise_on_signals
    from .cores import CoreShare
    from .train import train_student

    raise_on_signals()  # the parent's terminate() becomes Cancelled: training checkpoints on the way out
    try:
        with CoreShare(reserved=reserved) as cores:

            def follow_the_core_share() -> bool:  # called every step; the child never asks to stop
                cores.apply()
                return False

            res = train_student(rows, tcfg, class_names, workdir, out_dir, key, run=run,
                                should_stop=follow_the_core_share)
        write_json_atomic(result, res)
    except BaseException:
        error.write_text(traceback.format_exc())
        raise


def _evaluate(u: Unit) -> dict:
    from .evaluate import evaluate_model

    _threads(u)
    val = _target_samples(u)
    val = val[val["split"] == "val"]
    if val.empty:
        raise StageError("no usable target val clips to evaluate on")
    metrics = evaluate_model(u.input(f"train/{u.part}") / "model.pt", val, u.workdir,
                             num_clips=u.settings["evaluate"]["num_clips"], amp=u.settings["amp"],
                             device=u.runtime["train.device"], batch_size=u.runtime["evaluate.batch_size"],
                             loader_workers=u.runtime["train.loader_workers"])
    metrics["run"] = u.part
    write_json_atomic(u.dir / "metrics.json", metrics)
    from .plots import confusion_png

    try:
        confusion_png(metrics["confusion"], metrics["class_names"],
                      f"{u.part}: top-1 {100 * metrics['top1']:.1f}% on {metrics['num_samples']} val clips",
                      u.dir / "confusion.png")
    except Exception as exc:  # a picture must never fail the stage
        log.warning("%s: no confusion matrix picture: %s", u.name, exc)
    return {k: metrics[k] for k in ("top1", "top5", "mean_class_accuracy", "clip_top1", "num_samples")}


BODIES: dict[str, Callable[[Unit], dict]] = {
    "ingest": _ingest, "extract": _extract, "teacher": _teacher, "score": _score, "filter": _filter,
    "manifest": _manifest, "train": _train, "evaluate": _evaluate,
}

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


def check_config(cfg: Config) -> None:
    """Problems a config has before any stage runs (raises ConfigError, or ListError for a list
    that cannot be read at all): class names, workdir, each model's arch and pretrained file,
    and every target and crawl list (a bad row of a crawl list is not an error: ingest records
    its reason)."""
    from .lists import read_target_list
    from .models import arch_problem

    names = cfg.class_names()
    if Path(cfg.workdir).exists() and not Path(cfg.workdir).is_dir():
        raise ConfigError(f"workdir {cfg.workdir} is a file, not a folder")
    used = [(f"teacher.{k}", getattr(cfg.teacher, k)) for k in teacher_kinds(cfg)] + [("train.model", cfg.train.model)]
    for where, m in used:
        problem = arch_problem(m.arch)
        if problem:
            raise ConfigError(f"{where}.arch: {problem}")
        if m.pretrained is not None and not Path(m.pretrained).is_file():
            raise ConfigError(f"{where}.pretrained: no such file: {m.pretrained}")
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
