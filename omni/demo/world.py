"""A deterministic synthetic "action" world that makes OmniSource's point at small scale.

Classes are ``<appearance>_<motion>`` pairs drawn by one of four generator FAMILIES
(``WorldSpec.family``):

* ``shapes`` (``family=None``, the original demo world, bit for bit): a disc, a square or a
  triangle (more from ``ALL_SHAPES`` with ``num_classes``), each in its own colour, that either
  slides (horizontal motion) or bounces (vertical motion). Both motions survive left-right
  mirroring and time reversal.
* ``directions``: a shape (disc, square, triangle, ring) in a random colour per instance that
  moves one way (``left``, ``right``, ``up``, ``down``) or back and forth (``oscillate``, a
  periodic motion along a random axis): ``disc_left``, ``disc_right``, ``square_up``, ... A class
  and its mirror image (left/right) or its time reversal (left/right, up/down) are different
  classes.
* ``transforms``: a non-symmetric object (``arrow``, ``ell`` (an L), ``flag``, ``key`` (a bar with
  a dot at one end)) whose colour is a hue band (a spread of colours per instance) and which
  rotates clockwise or anticlockwise (``cw``, ``ccw``), grows or shrinks in place (``grow``,
  ``shrink``), or approaches or recedes (``approach``, ``recede``: size, height in the frame,
  brightness and blur change together, as with perspective and depth of field).
* ``scenes``: the motions of both (``left``, ``right``, ``up``, ``down``, ``oscillate``, ``cw``,
  ``ccw``, ``grow``, ``shrink``, ``approach``) of a ``disc``, ``arrow``, ``square`` or ``ell`` on
  textured backgrounds (noise textures, stripes) with clutter, grey distractor objects that move
  randomly, camera pan and camera shake (the whole frame translates), and a variable clip length
  (1.5-4 s) and frame rate (6-15 fps) in the target clips too.

In every family objects start anywhere (and have a random size), so a single frame cannot tell a
motion from its mirror image or time reversal, and every class shares its appearance with another
class that only the motion separates. ``class_names`` lists an appearance's classes together
(each appearance gets at least two, the first two a mirror or time-reversal pair), so
``siblings()`` (same appearance or same motion) and ``confuser()`` mean the same in every family.

The target domain is small, smooth-background H.264 clips (textured for ``scenes``); the web is a
shifted domain (striped/checked backgrounds, other sizes, JPEG and MPEG-4 compression) with
wrong-class and junk items, broken files, duplicates and near-duplicates of validation clips.
``ground_truth.parquet`` records what every web item really is; only the rendering of a class
(and, for ``scenes``, the clips' length and frame rate) depends on the family.

World-zoo knobs (each ``None`` keeps the original demo behaviour, bit for bit):
``family`` (above), ``num_classes`` (6-12: for ``shapes``, shapes from ``ALL_SHAPES`` x the two
motions; for the other families, ``ceil(num_classes / 4)`` appearances with their motions),
``noise_rate`` (share of web items and untrimmed segments that do not show the query class),
``sibling_share`` (share of that noise that is a confusable sibling class, sharing the appearance
or the motion, rather than junk), ``web_per_query`` (web images and web videos per query),
``domain_shift`` (0: web items look like the target domain, 1: the full shift: patterned
backgrounds, darker palette, wider size (and hue) range) and ``train_per_class`` (target clips per
class), ``confuser`` (all sibling noise of a query is one fixed look-alike class, ``confuser()``,
instead of spread over its siblings: the concentrated noise of a real crawl, which does not average
out the way noise spread over many classes does).
``ZOO`` names the benchmark's worlds, ``FAMILIES`` groups them by family (``family_of``), and
``HELD_OUT_FAMILIES`` are the families kept for final tables only, never for tuning.
"""
from __future__ import annotations

import colorsys
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

SHAPES = ("disc", "square", "triangle")
ALL_SHAPES = SHAPES + ("ring", "cross", "diamond")
MOTIONS = ("slide", "bounce")
GENERATOR_VERSION = 6

