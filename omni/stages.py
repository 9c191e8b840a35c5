"""The pipeline's stages as plain functions of a config: layout, cache keys, skip-if-done.

Each ``run_<stage>(cfg)`` checks ``<workdir>/<stage>/_done.json`` against the stage's key
(``omni.cache.stage_key`` over the stage's version, its settings and its inputs' fingerprints,
upstream keys included), returns at once on a hit, and otherwise runs and records the key.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from . import cache
from .config import Config

log = logging.getLogger("omni")

STAGES = ("ingest", "extract", "teacher", "score", "filter", "manifest", "train", "evaluate")
FETCH_VERSION = 1  # the downloads journal: bump only when what a fetch records changes
VERSIONS = {"ingest": 2, "extract": 1, "teacher": 1, "score": 1, "filter": 1, "manifest": 1,
            "train": 1, "evaluate": 1}
RUNS = ("baseline", "omnisource")

Progress = Callable[[int, int], None]


class StageError(RuntimeError):
    """A stage that cannot run, with what to do about it."""


@dataclass
class StageResult:
    stage: str
    key: str
    cached: bool
    info: dict = field(default_factory=dict)


FOLDERS = {"evaluate": "eval"}


def stage_dir(cfg: Config, stage: str) -> Path:
    """``<workdir>/<stage>``; a run-level name (``train/baseline``) gets its own sub-folder."""
    top, _, run = stage.partition("/")
    d = Path(cfg.workdir) / FOLDERS.get(top, top)
    return d / run if run else d


def _target_files_fingerprint(cfg: Config) -> str:
    """Target media are fingerprinted by path, size and mtime (cheap at any scale); their
    sha256 is computed during ingest, where a changed file is caught again."""
    import hashlib

    from .lists import read_target_list

    h = hashlib.sha256()
    names = cfg.class_names()
    for path in (cfg.target.train, cfg.target.val):
        try:
            df = read_target_list(path, names)
        except Exception as exc:  # the stage itself reports the bad list
            h.update(str(exc).encode())
            continue
        for p in df["path"]:
            try:
                st = Path(p).stat()
                h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"{p}:missing".encode())
    return h.hexdigest()


# settings that change how fast training runs, not what it computes
_RUNTIME_ONLY = {"baseline", "device", "threads", "checkpoint_every_steps", "loader_workers"}


class Keys:
    """Cache keys of every stage for one config, computed once."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._memo: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._memo:
            self._memo[name] = self._compute(name)
        return self._memo[name]

    def _compute(self, name: str) -> str:
        cfg = self.cfg
        if name == "ingest":
            inputs = {
                "classes": cfg.classes if isinstance(cfg.classes, list) else cache.fingerprint_path(cfg.classes),
                "target_train": cache.fingerprint_path(cfg.target.train),
                "target_val": cache.fingerprint_path(cfg.target.val),
                "target_files": _target_files_fingerprint(cfg),
                "sources": {s.name: cache.fingerprint_path(s.list) for s in cfg.sources},
            }
            return cache.stage_key("ingest", VERSIONS["ingest"], {"ingest": cfg.ingest, "sources": cfg.sources},
                                   inputs)
        if name == "fetch":  # downloads journal: reused across list edits and leak settings
            i = cfg.ingest.model_dump(exclude={"leak_threshold", "leak_check", "workers"})
            return cache.stage_key("fetch", FETCH_VERSION, i, {})
        upstream = {"extract": ["ingest"], "teacher": ["extract"], "score": ["teacher"], "filter": ["score"],
                    "manifest": ["filter"], "train/baseline": ["extract"], "train/omnisource": ["manifest"],
                    "evaluate/baseline": ["train/baseline"], "evaluate/omnisource": ["train/omnisource"]}[name]
        settings = {"extract": cfg.extract, "teacher": cfg.teacher, "score": {"device": "any"},
                    "filter": cfg.filter, "manifest": {},
                    "train/baseline": cfg.train.model_dump(exclude=_RUNTIME_ONLY),
                    "train/omnisource": cfg.train.model_dump(exclude=_RUNTIME_ONLY),
                    "evaluate/baseline": cfg.evaluate, "evaluate/omnisource": cfg.evaluate}[name]
        if name.startswith("train/"):
            # the baseline ignores auxiliary-only settings, so web-data knobs do not retrain it
            if name == "train/baseline":
                settings = {k: v for k, v in settings.items()
                            if k not in ("aux_batch_size", "aux_loss_weight", "resample_power", "cap_per_class",
                                         "pseudo_clip", "warp_strength", "mixup_alpha")}
        stage = name.split("/")[0]
        return cache.stage_key(name, VERSIONS[stage], settings, {u: self[u] for u in upstream})


