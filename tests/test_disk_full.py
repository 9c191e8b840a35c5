"""A full disk: one clear line, no half-written file a later run trusts, and the same command
resumes to the outputs of an uninterrupted run once space is freed; extraction and training that
clearly do not fit are refused before they start.

Where the test process may mount a tmpfs (root with CAP_SYS_ADMIN) the disk is real and small;
elsewhere those tests skip, and the mid-write failure is injected by a frame-store write that
raises ``OSError(ENOSPC)`` (in-process: ``extract.workers`` 1), as a full disk's write does.
"""
import errno
import subprocess
from pathlib import Path

import pytest

from omni import cache, pipeline
from omni.runtime import diskspace
from omni.config import load_config
from omni.video.extract import estimate_bytes

from omni_testing import snapshot, snapshot_diff, write_config

from test_damaged_cache import _snapshot  # the same comparison: every ingest/extract output, times aside

ONE_LINE = "omni: error: no space left on "


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_world):
    """An uninterrupted ingest and extract of the tiny world, chunked in fours."""
    tmp = tmp_path_factory.mktemp("disk-ref")
    cfg = load_config(write_config(tmp, tiny_world, extract={"shard_items": 4, "workers": 1}))
    for stage in ("ingest", "extract"):
        pipeline.run_stage(cfg, stage)
    return _snapshot(cfg.workdir), cfg


def _cli(config: Path, stage: str, capsys) -> tuple[int, str]:
    from flows.cli import main

    rc = main([stage, str(config), "--no-prefect"])
    return rc, capsys.readouterr().err


def _error_lines(err: str) -> list[str]:
    lines = err.replace("\r", "\n").splitlines()  # (the progress bar rewrites its line)
    return [ln for ln in lines if ln.startswith("omni: ") or "Traceback" in ln]


@pytest.mark.e2e
def test_a_disk_filling_up_mid_extract_stops_with_one_line_and_the_same_command_resumes(
        tmp_path, tiny_world, reference, monkeypatch, capsys):
    from omni.video import framestore

    ref_snapshot, _ = reference
    config = write_config(tmp_path, tiny_world, extract={"shard_items": 4, "workers": 1})
    cfg = load_config(config)
    assert _cli(config, "ingest", capsys)[0] == 0
    real_append, calls = framestore.ShardWriter.append, []

    def append_until_full(self, frames):
        calls.append(1)
        if len(calls) > 9:  # the disk is full from the tenth sample on (the third chunk of the first unit)
            self._fh.write(b"x" * 100)  # a partial write first, as a real one leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, frames)

    monkeypatch.setattr(framestore.ShardWriter, "append", append_until_full)
    rc, err = _cli(config, "extract", capsys)
    assert rc == 2
    lines = _error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(ONE_LINE) and lines[0].endswith("MB more"), err[-2000:]
    unit = cfg.workdir / "extract" / "target"
    assert not (unit / "_done.json").exists()
    assert not list(unit.rglob(".*.tmp"))  # the cut shard is gone, not renamed into place
    finished = sorted(p.name for p in (unit / "parts").glob("*.parquet"))
    assert finished == ["shard-00000.parquet", "shard-00001.parquet"]

    monkeypatch.setattr(framestore.ShardWriter, "append", real_append)  # space freed
    calls.clear()
    assert _cli(config, "extract", capsys)[0] == 0
    assert _snapshot(cfg.workdir) == ref_snapshot


def test_the_extract_estimate_is_close_to_what_it_writes(reference):
    _, cfg = reference
    for unit in pipeline.units(cfg, "extract"):
        import pandas as pd

        from omni.config import ExtractConfig

        part = unit.split("/")[1]
        ecfg = ExtractConfig(**pipeline.unit_settings(cfg, unit)["extract"])
        rows = pd.read_parquet(pipeline.stage_dir(cfg, f"ingest/{part}") /
                               ("targets.parquet" if part == "target" else "items.parquet"))
        done = cache.read_done(pipeline.stage_dir(cfg, unit))
        est = estimate_bytes(rows, ecfg, done.get("window_s"), done.get("stride_s"))
        assert 0.5 * done["bytes"] <= est <= 1.5 * done["bytes"], (unit, est, done["bytes"])