# the families other than "shapes": appearance -> its motions, in the order classes are taken
# (the first two of each appearance are a mirror-image or time-reversal pair)
FAMILY_CLASSES: dict[str, dict[str, tuple[str, ...]]] = {
    "directions": {"disc": ("left", "right", "up", "oscillate"), "square": ("up", "down", "left", "oscillate"),
                   "triangle": ("right", "left", "down", "up"), "ring": ("down", "up", "right", "oscillate")},
    "transforms": {"arrow": ("cw", "ccw", "grow", "approach"), "ell": ("grow", "shrink", "cw", "recede"),
                   "flag": ("approach", "recede", "ccw", "shrink"), "key": ("ccw", "cw", "shrink", "grow")},
    "scenes": {"disc": ("left", "right", "grow", "oscillate"), "arrow": ("cw", "ccw", "left", "shrink"),
               "square": ("up", "down", "approach", "right"), "ell": ("grow", "shrink", "cw", "down")},
}
FAMILY_NAMES = ("shapes",) + tuple(FAMILY_CLASSES)
DEFAULT_FAMILY_CLASSES = 8  # num_classes=None in a family other than shapes


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
    family: str | None = None  # None: "shapes", the original generator (see FAMILY_NAMES)


def tiny_spec(seed: int = 0) -> WorldSpec:
    """A world small enough for unit and end-to-end tests."""
    return WorldSpec(seed=seed, shapes=("disc", "square"), train_per_class=3, val_per_class=3,
                     images_per_class=6, videos_per_class=3, untrimmed_per_class=1, untrimmed_s=6.0,
                     size=48, val_leaks=2)


def world_family(spec: WorldSpec) -> str:
    """The spec's family name ("shapes" for ``family=None``)."""
    fam = spec.family or "shapes"
    if fam not in FAMILY_NAMES:
        raise ValueError(f"unknown world family {spec.family!r}; known: {FAMILY_NAMES}")
    return fam


def class_names(spec: WorldSpec) -> list[str]:
    fam = world_family(spec)
    if fam != "shapes":
        return _family_class_names(fam, spec.num_classes)
    if spec.num_classes is None:
        return [f"{s}_{m}" for s in spec.shapes for m in MOTIONS]
    shapes = tuple(spec.shapes) + tuple(s for s in ALL_SHAPES if s not in spec.shapes)
    names = [f"{s}_{m}" for s in shapes for m in MOTIONS][: spec.num_classes]
    if len(names) < spec.num_classes or spec.num_classes < 2:
        raise ValueError(f"num_classes must be in 2..{len(shapes) * len(MOTIONS)}, got {spec.num_classes}")
    return names


