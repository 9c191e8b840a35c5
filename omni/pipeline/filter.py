"""The filter stage: the teacher-score rule (omni/selection/filter.py) over every source, its per-class
summary and one contact sheet per source."""
from __future__ import annotations

import json
import logging

import pandas as pd

from ..runtime.atomic import write_json_atomic
from .layout import StageError, teacher_kinds
from .unit import Unit

log = logging.getLogger("omni")


def body(u: Unit) -> dict:
    from ..runtime.atomic import write_parquet_atomic
    from ..config import FilterConfig
    from ..selection.filter import filter_scores, read_scores
    from ..learning.score import SCORE_COLUMNS

    parts = [read_scores(u.input(f"score/{s.name}") / "scores.parquet") for s in u.cfg.sources]
    empty = pd.DataFrame(columns=[c for c in SCORE_COLUMNS if c != "teacher_probs"] + ["query_rank", "top_score"])
    scores = pd.concat(parts, ignore_index=True) if parts else empty
    out = filter_scores(scores, FilterConfig(**u.settings["filter"]), u.settings["classes"])
    write_parquet_atomic(out, u.dir / "filtered.parquet")
    sheets = inspect_filter(u, scores.merge(out, on="sample_id"))
    return {"kept": int((out["filter_status"] == "kept").sum()),
            "filtered": int((out["filter_status"] == "filtered").sum()), "contact_sheets": sheets}


def inspect_filter(u: Unit, judged: pd.DataFrame) -> list[str]:
    """Per-class counts and one contact sheet per source (``filter/contact-<source>.png``)."""
    from ..config import FilterConfig
    from ..reporting.contact_sheet import contact_sheet, filter_summary
    from ..selection.filter import TEACHERS_KEY, teacher_note

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
