"""Pictures of a run a user would rather look at than read: training curves, confusion matrices.

Drawn with Pillow (no plotting library needed); each function writes one PNG and returns its path.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BG = (255, 255, 255)
AXIS = (60, 60, 60)
GRID = (225, 225, 225)
LOSS = (31, 119, 180)
LR = (255, 127, 14)


def _save(im: Image.Image, out: Path) -> Path:
    from ..runtime.atomic import write_atomic

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(out, lambda tmp: im.save(tmp, format="PNG"))


def training_curve_png(curve: list[dict], title: str, out: Path, size: tuple[int, int] = (640, 360)) -> Path | None:
    """Training loss (left axis) and learning rate (right axis) against the step."""
    pts = [(c["step"], c["loss"], c.get("lr")) for c in curve if c.get("loss") is not None]
    if not pts:
        return None
    w, h = size
    left, right, top, bottom = 56, 64, 34, 40
    im = Image.new("RGB", size, BG)
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    steps = [p[0] for p in pts]
    losses = [p[1] for p in pts]
    lrs = [p[2] for p in pts if p[2] is not None]
    x_max = max(steps)
    y_max = max(losses) * 1.1 or 1.0
    lr_max = (max(lrs) * 1.1 or 1.0) if lrs else 1.0

    def x(s):
        return left + (w - left - right) * s / max(1, x_max)

    def y(v, vmax):
        return top + (h - top - bottom) * (1 - v / vmax)

    for i in range(5):
        gy = top + (h - top - bottom) * i / 4
        d.line([(left, gy), (w - right, gy)], fill=GRID)
        d.text((4, gy - 6), f"{y_max * (1 - i / 4):.2f}", fill=LOSS, font=font)
        if lrs:
            d.text((w - right + 6, gy - 6), f"{lr_max * (1 - i / 4):.1e}", fill=LR, font=font)
    d.rectangle([left, top, w - right, h - bottom], outline=AXIS)
    for i in range(5):
        s = x_max * i / 4
        d.text((x(s) - 10, h - bottom + 6), f"{s:.0f}", fill=AXIS, font=font)
    d.text(((w - 30) / 2, h - 18), "step", fill=AXIS, font=font)
    d.text((left, 8), title, fill=AXIS, font=font)
    d.text((w - right - 150, 8), "loss", fill=LOSS, font=font)
    d.text((w - right - 100, 8), "learning rate", fill=LR, font=font)
    # the curve starts at step 0 with the first logged loss (nothing is known before it)
    loss_pts = [(x(s), y(v, y_max)) for s, v, _ in pts]
    if len(loss_pts) == 1:
        loss_pts = [(x(0), loss_pts[0][1])] + loss_pts
    d.line(loss_pts, fill=LOSS, width=2)
    for px, py in loss_pts:
        d.ellipse([px - 2, py - 2, px + 2, py + 2], fill=LOSS)
    lr_pts = [(x(s), y(v, lr_max)) for s, _, v in pts if v is not None]
    if len(lr_pts) > 1:
        d.line(lr_pts, fill=LR, width=1)
    return _save(im, out)


def bar_chart_png(labels: list[str], values: list[float], spreads: list[float], title: str, out: Path,
                  row_h: int = 26, width: int = 720) -> Path:
    """Horizontal bars (0-100) with a +-spread whisker each: one row per label."""
    left, right, top, bottom = 170, 60, 34, 30
    h = top + bottom + row_h * len(labels)
    im = Image.new("RGB", (width, h), BG)
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    span = width - left - right

    def x(v):
        return left + span * max(0.0, min(100.0, v)) / 100

    for i in range(6):
        gx = left + span * i / 5
        d.line([(gx, top), (gx, h - bottom)], fill=GRID)
        d.text((gx - 8, h - bottom + 6), f"{20 * i}", fill=AXIS, font=font)
    d.text((left, 8), title, fill=AXIS, font=font)
    for i, (name, v, sd) in enumerate(zip(labels, values, spreads)):
        y0 = top + i * row_h + 5
        y1 = y0 + row_h - 10
        d.text((6, y0 + 2), name[:26], fill=AXIS, font=font)
        d.rectangle([left, y0, x(v), y1], fill=LOSS)
        if sd:
            cy = (y0 + y1) / 2
            d.line([(x(v - sd), cy), (x(v + sd), cy)], fill=AXIS, width=2)
        d.text((x(v) + 6, y0 + 2), f"{v:.1f}", fill=AXIS, font=font)
    d.rectangle([left, top, width - right, h - bottom], outline=AXIS)
    return _save(im, out)


def confusion_png(confusion: list[list[int]], class_names: list[str], title: str, out: Path,
                  cell: int = 0) -> Path | None:
    """Rows: true class, columns: predicted class; each row shaded by its share, counts written in."""
    n = len(confusion)
    if n == 0:
        return None
    cell = cell or max(14, min(48, 720 // n))
    font = ImageFont.load_default()
    label_w = min(160, 8 + 7 * max(len(c) for c in class_names))
    top = 40
    w = label_w + n * cell + 12
    h = top + n * cell + label_w + 10
    im = Image.new("RGB", (w, h), BG)
    d = ImageDraw.Draw(im)
    d.text((4, 4), title, fill=AXIS, font=font)
    d.text((4, 20), "rows: true class, columns: predicted", fill=AXIS, font=font)
    for i, row in enumerate(confusion):
        total = sum(row) or 1
        d.text((4, top + i * cell + cell // 2 - 6), class_names[i][:22], fill=AXIS, font=font)
        for j, v in enumerate(row):
            share = v / total
            shade = int(255 * (1 - share))
            colour = (shade, shade, 255) if i == j else (255, shade, shade)
            x0, y0 = label_w + j * cell, top + i * cell
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=GRID)
            if v and cell >= 20:
                d.text((x0 + 3, y0 + cell // 2 - 6), str(v), fill=(0, 0, 0) if share < 0.6 else (255, 255, 255),
                       font=font)
    # predicted-class names, written downwards under their column
    for j, name in enumerate(class_names):
        lab = Image.new("RGB", (label_w, 12), BG)
        ImageDraw.Draw(lab).text((0, 0), name[:22], fill=AXIS, font=font)
        lab = lab.rotate(90, expand=True)
        im.paste(lab, (label_w + j * cell + max(0, cell // 2 - 6), top + n * cell + 4))
    return _save(im, out)


def data_url(png: Path, max_width: int = 1400, quality: int = 85) -> str:
    """A picture as an inline ``data:`` URL (JPEG, at most ``max_width`` wide) for places that show
    images only by URL, such as the Prefect UI's artifacts."""
    import base64
    import io

    with Image.open(png) as im:
        im = im.convert("RGB")
        if im.width > max_width:
            im = im.resize((max_width, round(im.height * max_width / im.width)), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
