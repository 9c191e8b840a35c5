"""Contact sheets: what the filter kept and rejected, per class, at a glance.

One PNG per source: a row per query class, kept samples on the left (green border), rejected
ones on the right (red border), each a middle frame labelled with the teacher's probability of
the query class (kept: most confident first; rejected: least), so a user sees straight away
whether kept samples show the class and rejected ones do not.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from ..video.framestore import FrameStore

TILE = 72
PAD = 4
LABEL_W = 110


def _tile(frames: np.ndarray, border: tuple[int, int, int], text: str, font) -> Image.Image:
    mid = frames[len(frames) // 2]
    im = Image.fromarray(mid).convert("RGB")
    im.thumbnail((TILE - 6, TILE - 18))
    tile = Image.new("RGB", (TILE, TILE), border)
    tile.paste(Image.new("RGB", (TILE - 4, TILE - 4), (20, 20, 20)), (2, 2))
    tile.paste(im, ((TILE - im.width) // 2, 3))
    ImageDraw.Draw(tile).text((4, TILE - 15), text, fill=(255, 255, 255), font=font)
    return tile


def contact_sheet(rows: pd.DataFrame, root: Path, class_names: list[str], out: Path, per_side: int = 6) -> Path | None:
    """``rows``: one source's scored samples with ``label``, ``teacher_score``, ``filter_status``
    and frame-store references; writes ``out`` (PNG) and returns it (None when there is nothing)."""
    if rows.empty:
        return None
    store = FrameStore(root)
    font = ImageFont.load_default()
    classes = sorted(int(c) for c in rows["label"].unique() if c >= 0)
    width = LABEL_W + 2 * per_side * (TILE + PAD) + 3 * PAD
    height = len(classes) * (TILE + PAD) + 24 + PAD
    sheet = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    draw.text((LABEL_W, 4), "kept (teacher agrees)", fill=(0, 110, 0), font=font)
    draw.text((LABEL_W + per_side * (TILE + PAD) + 2 * PAD, 4), "rejected", fill=(170, 0, 0), font=font)
    for r, c in enumerate(classes):
        y = 24 + r * (TILE + PAD)
        g = rows[rows["label"] == c]
        kept = g[g["filter_status"] == "kept"].sort_values("teacher_score", ascending=False).head(per_side)
        rejected = g[g["filter_status"] != "kept"].sort_values("teacher_score").head(per_side)
        draw.text((4, y + TILE // 2 - 12), f"{class_names[c][:16]}\n{len(g[g['filter_status'] == 'kept'])}"
                  f"/{len(g)} kept", fill=(0, 0, 0), font=font)
        for side, part, colour in ((0, kept, (40, 160, 40)), (1, rejected, (200, 40, 40))):
            x0 = LABEL_W + side * (per_side * (TILE + PAD) + 2 * PAD)
            for i, s in enumerate(part.to_dict("records")):
                frames = store.read(s["shard"], s["offset"], s["t"], s["h"], s["w"])
                sheet.paste(_tile(frames, colour, f"p={s['teacher_score']:.2f}", font), (x0 + i * (TILE + PAD), y))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def filter_summary(rows: pd.DataFrame, class_names: list[str]) -> dict:
    """Per source and query class: scored and kept counts."""
    out: dict = {}
    for (src, label), g in rows.groupby(["source", "label"]):
        name = class_names[int(label)] if label >= 0 else "?"
        out.setdefault(src, {})[name] = {"scored": int(len(g)), "kept": int((g["filter_status"] == "kept").sum())}
    return out
