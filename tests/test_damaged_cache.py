"""Damaged cache files (a truncated frame shard, a done unit whose output went missing or changed
size, a half-written Parquet file): detected on read, that unit redone, and the outputs equal an
uninterrupted run's byte for byte (decoding is deterministic, so the frame shards are compared as
bytes; ``stats.json`` and ``_done.json`` hold elapsed times, and so the size of ``stats.json``, and
are compared without them)."""
import json
from pathlib import Path

import pytest

from omni import cache, pipeline
from omni.config import load_config

from omni_testing import snapshot, write_config

STAGES = ("ingest", "extract")


def _snapshot(workdir: Path) -> dict[str, bytes]:
    """Every output of the ingest and extract units, by path (journals, pictures and times aside)."""
    return snapshot(workdir, STAGES)


def _run(cfg) -> dict[str, bool]:
    keys = pipeline.Keys(cfg)
    return {r.stage: r.cached for s in STAGES for r in pipeline.run_stage(cfg, s, keys)}


@pytest.fixture(scope="module")
def done(tmp_path_factory, tiny_world):
    tmp = tmp_path_factory.mktemp("damaged")
    path = write_config(tmp, tiny_world)
    cfg = load_config(path)
    _run(cfg)
    return cfg, _snapshot(cfg.workdir), path


def _redone_alone(cfg, reference, unit: str) -> None:
    ran = _run(cfg)
    assert [u for u, cached in ran.items() if not cached] == [unit]
    assert _snapshot(cfg.workdir) == reference
    assert all(_run(cfg).values())  # and then all cache hits again


@pytest.mark.e2e
def test_a_truncated_frame_shard_redoes_its_extract_unit(done):
    cfg, reference, _ = done
    shard = next((cfg.workdir / "extract" / "web_videos" / "frames").glob("shard-*.bin"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert "changed size" in cache.damage(shard.parent.parent)
    _redone_alone(cfg, reference, "extract/web_videos")


def test_a_done_unit_whose_output_is_missing_is_redone(done):
    cfg, reference, _ = done
    (cfg.workdir / "extract" / "web_images" / "samples.parquet").unlink()
    _redone_alone(cfg, reference, "extract/web_images")


def test_an_output_that_changed_size_is_redone(done):
    cfg, reference, _ = done
    part = next((cfg.workdir / "extract" / "target" / "parts").glob("*.parquet"))
    with open(part, "ab") as fh:
        fh.write(b"\0" * 10)
    _redone_alone(cfg, reference, "extract/target")


def test_a_half_written_items_table_is_rebuilt_from_the_journal_without_fetching(done):
    cfg, reference, _ = done
    items = cfg.workdir / "ingest" / "web_images" / "items.parquet"
    items.write_bytes(items.read_bytes()[: items.stat().st_size // 2])
    ran = _run(cfg)
    assert [u for u, cached in ran.items() if not cached] == ["ingest/web_images"]  # extract keeps its key
    assert _snapshot(cfg.workdir) == reference
    info = json.loads((items.parent / "stats.json").read_text())
    assert info["fetched_this_run"] == 0


def test_a_stage_alone_names_the_damaged_input(done, capsys):
    from flows.cli import main

    cfg, reference, config_path = done
    samples = cfg.workdir / "extract" / "web_images" / "samples.parquet"
    samples.write_bytes(samples.read_bytes()[:100])
    assert main(["score", str(config_path), "--no-prefect"]) == 2
    err = capsys.readouterr().err
    assert "omni: error: extract/web_images's outputs are damaged (samples.parquet changed size" in err
    assert "Traceback" not in err
    _run(cfg)
    assert _snapshot(cfg.workdir) == reference


def test_a_killed_extract_with_a_half_written_part_and_a_truncated_shard_redoes_those_chunks(done):
    cfg, reference, _ = done
    unit = cfg.workdir / "extract" / "untrimmed"
    # as a killed run leaves it: not done, no samples table; then damage one chunk's files
    (unit / "_done.json").unlink()
    (unit / "samples.parquet").unlink()
    parts = sorted((unit / "parts").glob("*.parquet"))
    shards = sorted((unit / "frames").glob("shard-*.bin"))
    assert len(parts) == len(shards) >= 1
    parts[0].write_bytes(parts[0].read_bytes()[:50])
    shards[-1].write_bytes(shards[-1].read_bytes()[:-7])
    _redone_alone(cfg, reference, "extract/untrimmed")
