"""Helpers shared by the end-to-end tests (imported by name: conftest.py is not importable
when several test folders have one)."""
from pathlib import Path


def write_config(tmp_path: Path, world: Path, **sections) -> Path:
    import yaml

    from omni.demo.world import demo_config

    cfg = demo_config(world, tmp_path / "work", world / "crawl", tiny=True)
    cfg["ingest"]["allow_private_addresses"] = True
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# JSON fields that hold times or speeds (and a stats file's size, which follows them): they differ
# between two runs of the same work
TIMING_KEYS = ("elapsed_s", "items_per_s", "clips_per_s", "checked_this_run", "fetched_this_run", "shards_this_run",
               "_outputs")  # how a run went, not what it made


def snapshot(workdir: Path, tops: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """Every output under ``workdir`` (or its folders ``tops``), by path: the bytes of each file,
    JSON without its times. Journals (they record when), temporary files, the lock and the
    ``_started.json`` markers are left out."""
    import json

    roots = [workdir / t for t in tops] if tops else [workdir]
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(workdir).as_posix()
            if (not p.is_file() or "/journal/" in rel or "/tmp/" in rel or p.name == "_started.json"
                    or rel.startswith(".omni-lock")):
                continue
            data = p.read_bytes()
            if p.suffix == ".json":
                rec = json.loads(data)
                if isinstance(rec, dict):
                    for k in TIMING_KEYS:
                        rec.pop(k, None)
                data = json.dumps(rec, sort_keys=True).encode()
            out[rel] = data
    return out


def snapshot_diff(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    """The paths whose bytes differ, or that only one side has (for an assertion's message)."""
    return sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))


# A fault injector for omni subprocesses: put its folder first on PYTHONPATH (decode_gate_env) and
# every Python process started with that environment (a spawned decoder too) logs each video it
# decodes for extract, one line per call; with OMNI_TEST_DECODE_HOLD_AT=N the N-th call (counted in
# the log) holds there forever, so a test can kill the process at a known point mid-extract.
_SITECUSTOMIZE = '''
import os
if os.environ.get("OMNI_TEST_DECODE_LOG"):
    import threading
    import omni.video.extract as _x

    _orig = _x.decode_windows
    _log = os.environ["OMNI_TEST_DECODE_LOG"]
    _hold = int(os.environ.get("OMNI_TEST_DECODE_HOLD_AT") or 0)

    def decode_windows(path, *args, **kwargs):
        with open(_log, "a") as fh:
            fh.write(f"{path}\\n")
        if _hold:
            with open(_log) as fh:
                if sum(1 for _ in fh) >= _hold:
                    threading.Event().wait()  # until the test kills this process
        return _orig(path, *args, **kwargs)

    _x.decode_windows = decode_windows
'''


def decode_gate_env(folder: Path, log: Path, hold_at: int = 0, base: dict | None = None) -> dict:
    """An environment for an omni subprocess that logs its decodes to ``log`` (and holds at the
    ``hold_at``-th, if given); ``folder`` receives the injector."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = dict(base if base is not None else os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    env["OMNI_TEST_DECODE_LOG"] = str(log)
    env["OMNI_TEST_DECODE_HOLD_AT"] = str(hold_at)
    return env


def wait_for(cond, timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``cond`` until it holds; a TimeoutError naming ``what`` after ``timeout`` seconds
    (the local Prefect helper's poller, at a finer step)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from local_prefect import wait_for as poll

    poll(cond, timeout, what, every)