def _family_class_names(family: str, num_classes: int | None) -> list[str]:
    """``ceil(k / 4)`` appearances, the classes spread evenly over them (at least two each, the
    first two of an appearance a mirror or time-reversal pair), appearance by appearance."""
    table = FAMILY_CLASSES[family]
    k = DEFAULT_FAMILY_CLASSES if num_classes is None else num_classes
    per = min(len(m) for m in table.values())
    most = len(table) * per
    if not 2 <= k <= most:
        raise ValueError(f"num_classes must be in 2..{most} for family {family!r}, got {num_classes}")
    n_app = -(-k // per)
    sizes = [k // n_app + (1 if i < k % n_app else 0) for i in range(n_app)]
    return [f"{a}_{m}" for (a, motions), s in zip(table.items(), sizes) for m in motions[:s]]


def confuser(name: str, names: list[str]) -> str:
    """The one look-alike that floods ``name``'s search results in a world with ``confuser``: the
    class with the same motion and the next appearance (cyclically), so the confusion runs one way
    around a cycle, as when a query's results are dominated by a more popular neighbour (a class
    whose motion no other appearance has falls back to its first sibling)."""
    shape, motion = name.split("_")
    ring = [n for n in names if n.split("_")[1] == motion]
    if len(ring) > 1:
        return ring[(ring.index(name) + 1) % len(ring)]
    return siblings(name, names)[0]


def siblings(name: str, names: list[str]) -> list[str]:
    """The classes confusable with ``name``: same appearance (other motion) or same motion (other
    appearance); names are ``<appearance>_<motion>`` in every family."""
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
    # directions: one-way motion in four directions and oscillation (mirror / time-reversal pairs)
    "dir_c6_t4_n30": dict(family="directions", num_classes=6, train_per_class=4, noise_rate=0.3, sibling_share=0.6,
                          domain_shift=0.5, web_per_query=24),
    "dir_c8_t5_n50": dict(family="directions", num_classes=8, train_per_class=5, noise_rate=0.5, sibling_share=0.5,
                          domain_shift=1.0, web_per_query=24),
    "dir_c12_t8_n40": dict(family="directions", num_classes=12, train_per_class=8, noise_rate=0.4,
                           sibling_share=0.7, domain_shift=0.3, web_per_query=20),
    # transforms (held out): rotation cw/ccw, growing/shrinking, approaching/receding, hue-band colours
    "tr_c6_t3_n40": dict(family="transforms", num_classes=6, train_per_class=3, noise_rate=0.4, sibling_share=0.8,
                         domain_shift=0.8, web_per_query=24),
    "tr_c10_t5_n50": dict(family="transforms", num_classes=10, train_per_class=5, noise_rate=0.5,
                          sibling_share=0.5, domain_shift=0.5, web_per_query=24),
    # scenes (held out): textured backgrounds, distractors, camera pan and shake, variable length and fps
    "sc_c8_t5_n40": dict(family="scenes", num_classes=8, train_per_class=5, noise_rate=0.4, sibling_share=0.5,
                         domain_shift=0.5, web_per_query=24),
    "sc_c12_t10_n60": dict(family="scenes", num_classes=12, train_per_class=10, noise_rate=0.6, sibling_share=0.6,
                           domain_shift=1.0, web_per_query=20),
}

# zoo worlds by family; the held-out families are run only for final tables, never for tuning
FAMILIES: dict[str, list[str]] = {f: [n for n, kw in ZOO.items() if (kw.get("family") or "shapes") == f]
                                  for f in FAMILY_NAMES}
HELD_OUT_FAMILIES = ("transforms", "scenes")


def family_of(world_name: str) -> str:
    """The family of a zoo world (``demo``, the world ``omni demo`` generates, is a shapes world)."""
    if world_name == "demo":
        return "shapes"
    if world_name not in ZOO:
        raise KeyError(f"unknown zoo world {world_name!r}; known: {sorted(ZOO)}")
    return ZOO[world_name].get("family") or "shapes"


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


# ---------------------------------------------------------------- the other families' drawing

# a class's colour in transforms and scenes: a hue band around its appearance's hue
_HUES = {"transforms": {"arrow": 0.0, "ell": 0.6, "flag": 0.14, "key": 0.33},
         "scenes": {"disc": 0.0, "arrow": 0.14, "square": 0.6, "ell": 0.33}}
# a motion -> the motion it is the time reversal of (left/right and cw/ccw are mirror images too)
_TIME_REVERSED = {"left": "right", "up": "down", "ccw": "cw", "shrink": "grow", "recede": "approach"}
_DISTRACTORS = ("bar", "blob")


def render_class(rng: np.random.Generator, family: str | None, name: str | None, n: int, h: int, w: int,
                 web: bool, shift: float | None = None, fps: int = 10) -> np.ndarray:
    """uint8[n, h, w, 3]: a clip of class ``name`` (``<appearance>_<motion>``; ``None``: junk, no
    class object) as ``family`` renders it, in the target (``web=False``) or the web domain
    (``shift``: see ``_background``). ``fps`` sets the speed of periodic motion."""
    fam = family or "shapes"
    app, motion = name.split("_") if name else (None, None)
    if fam == "shapes":
        return render_clip(rng, app, motion, n, h, w, web=web, shift=shift)
    if fam == "scenes":
        return _render_scene(rng, app, motion, n, h, w, web, shift, fps)
    if fam in FAMILY_CLASSES:
        return _render_moving(rng, fam, app, motion, n, h, w, web, shift, fps)
    raise ValueError(f"unknown world family {family!r}; known: {FAMILY_NAMES}")


def _radius(rng, h: int, w: int, web: bool, shift: float | None) -> float:
    """The object's radius: the target's range (0.13-0.2 of the short side) widens on the web."""
    if not web:
        return min(h, w) * rng.uniform(0.13, 0.2)
    if shift is None:
        return min(h, w) * rng.uniform(0.1, 0.26)
    return min(h, w) * rng.uniform(0.13 - 0.03 * shift, 0.2 + 0.06 * shift)


def _class_colour(rng, family: str, app: str, web: bool, shift: float | None) -> np.ndarray:
    """directions: any hue (the shape is the appearance); otherwise the appearance's hue band,
    wider on the web."""
    if family == "directions":
        hue = rng.uniform(0, 1)
    else:
        spread = 0.05 + (0.05 * (1.0 if shift is None else shift) if web else 0.0)
        hue = (_HUES[family][app] + rng.uniform(-spread, spread)) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.7, 1.0))) * 255


