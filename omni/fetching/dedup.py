"""Duplicates and leaks: exact copies (sha256) and near-duplicates of target val items.

A web item whose bytes equal a val item, or whose frames nearly match one (thumbnail cosine
similarity, averaged over frames, at or above the threshold), would leak the test set: it is
marked ``leak`` and never trained on. Bytes equal to a target train item, or to an earlier
item of the same list, are ``duplicate`` (the first occurrence is kept).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from . import leak


def mark_duplicates_and_leaks(items: pd.DataFrame, targets: pd.DataFrame, threshold: float,
                              check_near: bool = True, thumbs_of: Callable[[Any], str | None] | None = None,
                              chunk: int = 4096) -> pd.DataFrame:
    """Adds ``leak_of`` and ``leak_similarity``; rewrites ``status``/``reason`` of copies.

    ``thumbs_of(index)`` gives an item's stored thumbnails (default: its ``thumbs`` column);
    they are decoded ``chunk`` items at a time, so a long list never has all of them in memory."""
    items = items.copy()
    items["leak_of"] = ""
    items["leak_similarity"] = np.nan
    if items.empty:
        return items
    ok_t = targets[targets["status"] == "ok"]
    val_t = ok_t[ok_t["split"] == "val"]
    val_sha = dict(zip(val_t["sha256"], val_t["path"]))
    train_sha = dict(zip(ok_t.loc[ok_t["split"] == "train", "sha256"], ok_t.loc[ok_t["split"] == "train", "path"]))
    ok = items["status"] == "ok"
    in_val = ok & items["sha256"].isin(val_sha)
    items.loc[in_val, "status"] = "leak"
    items.loc[in_val, "reason"] = "same bytes as a val item"
    items.loc[in_val, "leak_of"] = items.loc[in_val, "sha256"].map(val_sha)
    items.loc[in_val, "leak_similarity"] = 1.0
    in_train = ok & ~in_val & items["sha256"].isin(train_sha)
    items.loc[in_train, "status"] = "duplicate"
    items.loc[in_train, "reason"] = "same bytes as a target train item"
    rest = ok & ~in_val & ~in_train
    first = items[rest].drop_duplicates("sha256").set_index("sha256")["item_id"]
    # only among the usable rows: a failed row sharing an item's record must not make it a copy
    again = items.index[rest][items.loc[rest, "sha256"].duplicated().to_numpy()]
    if len(again):
        items.loc[again, "status"] = "duplicate"
        items.loc[again, "reason"] = "same bytes as " + items.loc[again, "sha256"].map(first).astype(str)
    if check_near and len(val_t):
        thumbs_of = thumbs_of or (lambda i: items.at[i, "thumbs"])
        reference = [leak.decode(t) for t in val_t["thumbs"]]
        val_paths = val_t["path"].tolist()
        cand = items.index[items["status"] == "ok"]
        for c0 in range(0, len(cand), chunk):
            ids = cand[c0:c0 + chunk]
            stored = [thumbs_of(i) for i in ids]
            sims, which = leak.best_matches([leak.decode(t) if t else np.zeros((0, 1), np.uint8) for t in stored],
                                            reference)
            for idx, s, w in zip(ids, sims, which):
                if w < 0:
                    continue
                items.at[idx, "leak_similarity"] = float(s)
                if s >= threshold:
                    items.at[idx, "status"] = "leak"
                    items.at[idx, "reason"] = f"near-duplicate of val item (similarity {s:.3f})"
                    items.at[idx, "leak_of"] = val_paths[w]
    return items


def mark_cross_source_duplicates(web: pd.DataFrame, source_order: list[str]) -> pd.Series:
    """For the manifest: the item id of an earlier source's item with the same bytes, else ''.

    Each source is ingested on its own (so editing one list never redoes another), so copies
    *between* lists are found when the sources come together; the first source in the config
    keeps the item."""
    out = pd.Series("", index=web.index, dtype=object)
    ok = web[(web["ingest_status"] == "ok") & web["sha256"].notna() & (web["sha256"] != "")]
    if ok.empty:
        return out
    order = {s: i for i, s in enumerate(source_order)}
    ok = ok.assign(_o=ok["source"].map(order)).sort_values(["_o", "item_id"], kind="stable")
    items = ok.drop_duplicates("item_id")
    first = items.drop_duplicates("sha256").set_index("sha256")["item_id"]
    first_source = items.drop_duplicates("sha256").set_index("sha256")["source"]
    fs = web["sha256"].map(first_source)
    dup = web.index.isin(ok.index) & (fs != web["source"]) & fs.notna()
    out[dup] = web.loc[dup, "sha256"].map(first)
    return out
