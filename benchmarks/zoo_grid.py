"""The zoo's 6 x 3 grid with omni's current defaults, pooled from the recorded runs.

Every cell is one world-seed: the model omni hands over (``OmniSource``: the second round's
student under today's defaults), the target-only baseline, the plain reference 3D CNN
(``benchmarks/reference_model.py``) and the student of the unfiltered crawl, each read from a
committed results file under ``benchmarks/results/``. ``CELLS`` names where each figure comes
from: a full ``benchmarks/learning_quality.py`` run with today's defaults where one exists
(``learning_quality_soft``), else the default rule retrained on that world-seed's cached first
round (``benchmarks/second_round_variants.py``, variant ``video_top1_rel06_soft05_iw``, which
reproduces the train stage to the digit), with the baseline, reference and unfiltered student of
the run whose first round it reused (the baseline and the reference do not depend on the filter's
defaults). Nothing is trained here: this only reads and averages.

    python benchmarks/zoo_grid.py [--out benchmarks/results/zoo_grid.md]
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_VARIANT = "video_top1_rel06_soft05_iw"
WORLDS = ["c10_t5_n50", "c12_t4_n60", "c8_t8_n60", "c6_t3_n40", "c12_t10_n30", "c6_t5_n20"]
EXTRA = ["c8_t5_n50_conf"]  # the look-alike world, outside the original six

# (world, seed) -> where each figure is read: ("full", folder, overrides) takes every column of
# that learning_quality run; ("variant", folder, overrides) takes baseline, reference and
# unfiltered from that run and OmniSource from second_round_variants; "unf" overrides the
# unfiltered figure's source where that run had none.
SOFT, T1 = "learning_quality_soft", "train.threads=1"
_R = "train.threads=1 filter.keep_fraction=0.8 filter.refine=true"
CELLS: dict[tuple[str, int], dict] = {
    ("c10_t5_n50", 0): {"full": (SOFT, T1)},
    ("c10_t5_n50", 1): {"variant": ("learning_quality_refine", _R)},
    ("c10_t5_n50", 2): {"full": (SOFT, "")},
    ("c12_t4_n60", 0): {"variant": ("learning_quality_kind", T1), "ref": ("learning_quality_refine", _R),
                        "unf": "variant"},
    ("c12_t4_n60", 1): {"variant": ("learning_quality_refine", _R)},
    ("c12_t4_n60", 2): {"variant": ("learning_quality_kind", T1), "unf": "variant"},
    ("c8_t8_n60", 0): {"full": (SOFT, "")},
    ("c8_t8_n60", 1): {"variant": ("learning_quality_refine", _R), "unf": "variant"},
    ("c8_t8_n60", 2): {"variant": ("learning_quality_refine", _R)},
    ("c6_t3_n40", 0): {"variant": ("learning_quality_kind", T1), "ref": ("learning_quality", T1),
                       "unf": "variant"},
    ("c6_t3_n40", 1): {"full": (SOFT, T1)},
    ("c6_t3_n40", 2): {"full": (SOFT, T1)},
    ("c12_t10_n30", 0): {"variant": ("learning_quality_refine", _R)},
    ("c12_t10_n30", 1): {"full": (SOFT, T1)},
    ("c12_t10_n30", 2): {"full": (SOFT, T1)},
    ("c6_t5_n20", 0): {"full": (SOFT, T1)},
    ("c6_t5_n20", 1): {"full": (SOFT, T1)},
    ("c6_t5_n20", 2): {"full": (SOFT, T1)},
    ("c8_t5_n50_conf", 0): {"variant": ("learning_quality_refine", _R), "ref": ("learning_quality_keep80",
                                                                              "train.threads=1 filter.keep_fraction=0.8"),
                            "unf": ("learning_quality_keep80", "train.threads=1 filter.keep_fraction=0.8")},
    ("c8_t5_n50_conf", 1): {"full": (SOFT, T1)},
}


def _runs(folder: str) -> list[dict]:
    path = RESULTS / folder / "runs.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _run(folder: str, overrides: str, world: str, seed: int) -> dict | None:
    rows = [r for r in _runs(folder) if r["world"] == world and r["seed"] == seed
            and r.get("overrides", "") == overrides]
    return rows[-1] if rows else None


def _variant(world: str, seed: int, name: str) -> float | None:
    rows = [r for r in _runs("second_round_variants") if r["run"] == f"{world}-s{seed}" and r["variant"] == name]
    return rows[-1]["top1"] if rows else None


def cell(world: str, seed: int) -> dict | None:
    """The four figures of one world-seed (top-1 in %, None where not measured), with their source."""
    spec = CELLS.get((world, seed))
    if spec is None:
        return None
    kind = "full" if "full" in spec else "variant"
    run = _run(*spec[kind], world, seed)
    if run is None:  # not run yet
        return None
    pct = lambda v: None if v is None else 100 * v  # noqa: E731
    out = {"world": world, "seed": seed, "source": f"{spec[kind][0]} ({kind})",
           "baseline": pct(run.get("baseline")), "reference": pct(run.get("reference")),
           "unfiltered": pct(run.get("omnisource_unfiltered")),
           "omnisource": pct(run.get("refined") if kind == "full" else _variant(world, seed, DEFAULT_VARIANT)),
           "video_p": run.get("web_videos_precision_refined") if kind == "full" else None,
           "video_r": run.get("web_videos_recall_refined") if kind == "full" else None}
    if "ref" in spec and out["reference"] is None:
        other = _run(*spec["ref"], world, seed)
        out["reference"] = pct(other and other.get("reference"))
    unf = spec.get("unf")
    if unf == "variant":
        out["unfiltered"] = pct(_variant(world, seed, "unfiltered"))
    elif unf:
        other = _run(*unf, world, seed)
        out["unfiltered"] = pct(other and other.get("omnisource_unfiltered"))
    return out if out["omnisource"] is not None else None


def _ms(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    return f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def _mean(values):
    v = [x for x in values if x is not None]
    return statistics.mean(v) if v else None


def table(worlds: list[str], seeds=(0, 1, 2)) -> tuple[str, list[dict]]:
    cells = [c for w in worlds for s in seeds if (c := cell(w, s)) is not None]
    lines = ["| world | seeds | reference | baseline | OmniSource | gain | unfiltered | filt - unfilt |"
             " baseline - reference |", "|---|---|---|---|---|---|---|---|---|"]
    per_world = []
    for w in worlds:
        cs = [c for c in cells if c["world"] == w]
        if not cs:
            continue
        gain = [c["omnisource"] - c["baseline"] for c in cs]
        fu = [c["omnisource"] - c["unfiltered"] for c in cs if c["unfiltered"] is not None]
        br = [c["baseline"] - c["reference"] for c in cs if c["reference"] is not None]
        per_world.append({"world": w, "gain": _mean(gain), "fu": _mean(fu), "br": _mean(br),
                          "omni": _mean([c["omnisource"] for c in cs]), "base": _mean([c["baseline"] for c in cs]),
                          "ref": _mean([c["reference"] for c in cs]), "unf": _mean([c["unfiltered"] for c in cs])})
        lines.append(f"| `{w}` | {','.join(str(c['seed']) for c in cs)} | {_ms([c['reference'] for c in cs])} | "
                     f"{_ms([c['baseline'] for c in cs])} | **{_ms([c['omnisource'] for c in cs])}** | "
                     f"{_ms(gain)} | {_ms([c['unfiltered'] for c in cs])} | {_ms(fu)} | {_ms(br)} |")
    f = lambda k: f"{_mean([p[k] for p in per_world]):.1f}" if per_world else "-"  # noqa: E731
    lines.append(f"| mean over worlds | {len(cells)} world-seeds | {f('ref')} | {f('base')} | **{f('omni')}** | "
                 f"{f('gain')} | {f('unf')} | {f('fu')} | {f('br')} |")
    return "\n".join(lines), cells


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "zoo_grid.md")
    args = ap.parse_args(argv)
    grid, cells = table(WORLDS)
    extra, extra_cells = table(EXTRA)
    missing = [f"{w} s{s}" for w in WORLDS for s in (0, 1, 2) if cell(w, s) is None]
    detail = ["| world, seed | reference | baseline | OmniSource | unfiltered | web videos P / R | source |",
              "|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for c in cells + extra_cells:
        pr = "-" if c["video_p"] is None else f"{c['video_p']:.2f} / {c['video_r']:.2f}"
        detail.append(f"| `{c['world']}` s{c['seed']} | {fmt(c['reference'])} | {fmt(c['baseline'])} | "
                      f"{fmt(c['omnisource'])} | {fmt(c['unfiltered'])} | {pr} | {c['source']} |")
    text = ["# The zoo's 6 x 3 grid with today's defaults (`benchmarks/zoo_grid.py`)", "",
            "Top-1 % on each world's target val clips, mean ± sample sd over seeds; OmniSource: the model "
            "omni hands over. Means over worlds weight each world once.", "", grid, "",
            f"Missing cells: {', '.join(missing) or 'none'}.", "", "The look-alike world (outside the six):", "",
            extra, "", "Per world-seed:", "", *detail, ""]
    args.out.write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