def _unit_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The shape in its own frame (``u`` along its axis, ``v`` across, in units of its radius)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "disc":
        return u * u + v * v <= 1
    if shape == "square":
        return (au <= 0.85) & (av <= 0.85)
    if shape == "ring":
        d2 = u * u + v * v
        return (d2 <= 1) & (d2 >= 0.55 ** 2)
    if shape == "triangle":
        return (v <= 0.8) & (v >= -1) & (au <= (v + 1) * 0.6)
    if shape == "cross":
        return ((au <= 0.3) & (av <= 1)) | ((av <= 0.3) & (au <= 1))
    if shape == "diamond":
        return au + av <= 1
    if shape == "arrow":  # a shaft and a head pointing along +u
        return ((u >= -1) & (u <= 0.15) & (av <= 0.3)) | ((u >= 0.15) & (u <= 1) & (av <= (1 - u) * 0.9))
    if shape == "ell":
        return ((u >= -0.85) & (u <= -0.25) & (av <= 1)) | ((u >= -0.85) & (u <= 0.85) & (v >= 0.4) & (v <= 1))
    if shape == "flag":  # a pole and a flag on one side of its top
        return ((u >= -0.9) & (u <= -0.55) & (av <= 1)) | ((u >= -0.55) & (u <= 0.75) & (v >= -1) & (v <= -0.05))
    if shape == "key":  # a bar with a dot at one end
        return ((u >= -1) & (u <= 0.3) & (av <= 0.27)) | ((u - 0.57) ** 2 + v * v <= 0.43 ** 2)
    if shape == "bar":
        return (au <= 1) & (av <= 0.3)
    if shape == "blob":
        return u * u + (v / 0.6) ** 2 <= 1
    raise ValueError(f"unknown shape {shape!r}")


def _drifting_centre(rng, t: np.ndarray, h: int, w: int, R: float):
    """A random start anywhere (the object of radius ``R`` inside the frame) and a slow drift."""
    x0, y0 = rng.uniform(R, max(R, w - R)), rng.uniform(R, max(R, h - R))
    dx, dy = rng.uniform(-0.08, 0.08, 2) * min(h, w)
    return np.clip(x0 + dx * t, R, max(R, w - R)), np.clip(y0 + dy * t, R, max(R, h - R))


