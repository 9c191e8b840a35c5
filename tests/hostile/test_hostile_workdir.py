"""Workdirs and configs built to lose files or crash: omni refuses them with one clear line."""
import subprocess
import sys
from pathlib import Path

import pytest

from omni import pipeline
from omni.config import config_from_dict

pytestmark = pytest.mark.e2e  # runs stages end to end: the slow tier (`pytest -m "not e2e"` skips it)

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, workdir: Path) -> Path:
    (tmp_path / "t.csv").write_text("path,label\na.mp4,a\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"workdir: {workdir}\nclasses: [a, b]\ntarget: {{train: t.csv, val: t.csv}}\nsources: []\n")
    return cfg


def _omni(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omni", *args, "--no-prefect"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("folder", ["extract", "train", "manifest", "ingest/target", "mine"])
def test_a_non_empty_folder_omni_did_not_make_is_refused_and_left_alone(tmp_path, folder):
    work = tmp_path / "work"
    (work / folder).mkdir(parents=True)
    for i in range(3):
        (work / folder / f"precious-{i}.txt").write_text(f"user data {i}")
    before = _snapshot(work)
    p = _omni("run", str(_config(tmp_path, work)))
    assert p.returncode == 2 and "was not made by omni" in p.stderr and "Traceback" not in p.stderr
    assert _snapshot(work) == before


def test_a_folder_inside_omnis_workdir_without_its_marker_is_never_deleted(tmp_path):
    work = tmp_path / "work"
    cfg = config_from_dict({"workdir": str(work), "classes": ["a"],
                            "target": {"train": str(tmp_path / "t.csv"), "val": str(tmp_path / "t.csv")}},
                           base=tmp_path)
    pipeline.claim_workdir(cfg)  # omni's own workdir, then a user drops files into a stage folder
    (work / "ingest" / "target").mkdir(parents=True)
    (work / "ingest" / "target" / "notes.txt").write_text("mine")
    with pytest.raises(pipeline.StageError, match="was not made by omni"):
        pipeline.run_unit(cfg, "ingest/target")
    assert (work / "ingest" / "target" / "notes.txt").read_text() == "mine"


def test_a_workdir_that_is_a_file_is_a_clear_error(tmp_path):
    work = tmp_path / "work"
    work.write_text("a file")
    p = _omni("run", str(_config(tmp_path, work)))
    assert p.returncode == 2 and "is a file" in p.stderr and "Traceback" not in p.stderr
    assert work.read_text() == "a file"


@pytest.mark.parametrize("override,message", [
    ("workdir=", "workdir: Value error, must name a folder"),
    ("sources.5.name=x", "index 5 is out of range"),
    ("sources.x.name=x", "'x' is not a list index"),
    ("train.epochz=3", "--set train.epochz: unknown key"),
    ("train=3", "train: Input should be"),
    ("a..b=1", "not a dotted key"),
])
def test_bad_overrides_are_one_clear_line_blamed_on_the_override(tmp_path, override, message):
    p = _omni("run", str(_config(tmp_path, tmp_path / "work")), "--set", override)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_a_source_named_target_is_refused(tmp_path):
    cfg = _config(tmp_path, tmp_path / "work")
    cfg.write_text(cfg.read_text().replace("sources: []", "sources: [{name: target, kind: image, list: t.csv}]"))
    p = _omni("run", str(cfg))
    assert p.returncode == 2 and "'target' is reserved" in p.stderr


def test_two_runs_never_work_in_one_workdir_at_once(tmp_path):
    work = tmp_path / "work"
    (tmp_path / "t.csv").write_text("path,label\na.mp4,a\n")
    cfg = config_from_dict({"workdir": str(work), "classes": ["a"],
                            "target": {"train": str(tmp_path / "t.csv"), "val": str(tmp_path / "t.csv")}},
                           base=tmp_path)
    pipeline.claim_workdir(cfg)
    with pipeline.workdir_lock(cfg):  # another run holds the workdir
        with pytest.raises(pipeline.StageError, match="in use by another omni run"):
            pipeline.run_unit(cfg, "ingest/target")
    assert pipeline.run_unit(cfg, "ingest/target").stage == "ingest/target"  # free again
