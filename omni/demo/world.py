"""A deterministic synthetic "action" world that makes OmniSource's point at small scale.

Classes are (shape, motion) pairs: a disc, a square or a triangle that either slides
(horizontal motion) or bounces (vertical motion). Objects start anywhere, so a single frame
cannot tell "slide" from "bounce" (motion-only classes) while the shape separates the rest
(appearance-only classes). The target domain is small, smooth-background H.264 clips; the
web is a shifted domain (striped/checked backgrounds, other sizes, JPEG and MPEG-4
compression) with wrong-class and junk items, broken files, duplicates and near-duplicates
of validation clips. ``ground_truth.parquet`` records what every web item really is.

World-zoo knobs (each ``None`` keeps the original demo behaviour, bit for bit):
``num_classes`` (6-12: shapes from ``ALL_SHAPES`` x the two motions), ``noise_rate`` (share of web
items and untrimmed segments that do not show the query class), ``sibling_share`` (share of that
noise that is a confusable sibling class, sharing the shape or the motion, rather than junk),
``web_per_query`` (web images and web videos per query), ``domain_shift`` (0: web items look like
the target domain, 1: the full shift: patterned backgrounds, darker palette, wider size range) and
``train_per_class`` (target clips per class), ``confuser`` (all sibling noise of a query is one
fixed look-alike class, ``confuser()``, instead of spread over its siblings: the concentrated
noise of a real crawl, which does not average out the way noise spread over many classes does).
``ZOO`` names the benchmark's worlds.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SHAPES = ("disc", "square", "triangle")
ALL_SHAPES = SHAPES + ("ring", "cross", "diamond")
MOTIONS = ("slide", "bounce")
GENERATOR_VERSION = 6


@dataclass
class WorldSpec:
    seed: int = 0
    shapes: tuple[str, ...] = SHAPES
    train_per_class: int = 3
    val_per_class: int = 40
    images_per_class: int = 80
    videos_per_class: int = 30
    untrimmed_per_class: int = 4
    untrimmed_s: float = 12.0
    clip_s: float = 2.0
    fps: int = 10
    size: int = 64
    wrong_class_rate: float = 0.25
    junk_rate: float = 0.15
    val_leaks: int = 4
    # world-zoo knobs (None: the original behaviour)
    num_classes: int | None = None
    noise_rate: float | None = None
    sibling_share: float = 0.5
    web_per_query: int | None = None
    domain_shift: float | None = None
    confuser: bool = False  # zoo: a query's sibling noise is always its one confuser class


def tiny_spec(seed: int = 0) -> WorldSpec:
    """A world small enough for unit and end-to-end tests."""
    return WorldSpec(seed=seed, shapes=("disc", "square"), train_per_class=3, val_per_class=3,
                     images_per_class=6, videos_per_class=3, untrimmed_per_class=1, untrimmed_s=6.0,
                     size=48, val_leaks=2)


def class_names(spec: WorldSpec) -> list[str]:
    if spec.num_classes is None:
        return [f"{s}_{m}" for s in spec.shapes for m in MOTIONS]
    shapes = tuple(spec.shapes) + tuple(s for s in ALL_SHAPES if s not in spec.shapes)
    names = [f"{s}_{m}" for s in shapes for m in MOTIONS][: spec.num_classes]
    if len(names) < spec.num_classes or spec.num_classes < 2:
        raise ValueError(f"num_classes must be in 2..{len(shapes) * len(MOTIONS)}, got {spec.num_classes}")
    return names


def confuser(name: str, names: list[str]) -> str:
    """The one look-alike that floods ``name``'s search results in a world with ``confuser``: the
    class with the same motion and the next shape (cyclically), so the confusion runs one way
    around a cycle, as when a query's results are dominated by a more popular neighbour."""
    shape, motion = name.split("_")
    ring = [n for n in names if n.split("_")[1] == motion]
    if len(ring) > 1:
        return ring[(ring.index(name) + 1) % len(ring)]
    return siblings(name, names)[0]


