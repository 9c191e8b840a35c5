"""Cache keys: what each unit reads (its settings, the user's files, the keys of the units
upstream) and the key that hashes exactly that (``Keys``; the hashing itself is omni/cache.py)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .. import cache
from ..config import Config, ModelConfig, SourceConfig
from .layout import FETCH_VERSION, VERSIONS, StageError, source_config, stage_dir, upstream

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


# model settings added after runs were cached, with the value that leaves training as it was:
# absent from keys at that value (the keys of runs before them stay valid)
_MODEL_OFF = {"backbone_lr_mult": 1.0, "freeze_bn": False}


def model_settings(m: ModelConfig) -> dict:
    """A model's settings as its units hash them (``_MODEL_OFF`` settings left out when off)."""
    return {k: v for k, v in m.model_dump(mode="json").items() if not (k in _MODEL_OFF and v == _MODEL_OFF[k])}


def _section(model, exclude: set | frozenset = frozenset(), prefix: str = "") -> dict:
    skip = {k.split(".", 1)[1] for k in RUNTIME_ONLY if k.startswith(prefix + ".")} if prefix else set()
    out = model.model_dump(mode="json", exclude=set(exclude) | skip)
    if isinstance(getattr(model, "model", None), ModelConfig) and "model" in out:
        out["model"] = model_settings(model.model)
    return out


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
        s = source_config(cfg, part)
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
        kind = source_config(cfg, part).kind
        ex = _section(cfg.extract, prefix="extract")
        if kind == "image":
            ex = {k: v for k, v in ex.items() if k in _IMAGE_EXTRACT}
            return {"extract": {**ex, "short_side": cfg.frame_short_side()}}
        if kind == "video":
            ex = {k: v for k, v in ex.items() if k not in _UNTRIMMED_ONLY_EXTRACT}
        return {"extract": {**ex, "short_side": cfg.frame_short_side()}, **_video_pixel_cap(cfg)}
    if stage == "teacher":
        return {"classes": names, "model": model_settings(getattr(cfg.teacher, part)),
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
    from ..fetching.fetch import local_roots_for

    src = source_config(cfg, source)
    return local_roots_for(cfg.ingest.local_roots, [src.list, cfg.target.train, cfg.target.val])


def runtime_settings(cfg: Config) -> dict:
    """The runtime-only knobs (see ``RUNTIME_ONLY``), by their dotted names."""
    out = {}
    for dotted in RUNTIME_ONLY:
        section, name = dotted.split(".")
        out[dotted] = getattr(getattr(cfg, section), name)
    return out


def _target_files_fingerprint(cfg: Config) -> str:
    """Target media by path and content (sha256). Hashes are remembered in the workdir by size
    and mtime (``cache.HashMemo``), so a rerun reads no file whose stat is unchanged, and a copy
    of the data with new timestamps keeps every key."""
    from ..fetching.lists import read_target_list

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
    from ..fetching.fetch import local_path
    from ..fetching.lists import read_crawl_list

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
    if stage in ("teacher", "train"):  # a local pretrained file by content (a name names its weights)
        m = getattr(cfg.teacher, part) if stage == "teacher" else cfg.train.model
        if m.pretrained is None or m.pretrained.startswith(("timm:", "torchvision:")):
            return {}
        return {"pretrained": cache.fingerprint_path(m.pretrained)}
    if stage != "ingest":
        return {}
    if part == "target":
        return {"target_train": cache.fingerprint_path(cfg.target.train),
                "target_val": cache.fingerprint_path(cfg.target.val),
                "target_files": _target_files_fingerprint(cfg)}
    src = source_config(cfg, part)
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
            from ..fetching.retry import retried_fingerprint

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
