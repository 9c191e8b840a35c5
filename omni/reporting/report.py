"""What a run did, read back from its output files: counts per source, metrics per run."""
from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from ..config import Config
from ..selection.filter import teacher_notes
from ..pipeline import read_metrics, runs, stage_dir, teacher_kinds


def pipeline_report(cfg: Config) -> dict:
    rep: dict = {"workdir": str(cfg.workdir), "sources": {}, "runs": {}}
    web_path = stage_dir(cfg, "manifest") / "web_items.parquet"
    if web_path.exists():
        web = pd.read_parquet(web_path)
        for src, g in web.groupby("source", sort=False):
            items = g.drop_duplicates("item_id")
            rejected = g[g["status"] != "kept"]
            reasons = Counter(_group(s, r) for s, r in zip(rejected["status"], rejected["reason"]))
            rep["sources"][src] = {
                "crawled": int(len(items)),
                "ingested": int(len(items) - _ingest_failed(items)
                                - items["status"].isin(["duplicate", "leak"]).sum()),
                "samples": int(g["sample_id"].notna().sum()),
                "kept": int((g["status"] == "kept").sum()),
                "rejected": dict(reasons.most_common()),
            }
    for kind in teacher_kinds(cfg):
        summary = stage_dir(cfg, f"teacher/{kind}") / "summary.json"
        if summary.exists():
            rep.setdefault("teacher", {})[kind] = json.loads(summary.read_text()).get("val")
    filter_summary = stage_dir(cfg, "filter") / "summary.json"
    if filter_summary.exists():
        try:
            notes = teacher_notes(json.loads(filter_summary.read_text()))
        except (OSError, ValueError):
            notes = {}
        if notes:
            rep["filter"] = {"teachers": notes}
    for run in runs(cfg):
        m = read_metrics(cfg, run)
        if m:
            rep["runs"][run] = {k: m[k] for k in ("top1", "top5", "mean_class_accuracy")}
    return rep


def _ingest_failed(items: pd.DataFrame) -> int:
    """Items that failed before extraction (fetch or validation), not at decode time."""
    failed = items[items["status"] == "failed"]
    return int((~failed["reason"].str.startswith("decode failed")).sum())


def _group(status: str, reason: str) -> str:
    if status == "filtered":
        return "filtered by teacher"
    if status == "leak":
        return "leak (val near-duplicate)"
    if status == "duplicate":
        return "duplicate"
    for prefix in ("corrupt video", "corrupt image", "truncated video", "decode failed", "validation error"):
        if reason.startswith(prefix):
            return prefix
    return reason


def report_table(rep: dict, extra: dict | None = None) -> str:
    """Plain-text tables for the terminal."""
    lines = []
    extra = extra or {}
    if rep["sources"]:
        head = f"{'source':<12}{'crawled':>8}{'ingested':>9}{'samples':>8}{'kept':>6}"
        has_prec = any("precision_kept" in v for v in extra.get("sources", {}).values())
        if has_prec:
            head += f"{'precision':>10}{'(unfilt.)':>10}"
        lines += [head + "  rejected (reason: count)", "-" * len(head)]
        for src, s in rep["sources"].items():
            line = f"{src:<12}{s['crawled']:>8}{s['ingested']:>9}{s['samples']:>8}{s['kept']:>6}"
            if has_prec:
                e = extra["sources"].get(src, {})
                line += f"{_pct(e.get('precision_kept')):>10}{_pct(e.get('precision_unfiltered')):>10}"
            lines.append(line + "  " + ", ".join(f"{k}: {v}" for k, v in s["rejected"].items()))
    warnings = filter_warnings(rep)
    if warnings:
        lines += ["", "filter warnings:"] + [f"  {w}" for w in warnings]
    if rep.get("teacher"):
        t = ", ".join(f"{k} teacher top1 {_pct((v or {}).get('top1'))}"
                      + (f" (query AUC {v['query_auc']:.2f})" if isinstance((v or {}).get("query_auc"), float) else "")
                      for k, v in rep["teacher"].items())
        lines += ["", f"teachers on val: {t}"]
    if rep["runs"]:
        lines += ["", f"{'run':<12}{'top1':>8}{'top5':>8}{'mean class acc':>16}"]
        for run, m in rep["runs"].items():
            lines.append(f"{run:<12}{_pct(m['top1']):>8}{_pct(m['top5']):>8}{_pct(m['mean_class_accuracy']):>16}")
        if {"baseline", "omnisource"} <= set(rep["runs"]):
            d = rep["runs"]["omnisource"]["top1"] - rep["runs"]["baseline"]["top1"]
            lines.append(f"web data worth: {d * 100:+.1f} points top-1")
    if not lines:
        lines.append(f"nothing to report yet in {rep['workdir']}: no manifest, teacher or evaluation for this "
                     "config (run `omni run CONFIG`)")
    return "\n".join(lines)


def report_markdown(rep: dict) -> str:
    """The run summary as markdown tables (what the web data was worth first), with the output files."""
    from .stage_tables import table_markdown

    out = ["# OmniSource run", ""]
    runs_ = rep["runs"]
    if {"baseline", "omnisource"} <= set(runs_):
        d = runs_["omnisource"]["top1"] - runs_["baseline"]["top1"]
        out += [f"**Web data worth {d * 100:+.1f} points top-1**: target-only baseline "
                f"{_pct(runs_['baseline']['top1'])} -> OmniSource {_pct(runs_['omnisource']['top1'])}", ""]
    if runs_:
        out += ["## Models on the target val set", "", table_markdown(
            [{"run": r, "top-1": _pct(m["top1"]), "top-5": _pct(m["top5"]),
              "mean class acc": _pct(m["mean_class_accuracy"])} for r, m in runs_.items()]), ""]
    if rep.get("teacher"):
        out += ["## Teachers on the target val set", "", table_markdown(
            [{"teacher": k, "top-1": _pct((v or {}).get("top1"))} for k, v in rep["teacher"].items()]), ""]
    if rep["sources"]:
        out += ["## Web sources", "", table_markdown(
            [{"source": src, "crawled": s["crawled"], "ingested": s["ingested"], "samples": s["samples"],
              "kept": s["kept"], "rejected (reason: count)": "; ".join(f"{k}: {v}" for k, v in s["rejected"].items())}
             for src, s in rep["sources"].items()]), ""]
    warnings = filter_warnings(rep)
    if warnings:
        out += ["## Filter warnings", ""] + [f"- {w}" for w in warnings] + [""]
    w = rep["workdir"]
    out += ["## Files", "", f"- manifest: `{w}/manifest/web_items.parquet`, `{w}/manifest/train.parquet`",
            f"- models: `{w}/train/<run>/model.pt`; metrics: `{w}/eval/<run>/metrics.json`",
            f"- filter: `{w}/filter/summary.json`, contact sheets `{w}/filter/contact-<source>.png`", ""]
    return "\n".join(out)


def filter_warnings(rep: dict) -> list[str]:
    """The filter's warnings on its teachers (``filter/summary.json``'s ``teachers``), if any."""
    notes = (rep.get("filter") or {}).get("teachers") or {}
    return [n["warning"] for n in notes.values() if isinstance(n, dict) and isinstance(n.get("warning"), str)]


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"