@pytest.fixture()
def small_disk(tmp_path):
    """A real tmpfs of 1 MiB, resizable; skipped where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()[:100]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_checkpoint_write_on_a_full_disk_is_an_os_error_and_leaves_the_old_file(small_disk):
    import torch

    from omni.runtime.atomic import torch_save_atomic

    path = small_disk / "checkpoint.pth"
    torch_save_atomic({"w": torch.zeros(1000)}, path)
    before = path.read_bytes()
    with pytest.raises(OSError) as info:
        torch_save_atomic({"w": torch.zeros(1_000_000)}, path)  # 4 MB on a 1 MiB disk
    assert info.value.errno == errno.ENOSPC and diskspace.is_disk_full(info.value)
    assert path.read_bytes() == before and [p.name for p in small_disk.iterdir()] == ["checkpoint.pth"]


def test_extraction_that_clearly_does_not_fit_is_refused_then_resumes_when_the_disk_grows(
        small_disk, tiny_world, reference, capsys):
    ref_snapshot, ref_cfg = reference
    (small_disk / "cfg").mkdir()
    config = write_config(small_disk / "cfg", tiny_world, extract={"shard_items": 4, "workers": 1})
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    cfg = load_config(config)
    assert _cli(config, "ingest", capsys)[0] == 0
    used = sum(p.stat().st_size for p in cfg.workdir.rglob("*") if p.is_file())
    # what ingest used and a little more: the frames (about 1.2 MB here) clearly do not fit
    subprocess.run(["mount", "-o", f"remount,size={used + 192 * 1024}", str(small_disk)], check=True)
    rc, err = _cli(config, "extract", capsys)
    lines = _error_lines(err)
    assert rc == 2 and len(lines) == 1, err[-2000:]
    assert lines[0].startswith(ONE_LINE + str(small_disk)) and "so it was not started" in lines[0]
    assert not (cfg.workdir / "extract" / "target" / "_done.json").exists()
    assert not list((cfg.workdir / "extract").rglob("shard-*"))  # nothing was decoded
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    assert _cli(config, "extract", capsys)[0] == 0
    assert _snapshot(cfg.workdir) == ref_snapshot


def test_training_that_clearly_does_not_fit_is_refused(tmp_path, monkeypatch):
    from omni.config import ModelConfig
    from omni.learning.train import fit

    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 1000)  # a disk with 1 kB left
    with pytest.raises(diskspace.NoSpace, match=r"training run \(a 0 MB model\) needs about \d+ MB, so it was"):
        fit(ModelConfig(steps=1, width=8, input_size=32, batch_size=2), ["a", "b"], _two_clips(tmp_path),
            tmp_path / "run", "key")
    assert not list((tmp_path / "run").glob("*.pth"))


def _two_clips(tmp_path):
    import numpy as np
    import pandas as pd

    from omni.learning.data import ClipDataset
    from omni.video.framestore import ShardWriter

    w = ShardWriter(tmp_path / "frames", "shard-00000")
    refs = [w.append(np.full((8, 36, 36, 3), i * 100, np.uint8)) for i in range(2)]
    w.close()
    rows = pd.DataFrame([{**r, "shard": "frames/" + r["shard"], "label": i, "sample_id": f"s{i}", "item_id": f"i{i}",
                          "split": "train", "source": "target", "kind": "video"}
                         for i, r in enumerate(refs)])
    from omni.config import ModelConfig

    return ClipDataset.for_model(rows, tmp_path, ModelConfig(steps=1, width=8, input_size=32, batch_size=2), train=True)


# ---------------------------------------------------------------- mid-ingest, mid-score, mid-training

WHOLE = {"extract": {"shard_items": 4, "workers": 1}, "cluster": {"shard_items": 8},
         "train": {"threads": 1, "amp": False, "baseline": False, "checkpoint_every_steps": 5,
                   "model": {"steps": 20}}}
STAGES_TO_TRAIN = ("ingest", "extract", "teacher", "score", "filter", "manifest", "train")


@pytest.fixture(scope="module")
def whole_reference(tmp_path_factory, tiny_world):
    """An uninterrupted run of the tiny world up to training (score shards of 8, checkpoints every
    5 of 20 steps), in this process, with one thread: the same outputs every time."""
    tmp = tmp_path_factory.mktemp("disk-whole-ref")
    cfg = load_config(write_config(tmp, tiny_world, **WHOLE))
    for _ in pipeline.iter_pipeline(cfg, STAGES_TO_TRAIN):
        pass
    return cfg


def _full_after(monkeypatch, module, name: str, ok_calls: int) -> list:
    """``module.name`` works ``ok_calls`` times, then fails as a full disk does (after writing
    nothing: the writes it stands for go to temporary names first)."""
    real, calls = getattr(module, name), []

    def fill(*args, **kwargs):
        calls.append(1)
        if len(calls) > ok_calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, fill)
    return calls


def _stops_with_one_line_then_resumes(config, stage, capsys, monkeypatch, calls: list, ok_calls: int, unit: str):
    """The stage stops with one line once the disk is full (``calls`` counts the failing writes'
    attempts), leaves the unit undone with nothing half-written under a real name, and the same
    command, once space is freed, ends normally."""
    cfg = load_config(config)
    rc, err = _cli(config, stage, capsys)
    lines = _error_lines(err)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(ONE_LINE), err[-2000:]
    assert len(calls) > ok_calls  # the disk did fill up mid-stage
    assert not (cfg.workdir / unit / "_done.json").exists()
    assert not list((cfg.workdir / unit).rglob(".*.tmp"))
    monkeypatch.undo()  # space freed
    rc, err = _cli(config, stage, capsys)
    assert rc == 0, err[-2000:]
    return cfg


@pytest.mark.e2e
def test_a_disk_filling_up_mid_ingest_stops_with_one_line_and_resumes_to_the_same_items(
        tmp_path, tiny_world, whole_reference, monkeypatch, capsys):

    import json

    from omni.fetching import journal

    config = write_config(tmp_path, tiny_world, **WHOLE)
    real_add, calls = journal.Journal.add, []

    def add_until_full(self, rec):  # the 24 target clips' records, then six of web_images', then a torn line
        calls.append(1)
        if len(calls) > 30:
            line = (json.dumps(rec, default=str) + "\n").encode()
            self._fh.write(line[:len(line) // 2])
            self._fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(self, rec)

    monkeypatch.setattr(journal.Journal, "add", add_until_full)
    cfg = _stops_with_one_line_then_resumes(config, "ingest", capsys, monkeypatch, calls, 30, "ingest/web_images")
    want = snapshot(whole_reference.workdir, ("ingest",))
    assert snapshot_diff(snapshot(cfg.workdir, ("ingest",)), want) == []


@pytest.mark.e2e
def test_a_disk_filling_up_mid_score_stops_with_one_line_and_resumes_to_the_same_scores(
        tmp_path, tiny_world, whole_reference, monkeypatch, capsys):
    from omni.learning import score

    config = write_config(tmp_path, tiny_world, **WHOLE)
    for stage in ("ingest", "extract", "teacher"):
        assert _cli(config, stage, capsys)[0] == 0
    calls = _full_after(monkeypatch, score, "write_parquet_atomic", 1)  # the second score shard's part
    cfg = _stops_with_one_line_then_resumes(config, "score", capsys, monkeypatch, calls, 1, "score/web_images")
    want = snapshot(whole_reference.workdir, ("score",))
    assert snapshot_diff(snapshot(cfg.workdir, ("score",)), want) == []


@pytest.mark.e2e
def test_a_disk_filling_up_mid_training_stops_with_one_line_and_resumes_to_the_same_model(
        tmp_path, tiny_world, whole_reference, monkeypatch, capsys):
    import torch

    from omni.learning import train

    config = write_config(tmp_path, tiny_world, **WHOLE)
    for stage in STAGES_TO_TRAIN[:-1]:
        assert _cli(config, stage, capsys)[0] == 0
    # the second checkpoint of the first-round student (step 10 of 20) finds the disk full
    calls = _full_after(monkeypatch, train, "torch_save_atomic", 1)
    cfg = _stops_with_one_line_then_resumes(config, "train", capsys, monkeypatch, calls, 1, "train/first_round")
    info = cache.read_done(cfg.workdir / "train" / "first_round")
    assert info["resumed_from_step"] == 5
    for run in ("first_round", "omnisource"):
        got = torch.load(cfg.workdir / "train" / run / "model.pt", weights_only=False)["model"]
        want = torch.load(whole_reference.workdir / "train" / run / "model.pt", weights_only=False)["model"]
        assert all(torch.equal(got[k], want[k]) for k in want), run