def _path(rng, motion: str, n: int, h: int, w: int, r: float, fps: float):
    """Per frame: the centre (x, y), scale, angle (radians; increasing is clockwise on screen),
    brightness and blur (px) of an object of radius ``r`` doing ``motion`` in an h x w frame. A
    motion and its time reversal (``_TIME_REVERSED``) draw the same numbers and differ only in the
    direction of time, so ``left`` is ``right`` played backwards; the start is random."""
    base = _TIME_REVERSED.get(motion, motion)
    if n > 1:
        idx = np.arange(n)
        t = (idx if base == motion else (n - 1) - idx) / (n - 1)
    else:  # one frame (a web image): a random moment of the motion
        t = rng.uniform(0, 1, 1)
    ones = np.ones(n)
    th = rng.uniform(0, 2 * np.pi) * ones
    s, b, blur = ones, ones, np.zeros(n)
    if base in ("right", "down", "oscillate"):
        horizontal = base == "right" or (base == "oscillate" and rng.random() < 0.5)
        L, Lo = (w, h) if horizontal else (h, w)
        avail = max(L - 2 * r, 1.0)
        if base == "oscillate":  # back and forth, 0.8-1.6 s a period
            amp = avail / 2 * rng.uniform(0.4, 0.9)
            c = rng.uniform(r + amp, L - r - amp)
            period, phase = rng.uniform(0.8, 1.6) * fps, rng.uniform(0, 2 * np.pi)
            along = c + amp * np.sin(2 * np.pi * np.arange(n) / period + phase)
        else:  # one way over 45-90% of the free width
            dist = avail * rng.uniform(0.45, 0.9)
            along = rng.uniform(r, L - r - dist) + dist * t
        across = rng.uniform(r, max(r, Lo - r)) * ones
        x, y = (along, across) if horizontal else (across, along)
    elif base == "cw":
        th = th + rng.uniform(0.6, 1.2) * np.pi * t
        x, y = _drifting_centre(rng, t, h, w, r)
    elif base == "grow":
        s0, f = rng.uniform(0.6, 0.8), rng.uniform(1.4, 1.8)
        s = s0 * f ** t
        x, y = _drifting_centre(rng, t, h, w, r * s0 * f)
    elif base == "approach":  # larger, lower (nearer the camera), brighter and sharper
        far, near = rng.uniform(0.4, 0.55), rng.uniform(1.1, 1.35)
        s = far * (near / far) ** t
        y_far, y_near = rng.uniform(0.25, 0.45) * h, rng.uniform(0.55, 0.75) * h
        y = np.clip(y_far + (y_near - y_far) * t, r * s, h - r * s)
        x = rng.uniform(r * near, max(r * near, w - r * near)) * ones
        b = 0.55 + 0.45 * t
        blur = rng.uniform(0.8, 2.0) * (1 - t)
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return x, y, s, th, b, blur


def _draw_object(frames: np.ndarray, shape: str, colour, r: float, x, y, s, th, b, blur) -> None:
    """Paint the object into float frames[n, h, w, 3], all frames at once (per-frame arrays)."""
    n, h, w = frames.shape[:3]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    f32 = lambda a: np.asarray(a, np.float32)[:, None, None]  # noqa: E731
    c, sn = f32(np.cos(th)), f32(np.sin(th))
    dx, dy = xx[None] - f32(x), yy[None] - f32(y)
    R = f32(r * np.asarray(s))
    a = _unit_mask(shape, (c * dx + sn * dy) / R, (c * dy - sn * dx) / R).astype(np.float32)
    for i in np.flatnonzero(np.asarray(blur) > 0.3):  # out of focus: soft edges
        img = Image.fromarray((a[i] * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(float(blur[i])))
        a[i] = np.asarray(img, np.float32) / 255
    col = np.asarray(colour, np.float32)[None, :] * np.asarray(b, np.float32)[:, None]
    a = a[..., None]
    frames *= 1 - a
    frames += a * col[:, None, None, :]


def _distractors(rng, frames: np.ndarray, r: float, k: int) -> None:
    """``k`` greyish bars and blobs wandering at random (random walk of direction and spin)."""
    n, h, w = frames.shape[:3]
    for _ in range(k):
        shape = _DISTRACTORS[int(rng.integers(len(_DISTRACTORS)))]
        colour = np.clip(rng.uniform(70, 190) + rng.uniform(-20, 20, 3), 0, 255)
        size = r * rng.uniform(0.5, 0.9)
        speed = rng.uniform(0.3, 2.0)
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.3, n))
        x = rng.uniform(0, w) + np.cumsum(speed * np.cos(heading))
        y = rng.uniform(0, h) + np.cumsum(speed * np.sin(heading))
        th = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.1, n))
        _draw_object(frames, shape, colour, size, x, y, np.ones(n), th, np.ones(n), np.zeros(n))


