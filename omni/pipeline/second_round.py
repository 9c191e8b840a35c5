"""The second round (``filter.refine``): the first-round student re-scores every web sample and
the rule selects again; the student omni hands over learns from that selection."""
from __future__ import annotations

import pandas as pd

from .manifest import manifest_inputs, write_manifest
from .score import rescore
from .unit import Unit


def select_again(u: Unit) -> tuple[pd.DataFrame, dict]:
    """The second round's selection: the first-round student scores every extracted web sample
    (the score stage's sharded, resumable scoring, with the student as teacher), the rule
    ``omni.selection.filter.second_round`` gives selects again, and the manifest is rebuilt from those scores
    (``train/omnisource/web_items.parquet``, ``train.parquet``, ``scores.parquet``); ingest,
    duplicate and leak verdicts are unchanged."""
    from ..config import FilterConfig
    from ..selection.filter import read_scores, second_round

    items, web, target = manifest_inputs(u)

    first = u.input("train/first_round")
    if u.settings.get("refine_crossfit"):  # each half judged by the student that did not learn from it
        from ..runtime.atomic import write_parquet_atomic
        from ..selection.filter import crossfit_fold

        fold = crossfit_fold(web["item_id"])
        info = {"scored": 0}
        for k in (0, 1):
            part = rescore(u, web[fold == 1 - k], first / f"fold{k}", "student", u.dir / f"scored_by_fold{k}",
                           amp=u.settings["train"]["amp"])
            info["scored"] += part["scored"]
        if u.ranks.main:
            write_parquet_atomic(pd.concat([pd.read_parquet(u.dir / f"scored_by_fold{k}" / "scores.parquet")
                                            for k in (0, 1)], ignore_index=True), u.dir / "scores.parquet")
        u.ranks.barrier()
    else:
        info = rescore(u, web, first, "student", u.dir, amp=u.settings["train"]["amp"])
    if u.ranks.main:
        scores = read_scores(u.dir / "scores.parquet")
        # (keys.unit_settings leaves off-valued second-round keys out: off is False / {} here, and
        # refine_min_contradiction, absent, is read by no rule)
        fcfg = FilterConfig(**u.settings["filter"], refine_rule=u.settings["refine_rule"],
                            refine_relabel=u.settings.get("refine_relabel", False),
                            refine_kind_rules=u.settings.get("refine_kind_rules", {}),
                            **{k: u.settings[k] for k in ("refine_min_contradiction",) if k in u.settings})
        filtered = second_round(scores, fcfg, u.settings["classes"], min_score=u.settings["refine_min_score"],
                                min_relative=u.settings["refine_min_relative"],
                                kinds=u.settings.get("source_kinds"))
        write_manifest(u, items, web, scores.drop(columns=["query_rank", "top_score"], errors="ignore"), filtered,
                       target)
    u.ranks.barrier()
    train = pd.read_parquet(u.dir / "train.parquet")
    return train, {"scored": info["scored"], "train_samples": len(train)}