def siblings(name: str, names: list[str]) -> list[str]:
    """The classes confusable with ``name``: same shape (other motion) or same motion (other shape)."""
    shape, motion = name.split("_")
    same_shape = [n for n in names if n != name and n.split("_")[0] == shape]
    same_motion = [n for n in names if n != name and n.split("_")[1] == motion]
    return same_shape + same_motion or [n for n in names if n != name]


# the benchmark's world zoo: kwargs for WorldSpec (seed and sizes added by ``zoo_spec``)
ZOO: dict[str, dict] = {
    "c6_t5_n20": dict(num_classes=6, train_per_class=5, noise_rate=0.2, sibling_share=0.5, domain_shift=0.5,
                      web_per_query=24),
    "c6_t3_n40": dict(num_classes=6, train_per_class=3, noise_rate=0.4, sibling_share=0.8, domain_shift=1.0,
                      web_per_query=24),
    "c8_t8_n60": dict(num_classes=8, train_per_class=8, noise_rate=0.6, sibling_share=0.3, domain_shift=0.5,
                      web_per_query=30),
    "c10_t5_n50": dict(num_classes=10, train_per_class=5, noise_rate=0.5, sibling_share=0.5, domain_shift=1.0,
                       web_per_query=24),
    "c12_t10_n30": dict(num_classes=12, train_per_class=10, noise_rate=0.3, sibling_share=0.7, domain_shift=0.3,
                        web_per_query=20),
    "c12_t4_n60": dict(num_classes=12, train_per_class=4, noise_rate=0.6, sibling_share=0.6, domain_shift=0.8,
                       web_per_query=20),
    # concentrated noise: 40 of every 100 results of a query show its one confuser class
    "c8_t5_n50_conf": dict(num_classes=8, train_per_class=5, noise_rate=0.5, sibling_share=0.8, domain_shift=0.5,
                           web_per_query=24, confuser=True),
}


def zoo_spec(name: str, seed: int = 0, val_per_class: int = 20, untrimmed_per_class: int = 2) -> WorldSpec:
    """A world of the zoo at benchmark size (val set of ``val_per_class`` clips per class)."""
    if name not in ZOO:
        raise KeyError(f"unknown zoo world {name!r}; known: {sorted(ZOO)}")
    return WorldSpec(seed=seed, val_per_class=val_per_class, untrimmed_per_class=untrimmed_per_class,
                     untrimmed_s=10.0, size=48, val_leaks=4, **ZOO[name])


# ---------------------------------------------------------------- drawing

