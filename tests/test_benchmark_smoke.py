"""The benchmarks run to their end: each one's smoke mode on a tiny input (no timing assertions).

A benchmark that reads omni's outputs or config breaks when they move or are renamed (issues
36/37: ``ingest/items.parquet`` became ``ingest/<source>/items.parquet``, the demo config lost
its ``train`` section); these tests run each one's ``--smoke`` mode and check that its table
holds numbers, so such a change fails here instead of in the next real benchmark run.
"""
import importlib.util
import math
import re
import shutil
from pathlib import Path

import pytest

from omni.config import ModelConfig

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench(name: str):
    """Import ``benchmarks/<name>.py`` under a private module name."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _md_rows(text: str) -> list[dict]:
    """The rows of the (first) markdown table in ``text``, as header -> cell."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    head = _cells(lines[0])
    return [dict(zip(head, _cells(ln))) for ln in lines[2:]]


def _positive(text: str) -> float:
    value = float(text.split()[0].rstrip("x"))
    assert math.isfinite(value) and value > 0, text
    return value


def test_ingest_vs_img2dataset_smoke(tmp_path):
    bench = _bench("ingest_vs_img2dataset")
    out = tmp_path / "ingest.txt"
    assert bench.main(["--smoke", "--workdir", str(tmp_path / "work"), "--out", str(out)]) == 0
    text = out.read_text()
    lines = text.splitlines()
    head = lines.index("tool            ok   wall s    cpu s  items/wall-s  items/cpu-s")
    table = {}
    for ln in lines[head + 1:]:
        if not ln.strip():
            break
        tool, *cells = ln.split()
        table[tool] = cells
    ok, *rates = table["omni"]
    assert int(ok) == 12  # every image of the clean list ingested, read from ingest/<source>/items.parquet
    for v in rates:
        _positive(v)
    peer = bench.find_img2dataset(str(bench.ROOT / ".venv-bench" / "bin" / "img2dataset"))
    if peer:
        assert "img2dataset" in table and "ratio omni/img2dataset" in text
    else:
        assert "img2dataset: missing" in text and "img2dataset" not in table
    assert "omni rows with the expected reason: 12/12" in text
    assert (tmp_path / "work" / "omni-work" / "ingest" / "images" / "items.parquet").is_file()


def _frames_for_2s() -> int:
    """Frames omni's default extract stores of a 2 s clip."""
    from omni.config import ExtractConfig
    from omni.video.decode import Window
    from omni.video.extract import frames_per_window

    return frames_per_window([Window(0.0, 2.0)], ExtractConfig())


def test_extract_vs_ffmpeg_smoke(tmp_path):
    bench = _bench("extract_vs_ffmpeg")
    out = tmp_path / "extract.txt"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    text = out.read_text()
    has_ffmpeg = shutil.which("ffmpeg") is not None
    assert ("ffmpeg: missing" in text) != has_ffmpeg
    rows = {ln.split()[0]: ln.split()[1:] for ln in text.splitlines()
            if ln.startswith(("gen_", "all "))}
    assert set(rows) == {"gen_160x120.mp4", "gen_320x240.mp4", "all"}
    for name, cells in rows.items():
        frames, ff, om, ratio, win, win_ratio, dec = cells
        assert int(frames) > 0, name
        for v in (om, win, dec):  # omni's frames per CPU-second: plain, 2 s windows, decord backend
            _positive(v)
        for v in (ff, ratio, win_ratio):
            if has_ffmpeg:
                _positive(v)
            else:
                assert v == "nan", (name, v)
    stored = re.search(r"frames stored per clip / per window: (\d+)/(\d+)\)", text)
    assert stored, text
    assert int(stored.group(1)) == int(stored.group(2)) == _frames_for_2s()  # 2 s clips and 2 s windows
    loader = re.search(r"frame store -> training batch: (\d+) clips/s", text)
    step = re.search(r"student training step rate: +(\d+) clips/s", text)
    assert loader and step and int(loader.group(1)) > 0 and int(step.group(1)) > 0
    assert f"default student: {ModelConfig().arch} " in text
    _positive(re.search(r"ratio loader/training: ([\d.]+)x", text).group(1))


def test_frame_store_smoke(tmp_path):
    bench = _bench("frame_store")
    out = tmp_path / "frame_store.md"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    text = out.read_text()
    _positive(re.search(r"training step runs at (\d+) clips/s", text).group(1))
    rows = _md_rows(text)
    assert [r["codec"] for r in rows] == ["raw", "jpeg q95", "jpeg q90", "jpeg q75"]
    for r in rows:
        _positive(r["bytes/sample"])
        _positive(r["loader clips/s"])
        for col in ("vs raw", "mean abs pixel error"):
            assert float(r[col]) >= 0, (r["codec"], col)
    assert float(rows[0]["mean abs pixel error"]) == 0  # raw is lossless
    assert all(float(r["mean abs pixel error"]) > 0 for r in rows[1:])


