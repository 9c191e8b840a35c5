"""The paper's ablation table from one set of cached stages: ``omni ablate CONFIG``.

Variants (each a student trained with the train stage's recipe, then evaluated like the
pipeline's runs): target only; target + each source alone; target + all sources (omni's
student); all sources unfiltered (the teacher's verdict ignored); and each training practice
switched in turn (class resampling off, replicated instead of warped pseudo-clips, cross-dataset
mixup on, the small-loss rule on (``aux_drop``) or off, the target:web batch ratio doubled). ``seeds`` repeats each with seeds
``train.seed + k``. Each variant x seed is a unit under ``<workdir>/ablation/<variant>/seed-<k>/``
with a key over its settings and the keys of the units it reads, so a second run recomputes
nothing and a changed setting retrains only what it touches. Writes ``ablation.csv``,
``ablation.md`` and ``ablation.png`` (mean top-1 with the spread over seeds) under
``<workdir>/ablation/``.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .. import cache
from ..config import Config, TrainConfig
from ..runtime.atomic import write_json_atomic
from ..selection.manifest import TRAIN_COLUMNS

log = logging.getLogger(__name__)

VERSION = 1


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    sources: tuple[str, ...] | None = None  # None: every source; (): target only
    unfiltered: bool = False
    train: dict = field(default_factory=dict)  # train-section overrides


def variants(cfg: Config) -> list[Variant]:
    names = [s.name for s in cfg.sources]
    t = cfg.train
    out = [Variant("target-only", "target only", sources=())]
    out += [Variant(f"plus-{n}", f"target + {n}", sources=(n,)) for n in names] if len(names) > 1 else []
    out += [Variant("all", "target + all sources, the teacher's selection (omni's first round)"),
            Variant("unfiltered", "all sources, teacher's verdict ignored", unfiltered=True),
            Variant("no-resampling", "without class resampling of web data", train={"resample_power": None,
                                                                                     "cap_per_class": None})]
    if any(s.kind == "image" for s in cfg.sources):
        other = "replicate" if t.pseudo_clip == "warp" else "warp"
        out.append(Variant(f"pseudo-clip-{other}", f"images as {other}d pseudo-clips instead of {t.pseudo_clip}",
                           train={"pseudo_clip": other}))
    out.append(Variant("mixup", "cross-dataset mixup on (alpha 0.2)" if t.mixup_alpha == 0 else "mixup off",
                       train={"mixup_alpha": 0.2 if t.mixup_alpha == 0 else 0.0}))
    out.append(Variant("small-loss", "small-loss rule on: each web batch's worst-fitted 30% left out" if t.aux_drop == 0
                       else f"aux_drop off (was {t.aux_drop})", train={"aux_drop": 0.3 if t.aux_drop == 0 else 0.0}))
    per_source = t.aux_batch_size or max(1, -(-t.model.batch_size // max(1, len(names))))
    out.append(Variant("web-batch-x2", f"web batch per source {2 * per_source} instead of {per_source}",
                       train={"aux_batch_size": 2 * per_source}))
    return out


def _rows(cfg: Config, v: Variant) -> pd.DataFrame:
    """The training rows of a variant, from the manifest and the extract units' samples."""
    work = Path(cfg.workdir)
    train = pd.read_parquet(work / "manifest" / "train.parquet")
    if not v.unfiltered:
        keep = train["source"] == "target"
        if v.sources is None:
            return train
        return train[keep | train["source"].isin(v.sources)].reset_index(drop=True)
    web = pd.read_parquet(work / "manifest" / "web_items.parquet", columns=["sample_id", "status"])
    passed = set(web.loc[web["status"].isin(["kept", "filtered"]), "sample_id"])  # only the teacher said no
    parts = [train[train["source"] == "target"]]
    for s in cfg.sources:
        samples = pd.read_parquet(work / "extract" / s.name / "samples.parquet")
        parts.append(samples[samples["sample_id"].isin(passed)][TRAIN_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def _unit_key(cfg: Config, keys, v: Variant, tcfg: TrainConfig) -> str:
    from .keys import _AUX_ONLY_TRAIN, _SECOND_ROUND_ONLY_TRAIN, _section

    train = _section(tcfg, _SECOND_ROUND_ONLY_TRAIN, prefix="train")  # (the first round's selection: no soft targets)
    if v.sources == ():  # target only: the web-data settings do not matter
        train = {k: x for k, x in train.items() if k not in _AUX_ONLY_TRAIN}
    inputs = {"manifest": keys["manifest"], "extract/target": keys["extract/target"]}
    if v.unfiltered:
        inputs.update({f"extract/{s.name}": keys[f"extract/{s.name}"] for s in cfg.sources})
    settings = {"variant": {"sources": v.sources, "unfiltered": v.unfiltered}, "classes": cfg.class_names(),
                "train": train, "evaluate": _section(cfg.evaluate, prefix="evaluate")}
    return cache.stage_key("ablate", VERSION, settings, inputs)


def run_ablation(cfg: Config, keys, seeds: int = 1, progress_for: Callable[[str], object] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> pd.DataFrame:
    """Train and evaluate every variant x seed (cached); returns and writes the table."""
    from ..learning.evaluate import evaluate_model
    from ..learning.train import train_student
    from .keys import runtime_settings
    from .layout import StageError
    from .unit import require, run_options

    require(cfg, keys, "manifest")
    require(cfg, keys, "extract/target")
    rt = runtime_settings(cfg)
    run = run_options(rt)
    target = pd.read_parquet(Path(cfg.workdir) / "extract" / "target" / "samples.parquet")
    val = target[(target["split"] == "val") & (target["extract_status"] == "ok")]
    if val.empty:
        raise StageError("no usable target val clips to evaluate the ablation on")
    out_root = Path(cfg.workdir) / "ablation"
    records = []
    for v in variants(cfg):
        rows = _rows(cfg, v)
        for k in range(seeds):
            tcfg = cfg.train.model_copy(update={**v.train, "seed": cfg.train.seed + k})
            d = out_root / v.name / f"seed-{k}"
            key = _unit_key(cfg, keys, v, tcfg)
            if not cache.is_done(d, key):
                if cache.read_done(d) is not None:  # done under other settings: omni's own folder, redone
                    shutil.rmtree(d)
                d.mkdir(parents=True, exist_ok=True)
                log.info("ablate %s seed %d: %s (%d training rows)", v.name, k, v.what, len(rows))
                res = train_student(rows, tcfg, cfg.class_names(), cfg.workdir, d, key, run=run,
                                    progress=progress_for(f"ablate-{v.name}-{k}") if progress_for else None,
                                    should_stop=should_stop)
                m = evaluate_model(d / "model.pt", val, cfg.workdir, num_clips=cfg.evaluate.num_clips,
                                   amp=tcfg.amp, device=rt["train.device"], batch_size=rt["evaluate.batch_size"],
                                   loader_workers=rt["train.loader_workers"])
                (d / "checkpoint.pth").unlink(missing_ok=True)
                cache.mark_done(d, key, top1=m["top1"], top5=m["top5"], mean_class_accuracy=m["mean_class_accuracy"],
                                train_rows=len(rows), steps=res["steps"])
            info = cache.read_done(d)
            records.append({"variant": v.name, "what": v.what, "seed": cfg.train.seed + k,
                            "train_rows": info["train_rows"], "top1": info["top1"], "top5": info["top5"],
                            "mean_class_accuracy": info["mean_class_accuracy"]})
    table = pd.DataFrame(records)
    write_outputs(table, out_root)
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (sample standard deviation) over seeds, per variant, in variant order."""
    order = list(dict.fromkeys(table["variant"]))
    g = table.groupby("variant", sort=False)
    out = pd.DataFrame({"what": g["what"].first(), "seeds": g.size(), "train_rows": g["train_rows"].first(),
                        "top1_mean": 100 * g["top1"].mean(), "top1_sd": 100 * g["top1"].std(ddof=1).fillna(0.0),
                        "top5_mean": 100 * g["top5"].mean()}).loc[order]
    base = out.loc["all", "top1_mean"] if "all" in out.index else np.nan
    out["vs_all"] = out["top1_mean"] - base
    return out


def write_outputs(table: pd.DataFrame, out_root: Path) -> None:
    from ..reporting.plots import bar_chart_png

    out_root.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_root / "ablation.csv", index=False)
    s = summary(table)
    lines = ["| variant | what | seeds | training rows | top-1 % (mean ± sd) | top-5 % | vs all sources |",
             "|---|---|---|---|---|---|---|"]
    for name, r in s.iterrows():
        lines.append(f"| {name} | {r['what']} | {r['seeds']} | {r['train_rows']} | {r['top1_mean']:.1f} ± "
                     f"{r['top1_sd']:.1f} | {r['top5_mean']:.1f} | {r['vs_all']:+.1f} |")
    (out_root / "ablation.md").write_text("\n".join(lines) + "\n")
    write_json_atomic(out_root / "summary.json", json.loads(s.reset_index().to_json(orient="records")))
    try:
        bar_chart_png(list(s.index), list(s["top1_mean"]), list(s["top1_sd"]), "top-1 % on target val "
                      "(mean, bar: ±1 sd over seeds)", out_root / "ablation.png")
    except Exception as exc:  # a picture never fails the table
        log.warning("ablation: no chart: %s", exc)
