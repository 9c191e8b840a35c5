"""What each stage did, as a table a user reads at a glance, and the pictures it drew.

Read back from the stage's own output files (``_done.json``, ``summary.json``, PNGs), so the
same rows come out for a fresh run and a cache hit, from the CLI or from Prefect.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import cache
from ..config import Config
from ..pipeline import stage_dir, units


def _done(cfg: Config, unit: str) -> dict:
    return cache.read_done(stage_dir(cfg, unit)) or {}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _reasons(by_reason: dict, top: int = 4) -> str:
    items = sorted(by_reason.items(), key=lambda kv: -kv[1])
    text = "; ".join(f"{k}: {v}" for k, v in items[:top])
    return text + (f"; +{len(items) - top} more" if len(items) > top else "")


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ingest_row(cfg: Config, unit: str, d: dict) -> dict:
    part = unit.split("/", 1)[1]
    if part == "target":
        ok = {k: v for k, v in d.items() if k.endswith("/ok")}
        failed = {k: v for k, v in d.items() if k.endswith("/failed")}
        return {"unit": unit, "rows": sum(ok.values()) + sum(failed.values()), "ok": sum(ok.values()),
                "failed": sum(failed.values()), "duplicate": 0, "leak": 0, "failed by reason": ""}
    st = d.get("by_status", {})
    reasons = {k: v for k, v in d.get("by_reason", {}).items()
               if k not in ("near-duplicate of val item", "same bytes as")}
    return {"unit": unit, "rows": d.get("rows", 0), "ok": st.get("ok", 0), "failed": st.get("failed", 0),
            "duplicate": st.get("duplicate", 0), "leak": st.get("leak", 0), "failed by reason": _reasons(reasons)}


def _extract_row(cfg: Config, unit: str, d: dict) -> dict:
    return {"unit": unit, "samples": d.get("samples", 0), "frames": d.get("frames", 0),
            "failed items": d.get("failed_items", 0), "MB": round(d.get("bytes", 0) / 1e6, 1),
            "seconds": d.get("elapsed_s")}


def _train_row(cfg: Config, unit: str, d: dict) -> dict:
    row = {"unit": unit, "steps": d.get("steps"), "final loss": d.get("final_loss"),
           "clips seen": d.get("clips_seen"), "clips/s": d.get("clips_per_s"), "seconds": d.get("elapsed_s"),
           "resumed from step": d.get("resumed_from_step"), "device": d.get("device")}
    if unit.startswith("teacher/"):
        row["val top-1"] = _pct((_json(stage_dir(cfg, unit) / "summary.json").get("val") or {}).get("top1"))
    if d.get("aux_units"):
        row["web samples"] = ", ".join(f"{k}: {v}" for k, v in d["aux_units"].items())
    return row


def _score_row(cfg: Config, unit: str, d: dict) -> dict:
    return {"unit": unit, "scored": d.get("scored", 0)}


def _evaluate_row(cfg: Config, unit: str, d: dict) -> dict:
    return {"unit": unit, "top-1": _pct(d.get("top1")), "top-5": _pct(d.get("top5")),
            "mean class acc": _pct(d.get("mean_class_accuracy")), "clip top-1": _pct(d.get("clip_top1")),
            "val clips": d.get("num_samples")}


def _filter_rows(cfg: Config) -> list[dict]:
    summary = _json(stage_dir(cfg, "filter") / "summary.json")
    rows = []
    for src, per_class in summary.items():
        if not isinstance(per_class, dict) or not all(isinstance(c, dict) and "scored" in c
                                                      for c in per_class.values()):
            continue  # not a source's counts (the ``teachers`` entry)
        scored = sum(c["scored"] for c in per_class.values())
        kept = sum(c["kept"] for c in per_class.values())
        rows.append({"source": src, "scored": scored, "kept": kept, "filtered": scored - kept,
                     "kept share": _pct(kept / scored if scored else None),
                     "classes with nothing kept": sum(1 for c in per_class.values() if c["kept"] == 0)})
    return rows


def _manifest_rows(cfg: Config) -> list[dict]:
    by = _done(cfg, "manifest").get("by_source_status", {})
    per: dict[str, dict] = {}
    for k, v in by.items():
        src, _, status = k.partition("/")
        per.setdefault(src, {})[status] = v
    cols = ("kept", "filtered", "failed", "duplicate", "leak")
    return [{"source": src, "rows": sum(st.values()), **{c: st.get(c, 0) for c in cols},
             **{k: v for k, v in st.items() if k not in cols}} for src, st in per.items()]


ROWS = {"ingest": _ingest_row, "extract": _extract_row, "teacher": _train_row, "score": _score_row,
        "train": _train_row, "evaluate": _evaluate_row}


def stage_table(cfg: Config, stage: str) -> list[dict]:
    """One row per unit (or per source for filter and manifest) of a finished stage."""
    if stage == "filter":
        return _filter_rows(cfg)
    if stage == "manifest":
        return _manifest_rows(cfg)
    rows = []
    for unit in units(cfg, stage):
        d = _done(cfg, unit)
        if d:
            rows.append(ROWS[stage](cfg, unit, d))
    return rows


def stage_pictures(cfg: Config, stage: str) -> list[tuple[str, Path]]:
    """``(title, png)`` for each picture the stage drew: contact sheets, curves, confusion matrices."""
    out = []
    if stage == "filter":
        for s in cfg.sources:
            p = stage_dir(cfg, "filter") / f"contact-{s.name}.png"
            if p.exists():
                out.append((f"filter: kept vs rejected, {s.name}", p))
    names = {"teacher": "curve.png", "train": "curve.png", "evaluate": "confusion.png"}
    if stage in names:
        for unit in units(cfg, stage):
            p = stage_dir(cfg, unit) / names[stage]
            if p.exists():
                what = "confusion matrix" if stage == "evaluate" else "training curve"
                out.append((f"{unit}: {what}", p))
    return out


def table_markdown(rows: list[dict]) -> str:
    if not rows:
        return "(nothing)"
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