def test_scaling_smoke(tmp_path):
    bench = _bench("scaling")
    results = tmp_path / "scaling.md"
    assert bench.main(["--smoke", "--out", str(tmp_path / "work"), "--results", str(results)]) == 0
    rows = _md_rows(results.read_text())
    assert [r["stage"] for r in rows] == ["ingest", "extract", "score"]
    for r in rows:
        assert int(r["rows"]) > 0
        for col in ("wall s", "CPU s", "peak RSS MB", "wall ms/row", "CPU ms/row"):
            _positive(r[col])


def test_concurrency_smoke(tmp_path):
    bench = _bench("concurrency")
    out = tmp_path / "concurrency.md"
    assert bench.main(["--smoke", "--steps", "1", "--out", str(out)]) == 0
    rows = _md_rows(out.read_text())
    assert [r["runs"] for r in rows] == ["alone", "two at once, cores shared (default)"]
    assert len(rows[1]["wall time per run (s)"].split(",")) == 2
    for r in rows:
        for t in r["wall time per run (s)"].split(","):
            _positive(t)
        for ratio in r["ratio to alone (each)"].split(","):
            _positive(ratio)


def test_crossfit_side_by_side_smoke(tmp_path):
    bench = _bench("crossfit_side_by_side")
    out = tmp_path / "sbs.md"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    rows = _md_rows(out.read_text())
    assert [r["layout"].split(",")[0] for r in rows] == ["one after the other", "side by side"]
    for r in rows:
        _positive(r["wall s per pair (mean)"])
        _positive(r["time vs one after the other"])


def test_clip_load_smoke(tmp_path):
    bench = _bench("clip_load")
    out = tmp_path / "clip_load.md"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    rows = _md_rows(out.read_text())
    assert [r["clip"] for r in rows] == ["video clip", "still (warped pseudo-clip)"]
    for r in rows:
        for col in ("reference ms/clip", "omni ms/clip", "omni / reference"):
            _positive(r[col])
    from omni.learning import data

    assert data.noise_slice.__name__ == "noise_slice"  # the benchmark put omni's own back


@pytest.mark.parametrize("name", ["ingest_vs_img2dataset", "extract_vs_ffmpeg", "frame_store", "scaling", "ingest_profile",
                                  "concurrency", "crossfit_side_by_side", "clip_load"])
def test_every_benchmark_has_a_smoke_flag(name):
    assert "--smoke" in (BENCH / f"{name}.py").read_text()


def test_teacher_rules_smoke(tmp_path, tiny_world):
    """benchmarks/teacher_rules.py on a finished tiny run laid out as learning_quality's cache."""
    import shutil

    from omni_testing import write_config

    from flows.cli import main as omni_main

    cache = tmp_path / "cache"
    (cache / "worlds").mkdir(parents=True)
    shutil.copytree(tiny_world, cache / "worlds" / "tiny-s0")
    cfg = write_config(tmp_path, cache / "worlds" / "tiny-s0", workdir=str(cache / "work" / "tiny-s0"))
    assert omni_main(["run", "--no-prefect", str(cfg)]) == 0
    mod = _bench("teacher_rules")
    out = tmp_path / "rules.md"
    assert mod.main(["--cache", str(cache), "--out", str(out)]) == 0
    rows = [ln for ln in out.read_text().splitlines() if ln.startswith("| web_videos") or ln.startswith("| untrimmed")]
    assert len(rows) == 20  # ten rules for each of the two sources
    for ln in rows:
        p, r = (float(c) for c in ln.strip("|").split("|")[2:4])
        assert 0 <= r <= 1 and (p != p or 0 <= p <= 1)

def test_ingest_profile_smoke(tmp_path, capsys):
    bench = _bench("ingest_profile")
    assert bench.main(["--smoke", "--workdir", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    assert "6 JPEGs (320x240/400x300) x 1 rounds" in out
    rows = [ln.split("|")[1:4] for ln in out.splitlines() if ln.startswith("| ") and "%" in ln]
    shares = {label.strip(): float(share.strip().rstrip("%")) for label, share, _ in rows}
    assert len(shares) >= 5 and abs(sum(shares.values()) - 100) < 1.0, shares