def _render_moving(rng, family: str, app: str | None, motion: str | None, n: int, h: int, w: int, web: bool,
                   shift: float | None, fps: float) -> np.ndarray:
    """directions and transforms: one object on the shapes family's backgrounds."""
    frames = np.repeat(_background(rng, h, w, web, shift)[None], n, axis=0)
    r = _radius(rng, h, w, web, shift)
    if app is None:  # junk: wandering grey things, no class object
        _distractors(rng, frames, r, int(rng.integers(1, 4)))
    else:
        colour = _class_colour(rng, family, app, web, shift)
        _draw_object(frames, app, colour, r, *_path(rng, motion, n, h, w, r, fps))
    return np.clip(frames, 0, 255).astype(np.uint8)


def _texture(rng, h: int, w: int, web: bool, shift: float | None) -> np.ndarray:
    """scenes' backgrounds: a smooth noise texture or soft stripes with grain (target), hard
    stripes or checks in a darker palette (web, with probability ``shift``), then clutter."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    if web and shift is not None and rng.random() >= shift:
        web = False
    if not web:
        if rng.random() < 0.5:  # noise texture: a random field at a random scale
            gh, gw = int(rng.integers(3, 10)), int(rng.integers(3, 10))
            field = Image.fromarray((rng.uniform(0, 1, (gh, gw)) * 255).astype(np.uint8))
            m = np.asarray(field.resize((w, h), Image.BICUBIC), np.float32) / 255
        else:  # soft stripes
            ang, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
            m = 0.5 + 0.5 * np.sin((np.cos(ang) * xx + np.sin(ang) * yy) / period * 2 * np.pi)
        bg = c1 * m[..., None] + c2 * (1 - m[..., None])
        bg = bg + rng.normal(0, 1, (h, w, 1)) * rng.uniform(4, 14)  # grain
    else:
        period = rng.uniform(4, 12)
        if rng.random() < 0.5:
            ang = rng.uniform(0, np.pi)
            m = np.sin((np.cos(ang) * xx + np.sin(ang) * yy) / period * 2 * np.pi) > 0
        else:
            m = ((xx // period + yy // period) % 2) > 0
        dark = 0.8 if shift is None else 1 - 0.2 * shift
        bg = np.where(m[..., None], c1 * dark, c2 * dark)
    for _ in range(int(rng.integers(3, 7))):  # clutter: soft blobs and hard-edged furniture
        x0, y0 = rng.uniform(-0.2, 0.9) * w, rng.uniform(-0.2, 0.9) * h
        x1, y1 = x0 + rng.uniform(0.1, 0.4) * w, y0 + rng.uniform(0.1, 0.4) * h
        if rng.random() < 0.5:
            bg[(xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)] = rng.uniform(20, 180, 3)
        else:
            cx, cy, sx, sy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            a = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))[..., None] * rng.uniform(0.5, 1.0)
            bg = bg * (1 - a) + rng.uniform(30, 200, 3) * a
    return bg + rng.normal(0, 5, (h, w, 3))


def _render_scene(rng, app: str | None, motion: str | None, n: int, h: int, w: int, web: bool,
                  shift: float | None, fps: float) -> np.ndarray:
    """scenes: the object and 2-4 distractors on a textured canvas larger than the frame, seen
    through a camera that pans (up to 15% of the width over the clip, any direction) and shakes."""
    pan, ang, shake = rng.uniform(0, 0.15) * w, rng.uniform(0, 2 * np.pi), rng.uniform(0, 1.2)
    m = int(math.ceil(pan / 2 + 3 * shake)) + 1
    tc = np.arange(n) / max(n - 1, 1) - 0.5
    jitter = np.clip(rng.normal(0, 1, (n, 2)) * shake, -3 * shake, 3 * shake)
    ox = np.clip(np.rint(m + pan * np.cos(ang) * tc + jitter[:, 0]), 0, 2 * m).astype(int)
    oy = np.clip(np.rint(m + pan * np.sin(ang) * tc + jitter[:, 1]), 0, 2 * m).astype(int)
    H, W = h + 2 * m, w + 2 * m
    frames = np.repeat(_texture(rng, H, W, web, shift)[None], n, axis=0)
    r = _radius(rng, h, w, web, shift)
    k = int(rng.integers(2, 5))
    in_front = int(rng.random() < 0.3)  # one distractor may pass in front of the object
    _distractors(rng, frames, r, k - in_front)
    if app is not None:
        colour = _class_colour(rng, "scenes", app, web, shift)
        x, y, s, th, b, blur = _path(rng, motion, n, h, w, r, fps)
        _draw_object(frames, app, colour, r, x + m, y + m, s, th, b, blur)
    _distractors(rng, frames, r, in_front)
    out = np.stack([frames[i, oy[i]: oy[i] + h, ox[i]: ox[i] + w] for i in range(n)])
    return np.clip(out, 0, 255).astype(np.uint8)


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
    off = {"confuser": False, "family": None}
    fields = {k: v for k, v in asdict(spec).items() if not (k in off and v == off[k])}
    want = {"generator_version": GENERATOR_VERSION, **fields}
    if marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(want)):
        return root
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(spec.seed)
    shift = spec.domain_shift
    names = class_names(spec)
    family = world_family(spec)
    # scenes: clip length 1.5-4 s at 6-15 fps, in the target too (the other families: as ever)
    variable_timing = family == "scenes"

    def render(cls, n, h, w, web, fps):
        return render_class(rng, family, cls, n, h, w, web=web, shift=shift if web else None, fps=fps)

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
            for k in range(per):
                if variable_timing:
                    fps = int(rng.integers(6, 16))
                    n = max(4, int(round(rng.uniform(1.5, 4.0) * fps)))
                else:
                    fps, n = spec.fps, n_clip + int(rng.integers(-2, 3))
                clip = render(name, n, S, int(S * 1.25), False, fps)
                rel = f"target/{split}/{name}_{k:03d}.mp4"
                write_video(root / rel, clip, fps)
                rows.append({"path": rel.split("/", 1)[1], "label": name})
                if split == "val":
                    val_clips.append((rel, name, clip, fps))
        pd.DataFrame(rows).to_csv(root / "target" / f"{split}.csv", index=False)

    truth = []
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
            frame = render(true, 1, h, w, True, spec.fps)[0]
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
            if variable_timing:
                fps = int(rng.integers(6, 16))
                n = int(rng.uniform(1.5, 4.0) * fps)
            else:
                fps = int(rng.choice([8, 12, 15]))
                n = int(rng.uniform(1.5, 3.0) * fps)
            clip = render(true, n, h, w, True, fps)
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
        for k in range(spec.untrimmed_per_class):
            h, w = S, int(S * 1.33)
            fps = int(rng.integers(6, 16)) if variable_timing else spec.fps
            t, parts, segments = 0.0, [], []
            while t < spec.untrimmed_s - 0.5:
                seg_s = min(float(rng.uniform(1.5, 3.5)), spec.untrimmed_s - t)
                n = max(1, int(round(seg_s * fps)))
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
                parts.append(render(cls, n, h, w, True, fps))
                segments.append({"start_s": t, "end_s": t + n / fps, "class": cls or "junk"})
                t += n / fps
            rel = f"web/untrimmed/{name}_{k:03d}.mp4"
            write_video(root / rel, np.concatenate(parts), fps)
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
        rel_val, name, clip, fps = val_clips[int(idx)]
        n, h, w = clip.shape[:3]
        dy, dx = max(1, h // 20), max(1, w // 20)
        crop = clip[:, dy: h - dy, dx: w - dx]
        scale = 1.5 if j % 2 == 0 else 0.8
        crop = _resize_frames(crop, int(crop.shape[2] * scale) // 2 * 2, int(crop.shape[1] * scale) // 2 * 2)
        if j % 2 == 0:
            rel = f"web/videos/leak_{j}.mp4"
            write_video(root / rel, crop, fps, crf=30)
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
        cfg["teacher"] = {"image": dict(small), "video": dict(small)}
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