def summarise(info: dict) -> str:
    """One line of a stage's result for the log."""
    if "sources" in info:  # ingest
        parts = []
        for src, s in info["sources"].items():
            st = ", ".join(f"{k} {v}" for k, v in s["by_status"].items())
            parts.append(f"{src}: {s['rows']} rows ({st}; {s['bytes'] / 1e6:.1f} MB)")
        return "; ".join(parts) + f"; {info.get('items_per_s')} items/s"
    return ", ".join(f"{k} {v}" for k, v in info.items() if not isinstance(v, dict))


def _require(cfg: Config, keys: Keys, stage: str) -> Path:
    d = stage_dir(cfg, stage)
    if not cache.is_done(d, keys[stage]):
        raise StageError(f"the {stage} stage has not run for this config: run `omni {stage.split('/')[0]} CONFIG` "
                         f"(or `omni run CONFIG`) first")
    return d


def _run(cfg: Config, name: str, keys: Keys, body: Callable[[Path], dict], wipe: bool = True) -> StageResult:
    d = stage_dir(cfg, name)
    key = keys[name]
    if cache.is_done(d, key):
        log.info("%s: cache hit (%s)", name, key[:12])
        return StageResult(name, key, True, cache.read_done(d) or {})
    started_file = d / "_started.json"  # the key this folder's partial outputs belong to
    try:
        started = json.loads(started_file.read_text())
    except (OSError, ValueError):
        started = None
    if wipe and d.exists() and (started or {}).get("key") != key:
        shutil.rmtree(d)  # outputs of another config: ours to remove, never user data
    d.mkdir(parents=True, exist_ok=True)
    cache.clear_done(d)
    cache.write_json_atomic(started_file, {"key": key})
    log.info("%s: running (%s)", name, key[:12])
    info = body(d)
    cache.mark_done(d, key, **info)
    log.info("%s: %s", name, summarise(info))
    return StageResult(name, key, False, info)


def run_ingest(cfg: Config, progress: Progress | None = None) -> StageResult:
    from .ingest import ingest

    keys = Keys(cfg)
    journal = stage_dir(cfg, "ingest") / "journal" / keys["fetch"]
    return _run(cfg, "ingest", keys, lambda d: ingest(cfg, d, journal, progress), wipe=False)


def run_extract(cfg: Config, progress: Progress | None = None) -> StageResult:
    from .extract import extract

    keys = Keys(cfg)
    ingest_dir = _require(cfg, keys, "ingest")
    return _run(cfg, "extract", keys, lambda d: extract(ingest_dir, d, cfg.extract, progress))


def run_teacher(cfg: Config, progress: Progress | None = None) -> StageResult:
    from .teacher import train_teachers

    keys = Keys(cfg)
    ex = _require(cfg, keys, "extract")
    return _run(cfg, "teacher", keys, lambda d: train_teachers(cfg, ex, d, keys["teacher"], progress))


def run_score(cfg: Config, progress: Progress | None = None) -> StageResult:
    from .teacher import score_items

    keys = Keys(cfg)
    ex = stage_dir(cfg, "extract")
    te = _require(cfg, keys, "teacher")
    return _run(cfg, "score", keys, lambda d: score_items(cfg, ex, te, d, progress))


def run_filter(cfg: Config, progress: Progress | None = None) -> StageResult:
    from .manifest import filter_samples

    keys = Keys(cfg)
    sc = _require(cfg, keys, "score")

    def body(d: Path) -> dict:
        samples = pd.read_parquet(stage_dir(cfg, "extract") / "samples.parquet")
        out = filter_samples(pd.read_parquet(sc / "scores.parquet"), samples, cfg.filter, cfg.class_names())
        out.to_parquet(d / "filtered.parquet", index=False)
        return {"kept": int((out["status"] == "kept").sum()), "filtered": int((out["status"] == "filtered").sum())}

    return _run(cfg, "filter", keys, body)


def run_manifest(cfg: Config, progress: Progress | None = None) -> StageResult:
    from .manifest import build_manifest

    keys = Keys(cfg)
    fi = _require(cfg, keys, "filter")

    def body(d: Path) -> dict:
        items = pd.read_parquet(stage_dir(cfg, "ingest") / "items.parquet")
        samples = pd.read_parquet(stage_dir(cfg, "extract") / "samples.parquet")
        web, train = build_manifest(items, samples, pd.read_parquet(fi / "filtered.parquet"), cfg.class_names())
        web.to_parquet(d / "web_items.parquet", index=False)
        train.to_parquet(d / "train.parquet", index=False)
        counts = {f"{src}/{st}": int(n) for (src, st), n in web.groupby(["source", "status"]).size().items()}
        return {"web_rows": len(web), "train_samples": len(train), "by_source_status": counts}

    return _run(cfg, "manifest", keys, body)