def _background(rng: np.random.Generator, h: int, w: int, web: bool, shift: float | None = None) -> np.ndarray:
    """A unique cluttered scene: a base pattern plus soft random blobs (like real backgrounds,
    no two items share one). ``shift`` (web only): the probability of the web pattern and the
    strength of its darker palette; None is the full shift."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    if web and shift is not None and rng.random() >= shift:
        web = False  # a web item that looks like the target domain
    if not web:  # target domain: smooth two-colour gradient at a random angle
        ang = rng.uniform(0, 2 * np.pi)
        t = ((np.cos(ang) * xx + np.sin(ang) * yy) / max(h, w) + 1) / 2
        bg = c1 * t[..., None] + c2 * (1 - t[..., None])
    else:  # web domain: stripes or checks at a random period, darker palette
        period = rng.uniform(5, 14)
        if rng.random() < 0.5:
            ang = rng.uniform(0, np.pi)
            m = (np.sin((np.cos(ang) * xx + np.sin(ang) * yy) / period * 2 * np.pi) > 0)
        else:
            m = ((xx // period + yy // period) % 2) > 0
        dark = 0.8 if shift is None else 1 - 0.2 * shift
        bg = np.where(m[..., None], c1 * dark, c2 * dark)
    for _ in range(int(rng.integers(4, 8))):  # clutter: soft blobs in muted colours
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        sx, sy = rng.uniform(0.05, 0.25) * w, rng.uniform(0.05, 0.25) * h
        a = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))[..., None] * rng.uniform(0.6, 1.0)
        bg = bg * (1 - a) + rng.uniform(30, 200, 3) * a
    for _ in range(int(rng.integers(2, 5))):  # and hard-edged furniture
        x0, y0 = rng.uniform(-0.2, 0.9) * w, rng.uniform(-0.2, 0.9) * h
        x1, y1 = x0 + rng.uniform(0.1, 0.5) * w, y0 + rng.uniform(0.1, 0.5) * h
        box = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
        bg[box] = rng.uniform(20, 180, 3)
    return bg + rng.normal(0, 6, (h, w, 3))


_COLOURS = {"disc": (230, 40, 40), "square": (40, 80, 235), "triangle": (245, 215, 30),
            "ring": (40, 200, 70), "cross": (235, 235, 235), "diamond": (200, 60, 220)}


def _draw(frame: np.ndarray, shape: str, cx: float, cy: float, r: float) -> None:
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if shape == "disc":
        m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif shape == "square":
        m = (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    elif shape == "ring":
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        m = (d2 <= r * r) & (d2 >= (r * 0.55) ** 2)
    elif shape == "cross":
        m = (((np.abs(xx - cx) <= r * 0.3) & (np.abs(yy - cy) <= r))
             | ((np.abs(yy - cy) <= r * 0.3) & (np.abs(xx - cx) <= r)))
    elif shape == "diamond":
        m = np.abs(xx - cx) + np.abs(yy - cy) <= r
    else:  # upward triangle
        m = (yy <= cy + r * 0.8) & (yy >= cy - r) & (np.abs(xx - cx) <= (yy - (cy - r)) * 0.6)
    frame[m] = _COLOURS[shape]


def _trajectory(rng, n: int, h: int, w: int, r: float, motion: str | None, speed: float):
    """Positions bouncing off the walls along one axis; the other axis is fixed."""
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    v = speed * rng.choice([-1, 1])
    out = []
    for _ in range(n):
        out.append((cx, cy))
        if motion == "slide":
            cx += v
            if not r <= cx <= w - r:
                v, cx = -v, float(np.clip(cx, r, w - r))
        elif motion == "bounce":
            cy += v
            if not r <= cy <= h - r:
                v, cy = -v, float(np.clip(cy, r, h - r))
    return out


def render_clip(rng, shape: str | None, motion: str | None, n: int, h: int, w: int, web: bool,
                shift: float | None = None) -> np.ndarray:
    """uint8[n, h, w, 3]; ``shape=None`` renders junk (distractor blobs, no class object).
    ``shift`` scales the web domain's difference from the target (None: full, see _background)."""
    bg = _background(rng, h, w, web, shift)
    if not web:
        r = min(h, w) * rng.uniform(0.13, 0.2)
    elif shift is None:
        r = min(h, w) * rng.uniform(0.1, 0.26)
    else:  # object size range widens from the target's (0.13-0.2) to the web's (0.1-0.26)
        r = min(h, w) * rng.uniform(0.13 - 0.03 * shift, 0.2 + 0.06 * shift)
    speed = min(h, w) * rng.uniform(0.05, 0.09)
    frames = np.repeat(bg[None], n, axis=0)
    if shape is None:
        for _ in range(rng.integers(1, 4)):  # grey blobs drifting randomly
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            g = rng.uniform(60, 200)
            for i in range(n):
                yy, xx = np.mgrid[0:h, 0:w]
                m = (xx - cx - i * rng.uniform(-1, 1)) ** 2 + (yy - cy) ** 2 <= (r * 0.8) ** 2
                frames[i][m] = g
        return np.clip(frames, 0, 255).astype(np.uint8)
    for i, (cx, cy) in enumerate(_trajectory(rng, n, h, w, r, motion, speed)):
        _draw(frames[i], shape, cx, cy, r)
    return np.clip(frames, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- encoding

def write_video(path: Path, frames: np.ndarray, fps: int, codec: str = "libx264", crf: int = 23) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    frames = frames[:, : h - h % 2, : w - w % 2]
    with av.open(str(path), "w", container_options={"fflags": "+bitexact"}) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.codec_context.thread_count = 1  # multi-threaded encoding is not bit-reproducible
        if codec == "libx264":
            s.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        else:
            s.bit_rate = 400_000
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def write_jpeg(path: Path, frame: np.ndarray, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path, "JPEG", quality=quality)


def _resize_frames(frames: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


# ---------------------------------------------------------------- the world

def generate_world(root: str | Path, spec: WorldSpec | None = None) -> Path:
    """Write the world under ``root``; a finished world with the same spec is kept as is."""
    spec = spec or WorldSpec()
    root = Path(root)
    marker = root / "world.json"
    # knobs at their off value are left out, so that worlds generated before a knob existed stay valid
    fields = {k: v for k, v in asdict(spec).items() if not (k == "confuser" and not v)}
    want = {"generator_version": GENERATOR_VERSION, **fields}
    if marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(want)):
        return root
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(spec.seed)
    names = class_names(spec)
    (root / "target").mkdir(parents=True)
    (root / "web").mkdir()
    (root / "crawl").mkdir()
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    n_clip = int(spec.clip_s * spec.fps)
    S = spec.size

    # target train / val
    val_clips = []
    for split, per in (("train", spec.train_per_class), ("val", spec.val_per_class)):
        rows = []
        for ci, name in enumerate(names):
            shape, motion = name.split("_")
            for k in range(per):
                n = n_clip + int(rng.integers(-2, 3))
                clip = render_clip(rng, shape, motion, n, S, int(S * 1.25), web=False)
                rel = f"target/{split}/{name}_{k:03d}.mp4"
                write_video(root / rel, clip, spec.fps)
                rows.append({"path": rel.split("/", 1)[1], "label": name})
                if split == "val":
                    val_clips.append((rel, name, clip))
        pd.DataFrame(rows).to_csv(root / "target" / f"{split}.csv", index=False)

    truth = []

    shift = spec.domain_shift
    n_img = spec.images_per_class if spec.web_per_query is None else spec.web_per_query
    n_vid = spec.videos_per_class if spec.web_per_query is None else spec.web_per_query

    def noisy_label(name):
        """What the item really shows: the query's class, another class, or junk."""
        u = rng.random()
        if spec.noise_rate is not None:  # zoo: noise = confusable siblings + junk
            if u < spec.noise_rate * (1 - spec.sibling_share):
                return None
            if u < spec.noise_rate:
                if spec.confuser:
                    return confuser(name, names)
                sib = siblings(name, names)
                return sib[int(rng.integers(len(sib)))]
            return name
        if u < spec.junk_rate:
            return None
        if u < spec.junk_rate + spec.wrong_class_rate:
            return names[rng.choice([i for i in range(len(names)) if names[i] != name])]
        return name

    # web images
    img_rows = []
    for name in names:
        for k in range(n_img):
            true = noisy_label(name)
            h = int(rng.choice([S, int(S * 1.5), S * 2]))
            w = int(h * rng.choice([1.0, 1.33, 0.75]))
            shape, motion = true.split("_") if true else (None, None)
            frame = render_clip(rng, shape, motion, 1, h, w, web=True, shift=shift)[0]
            rel = f"web/images/{name}_{k:03d}.jpg"
            write_jpeg(root / rel, frame, quality=int(rng.integers(40, 90)))
            img_rows.append({"url": rel, "query": name})
            truth.append({"url": rel, "true_class": true or "junk", "planted": ""})

    # web videos
    vid_rows = []
    for name in names:
        for k in range(n_vid):
            true = noisy_label(name)
            h = int(rng.choice([S, int(S * 1.5)]))
            w = int(h * rng.choice([1.33, 1.78]))
            fps = int(rng.choice([8, 12, 15]))
            n = int(rng.uniform(1.5, 3.0) * fps)
            shape, motion = true.split("_") if true else (None, None)
            clip = render_clip(rng, shape, motion, n, h, w, web=True, shift=shift)
            if rng.random() < 0.3:
                rel, codec = f"web/videos/{name}_{k:03d}.avi", "mpeg4"
            else:
                rel, codec = f"web/videos/{name}_{k:03d}.mp4", "libx264"
            write_video(root / rel, clip, fps, codec=codec, crf=int(rng.integers(23, 33)))
            vid_rows.append({"url": rel, "query": name})
            truth.append({"url": rel, "true_class": true or "junk", "planted": ""})

    # long untrimmed videos: action segments of the query class between idle/other segments
    un_rows = []
    for name in names:
        shape, motion = name.split("_")
        for k in range(spec.untrimmed_per_class):
            h, w = S, int(S * 1.33)
            t, parts, segments = 0.0, [], []
            while t < spec.untrimmed_s - 0.5:
                seg_s = min(float(rng.uniform(1.5, 3.5)), spec.untrimmed_s - t)
                n = max(1, int(round(seg_s * spec.fps)))
                u = rng.random()
                if spec.noise_rate is not None:  # zoo: the same noise mix as the web items
                    if u >= spec.noise_rate:
                        cls = name
                    elif u >= spec.noise_rate * (1 - spec.sibling_share):
                        sib = [confuser(name, names)] if spec.confuser else siblings(name, names)
                        cls = sib[int(rng.integers(len(sib)))]
                    else:
                        cls = None
                elif u < 0.5:
                    cls = name
                elif u < 0.7:
                    cls = names[rng.integers(len(names))]
                else:
                    cls = None
                sh, mo = cls.split("_") if cls else (None, None)
                parts.append(render_clip(rng, sh, mo, n, h, w, web=True, shift=shift))
                segments.append({"start_s": t, "end_s": t + n / spec.fps, "class": cls or "junk"})
                t += n / spec.fps
            rel = f"web/untrimmed/{name}_{k:03d}.mp4"
            write_video(root / rel, np.concatenate(parts), spec.fps)
            un_rows.append({"url": rel, "query": name})
            truth.append({"url": rel, "true_class": name, "planted": "", "segments": json.dumps(segments)})

    # planted problems
    bad_img = [
        ("web/images/bad_zero_bytes.jpg", b"", "zero-byte"),
        ("web/images/bad_html.jpg", b"<!DOCTYPE html><html><body>Not found</body></html>", "html"),
    ]
    for rel, data, kind in bad_img:
        (root / rel).write_bytes(data)
        img_rows.append({"url": rel, "query": names[0]})
        truth.append({"url": rel, "true_class": "junk", "planted": kind})
    img_rows.append({"url": "web/images/missing_404.jpg", "query": names[1]})
    truth.append({"url": "web/images/missing_404.jpg", "true_class": "junk", "planted": "404"})
    # exact duplicates: the same bytes listed again (once under another query)
    for i, row in enumerate(img_rows[:2]):
        img_rows.append({"url": row["url"], "query": names[(i + 1) % len(names)]})
    dup_src = vid_rows[0]["url"]
    dup_rel = "web/videos/copy_of_" + Path(dup_src).name
    shutil.copyfile(root / dup_src, root / dup_rel)
    vid_rows.append({"url": dup_rel, "query": vid_rows[0]["query"]})
    truth.append({"url": dup_rel, "true_class": next(t["true_class"] for t in truth if t["url"] == dup_src),
                  "planted": "duplicate"})
    # a truncated video and an HTML page behind .mp4
    src = root / vid_rows[1]["url"]
    trunc = root / "web/videos/bad_truncated.mp4"
    trunc.write_bytes(src.read_bytes()[: max(64, src.stat().st_size * 2 // 5)])
    (root / "web/videos/bad_html.mp4").write_bytes(b"<html><head><title>404</title></head></html>")
    for rel, kind in (("web/videos/bad_truncated.mp4", "truncated"), ("web/videos/bad_html.mp4", "html")):
        vid_rows.append({"url": rel, "query": names[0]})
        truth.append({"url": rel, "true_class": "junk", "planted": kind})
    # near-duplicates of val items: re-encoded, resized and slightly cropped copies
    for j, idx in enumerate(rng.choice(len(val_clips), size=min(spec.val_leaks, len(val_clips)), replace=False)):
        rel_val, name, clip = val_clips[int(idx)]
        n, h, w = clip.shape[:3]
        dy, dx = max(1, h // 20), max(1, w // 20)
        crop = clip[:, dy: h - dy, dx: w - dx]
        scale = 1.5 if j % 2 == 0 else 0.8
        crop = _resize_frames(crop, int(crop.shape[2] * scale) // 2 * 2, int(crop.shape[1] * scale) // 2 * 2)
        if j % 2 == 0:
            rel = f"web/videos/leak_{j}.mp4"
            write_video(root / rel, crop, spec.fps, crf=30)
            vid_rows.append({"url": rel, "query": name})
        else:
            rel = f"web/images/leak_{j}.jpg"
            write_jpeg(root / rel, crop[n // 2], quality=70)
            img_rows.append({"url": rel, "query": name})
        truth.append({"url": rel, "true_class": name, "planted": "leak", "leak_of": rel_val})

    for rows in (img_rows, vid_rows, un_rows):  # lists live in crawl/: paths relative to it
        for r in rows:
            r["url"] = "../" + r["url"]
    pd.DataFrame(img_rows).to_csv(root / "crawl" / "web_images.csv", index=False)
    pd.DataFrame(vid_rows).to_json(root / "crawl" / "web_videos.jsonl", orient="records", lines=True)
    pd.DataFrame(un_rows).to_parquet(root / "crawl" / "untrimmed.parquet", index=False)
    pd.DataFrame(truth).to_parquet(root / "ground_truth.parquet", index=False)
    marker.write_text(json.dumps(want))
    return root


def served_lists(world: Path, base_url: str, out: Path) -> dict[str, Path]:
    """Copies of the crawl lists with URLs under ``base_url`` (the demo's local HTTP server)."""
    out.mkdir(parents=True, exist_ok=True)
    res = {}
    for name, reader, writer in (
        ("web_images.csv", pd.read_csv, lambda d, p: d.to_csv(p, index=False)),
        ("web_videos.jsonl", lambda p: pd.read_json(p, lines=True),
         lambda d, p: d.to_json(p, orient="records", lines=True)),
        ("untrimmed.parquet", pd.read_parquet, lambda d, p: d.to_parquet(p, index=False)),
    ):
        df = reader(world / "crawl" / name)
        df["url"] = [f"{base_url.rstrip('/')}/{u.removeprefix('../')}" for u in df["url"]]
        writer(df, out / name)
        res[name] = out / name
    return res


def demo_config(world: Path, workdir: Path, crawl_dir: Path, tiny: bool = False) -> dict:
    """The pipeline config for the demo world (plain data, written as YAML by the CLI)."""
    cfg = {
        "workdir": str(workdir),
        "classes": str(world / "classes.txt"),
        "target": {"train": str(world / "target/train.csv"), "val": str(world / "target/val.csv")},
        "sources": [
            {"name": "web_images", "kind": "image", "list": str(crawl_dir / "web_images.csv")},
            {"name": "web_videos", "kind": "video", "list": str(crawl_dir / "web_videos.jsonl")},
            {"name": "untrimmed", "kind": "untrimmed", "list": str(crawl_dir / "untrimmed.parquet")},
        ],
        # the local lists point at ../web/...: allow the whole world folder
        "ingest": {"allow_private_addresses": True, "workers": 8, "tries": 2, "backoff_s": 0.1,
                   "local_roots": [str(world)]},
        "extract": {},
        # no training recipe: the demo trains with omni's defaults, as a user's run would
        "evaluate": {"num_clips": 2},
    }
    if tiny:  # tests: a few steps of small models
        small = {"steps": 6, "width": 8, "input_size": 32, "batch_size": 8}
        cfg["teacher"] = {"image": {"arch": "tsn_resnet10t", "num_frames": 3, **small}, "video": dict(small)}
        cfg["train"] = {"model": dict(small)}
        cfg["extract"] = {"short_side": 36}
    return cfg


def ground_truth_report(world: Path, web_items: pd.DataFrame) -> dict:
    """Filtering precision and recall per source, and planted-leak recall, against the generator's ground truth."""
    truth = pd.read_parquet(world / "ground_truth.parquet")
    truth["key"] = truth["url"]
    items = web_items.copy()
    items["key"] = [_relative_url(u) for u in items["url"]]
    items["true_class"] = true_classes(world, web_items, truth)
    report: dict = {"sources": {}}
    for src, g in items.groupby("source", sort=False):
        correct = g["true_class"] == g["query"]
        kept = g["status"] == "kept"
        usable = g["status"].isin(["kept", "filtered"])
        trains_as = g["train_label"].fillna(g["query"]) if "train_label" in g.columns else g["query"]
        right = g["true_class"] == trains_as  # a kept sample's training label is what it shows
        moved = kept & (trains_as != g["query"])  # relabeled by the second round
        report["sources"][src] = {
            "kept": int(kept.sum()),
            "relabeled": int(moved.sum()),
            "relabel_precision": float(right[moved].mean()) if moved.any() else None,
            "precision_kept": float(right[kept].mean()) if kept.any() else None,
            "precision_unfiltered": float(correct[usable].mean()) if usable.any() else None,
            # share of the usable items that truly show their query class which the filter kept (as that class)
            "recall_kept": float((kept & right)[correct & usable].mean()) if (correct & usable).any() else None,
        }
    planted = truth[truth["planted"] == "leak"]["key"].tolist()
    status = dict(zip(items["key"], items["status"]))
    clean = truth[truth["planted"] == ""]["key"]
    report["leaks_planted"] = len(planted)
    report["leaks_found"] = sum(status.get(k) == "leak" for k in planted)
    report["false_leaks"] = int(sum(status.get(k) == "leak" for k in clean))
    return report


def true_classes(world: Path, web_items: pd.DataFrame, truth: pd.DataFrame | None = None) -> list[str]:
    """What each web sample (a row of ``web_items``: ``url``, ``start_s``, ``end_s``) truly shows:
    a class name, or ``junk``; an untrimmed window shows the class covering most of it."""
    if truth is None:
        truth = pd.read_parquet(world / "ground_truth.parquet")
    t = truth.drop_duplicates("url").set_index("url")
    out = []
    none = pd.Series(np.nan, index=web_items.index)
    for url, start, end in zip(web_items["url"], web_items.get("start_s", none), web_items.get("end_s", none)):
        key = _relative_url(url)
        info = t.loc[key] if key in t.index else None
        if info is None:
            out.append("junk")
        elif isinstance(info.get("segments"), str) and info["segments"] and not pd.isna(start):
            out.append(_window_class(json.loads(info["segments"]), start, end))
        else:
            out.append(info["true_class"])
    return out


def _relative_url(url: str) -> str:
    marker = "/web/"
    i = url.rfind(marker)
    return url[i + 1:] if i >= 0 else url


def _window_class(segments: list[dict], start: float, end: float) -> str:
    """The class covering most of a window, or junk."""
    best, cover = "junk", 0.0
    for s in segments:
        ov = min(end, s["end_s"]) - max(start, s["start_s"])
        if ov > cover:
            best, cover = s["class"], ov
    return best if cover >= 0.5 * (end - start) else "junk"
