"""The training-speed benchmark runs end to end (test-sized shapes; no timing assertions)."""
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def train_speed():
    sys.path.insert(0, str(BENCH))
    try:
        import train_speed
        yield train_speed
    finally:
        sys.path.remove(str(BENCH))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_quick_table_has_a_row_per_model(train_speed, tmp_path):
    out = tmp_path / "table.md"
    assert train_speed.main(["--quick", "--tiny", "--precisions", "fp32", "--out", str(out)]) == 0
    text = out.read_text()
    assert 'use_autocast("auto", cpu)` picks: **' in text
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    head = _cells(lines[0])
    rows = [dict(zip(head, _cells(ln))) for ln in lines[2:]]
    models = [r["model"] for r in rows]
    assert any(m.endswith("(image teacher)") for m in models)
    assert any("(video teacher" in m for m in models)
    assert len(rows) == 2
    for r in rows:
        assert r["precision"] == "fp32"
        for col in ("plain steps/s", "omni steps/s", "omni/plain", "plain score clips/s", "omni score clips/s"):
            assert float(r[col]) > 0, (r["model"], col, r[col])
        assert r["omni data wait"].endswith("%")