def _train_run(cfg: Config, run: str, progress: Progress | None) -> StageResult:
    from .data import ClipDataset
    from .train import fit

    keys = Keys(cfg)
    name = f"train/{run}"
    t = cfg.train
    m = t.model
    if run == "baseline":
        _require(cfg, keys, "extract")
        samples = pd.read_parquet(stage_dir(cfg, "extract") / "samples.parquet")
        train = samples[(samples["split"] == "train") & (samples["status"] == "ok")]
    else:
        mdir = _require(cfg, keys, "manifest")
        train = pd.read_parquet(mdir / "train.parquet")
    store = stage_dir(cfg, "extract") / "frames"

    def ds(rows):
        return ClipDataset(rows, store, m.num_frames, m.input_size, True, t.pseudo_clip, t.warp_strength, t.seed)

    def body(d: Path) -> dict:
        if t.threads:
            import torch
            torch.set_num_threads(t.threads)
        target = train[train["source"] == "target"]
        if target.empty:
            raise StageError("no usable target training clips")
        aux = {src: ds(g) for src, g in train[train["source"] != "target"].groupby("source")}
        # the paper's target:auxiliary batch ratio of about 1:1, split over the sources
        aux_batch = t.aux_batch_size or max(1, -(-m.batch_size // max(1, len(aux))))
        res = fit(m, len(cfg.class_names()), ds(target), d, keys[name], aux=aux, aux_batch_size=aux_batch,
                  aux_loss_weight=t.aux_loss_weight, resample_power=t.resample_power,
                  cap_per_class=t.cap_per_class, mixup_alpha=t.mixup_alpha, seed=t.seed, device=t.device,
                  amp=t.amp, checkpoint_every_steps=t.checkpoint_every_steps, loader_workers=t.loader_workers,
                  progress=progress)
        res["aux_units"] = {k: len(v) for k, v in aux.items()}
        res["aux_batch_size"] = aux_batch
        res["target_units"] = len(target)
        return res

    return _run(cfg, name, keys, body)


def runs(cfg: Config) -> list[str]:
    return ["baseline", "omnisource"] if cfg.train.baseline else ["omnisource"]


def run_train(cfg: Config, run: str | None = None, progress: Progress | None = None) -> list[StageResult]:
    return [_train_run(cfg, r, progress) for r in ([run] if run else runs(cfg))]


def _evaluate_run(cfg: Config, run: str) -> StageResult:
    from .data import ClipDataset
    from .train import classification_metrics, load_model, predict

    keys = Keys(cfg)
    tdir = _require(cfg, keys, f"train/{run}")

    def body(d: Path) -> dict:
        samples = pd.read_parquet(stage_dir(cfg, "extract") / "samples.parquet")
        val = samples[(samples["split"] == "val") & (samples["status"] == "ok")]
        if val.empty:
            raise StageError("no usable target val clips to evaluate on")
        model, m = load_model(tdir / "model.pt", cfg.train.device)
        ds = ClipDataset(val, stage_dir(cfg, "extract") / "frames", m.num_frames, m.input_size, False)
        probs = predict(model, ds, cfg.evaluate.batch_size, views=cfg.evaluate.num_clips, amp=cfg.train.amp)
        metrics = classification_metrics(probs, ds.labels, len(cfg.class_names()))
        names = cfg.class_names()
        metrics["per_class_accuracy"] = {names[int(c)]: v for c, v in metrics["per_class_accuracy"].items()}
        metrics["run"] = run
        cache.write_json_atomic(d / "metrics.json", metrics)
        return {k: metrics[k] for k in ("top1", "top5", "mean_class_accuracy", "num_samples")}

    return _run(cfg, f"evaluate/{run}", keys, body)


def run_evaluate(cfg: Config, run: str | None = None, progress: Progress | None = None) -> list[StageResult]:
    return [_evaluate_run(cfg, r) for r in ([run] if run else runs(cfg))]


def read_metrics(cfg: Config, run: str) -> dict | None:
    p = stage_dir(cfg, "eval") / run / "metrics.json"
    return json.loads(p.read_text()) if p.exists() else None
