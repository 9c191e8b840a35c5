"""The first round with ``filter.refine_crossfit``: two students, each on the target clips and one
half of the teacher's selection, so that every web sample can be judged by the student that did
not learn from it (second_round.py). On a CPU the two train side by side, one in a child process."""
from __future__ import annotations

import json
import shutil

import pandas as pd

from ..runtime.atomic import write_json_atomic
from .layout import StageError
from .unit import Unit, curve_png, no_target_clips, run_options


def train_crossfit(u: Unit) -> dict:
    """The first round with ``filter.refine_crossfit``: two students, each on the target clips and
    one half of the selected web items (``fold0/``, ``fold1/``); ``model.pt`` (what
    ``evaluate/first_round`` reports) is the first one's."""
    from ..config import TrainConfig
    from ..selection.filter import crossfit_fold
    from ..learning.train import train_student

    rows = pd.read_parquet(u.input("manifest") / "train.parquet")
    if (rows["source"] == "target").sum() == 0:
        raise no_target_clips("train")
    web = rows["source"] != "target"
    fold = crossfit_fold(rows["item_id"])
    tcfg = TrainConfig(**u.settings["train"])
    share = u.settings.get("crossfit_steps", 1.0)
    if share != 1.0:
        if tcfg.model.steps is not None:
            tcfg.model.steps = max(1, round(tcfg.model.steps * share))
        else:
            tcfg.model.epochs = max(1, round(tcfg.model.epochs * share))
    run = run_options(u.runtime)
    jobs = [(rows[~web | (fold == k)], u.dir / f"fold{k}", f"{u.keys[u.name]}-fold{k}") for k in (0, 1)]
    for _, d, _ in jobs:
        d.mkdir(parents=True, exist_ok=True)
    side_by_side = _folds_side_by_side(u, run)
    if side_by_side:
        results = _train_two_side_by_side(u, tcfg, run, jobs)
    else:
        results = [train_student(r, tcfg, u.settings["classes"], u.workdir, d, key, run=run, progress=u.progress,
                                 should_stop=u.should_stop) for r, d, key in jobs]
    first = results[0]
    folds = {f"fold{k}": {key: v for key, v in res.items() if key != "curve"} for k, res in enumerate(results)}
    res = {**first, "crossfit": folds, "crossfit_side_by_side": side_by_side}
    if u.ranks.main:
        shutil.copy2(u.dir / "fold0" / "model.pt", u.dir / "model.pt")
        write_json_atomic(u.dir / "summary.json", res)
        curve_png(u, res)
    return {k: v for k, v in res.items() if k != "curve"}


def _folds_side_by_side(u: Unit, run) -> bool:
    """Whether the two cross-fitted students train at once, one in a child process: on a CPU with
    at least two usable cores, outside torchrun, and with the core share left to omni
    (``train.threads`` unset). Two processes of half the threads each out-train one process of
    all of them on small 3D CNNs (benchmarks/results/crossfit_side_by_side.md)."""
    from ..runtime.cores import usable_cores
    from ..learning.train import pick_device

    return (not u.ranks.many and u.runtime["train.threads"] is None and usable_cores() >= 2
            and pick_device(run.device).type == "cpu")


def _train_two_side_by_side(u: Unit, tcfg, run, jobs: list) -> list[dict]:
    """The first job here (with the unit's progress and stop check), the second in a spawned
    child process at the same time; each process takes its fair share of the cores (omni/runtime/cores.py:
    the child registers as a run of its own, so both follow the share while they train). A stop
    request or a failure here ends the child (its checkpoints stay); the child's failure is
    reported with its traceback's last line."""
    import multiprocessing

    from ..runtime.cancel import Cancelled
    from ..learning.train import train_student

    (rows0, d0, key0), (rows1, d1, key1) = jobs
    result, error = d1 / "_result.json", d1 / "_error.txt"
    for f in (result, error):
        f.unlink(missing_ok=True)
    child = multiprocessing.get_context("spawn").Process(
        target=_train_in_child, name=f"omni-{d1.name}",
        args=(rows1, tcfg, u.settings["classes"], u.workdir, d1, key1, run, u.runtime["train.loader_workers"],
              result, error))
    child.start()
    try:
        first = train_student(rows0, tcfg, u.settings["classes"], u.workdir, d0, key0, run=run, progress=u.progress,
                              should_stop=u.should_stop)
        while child.is_alive():
            child.join(timeout=1.0)
            if u.should_stop():
                raise Cancelled(f"{u.name}: stopped while its second cross-fitted student trained")
    finally:
        if child.is_alive():  # SIGTERM: the child checkpoints and ends (a rerun resumes it)
            child.terminate()
            child.join(timeout=120)
            if child.is_alive():
                child.kill()
                child.join()
    if child.exitcode != 0 or not result.exists():
        why = error.read_text().strip().splitlines()[-1] if error.exists() else f"exit code {child.exitcode}"
        raise StageError(f"{u.name}: the cross-fitted student of {d1.name} failed: {why}")
    return [first, json.loads(result.read_text())]


def _train_in_child(rows, tcfg, class_names, workdir, out_dir, key, run, reserved, result, error) -> None:
    """A spawned child's body (``_train_two_side_by_side``): one student, its fair share of the cores."""
    import traceback

    from ..runtime.cancel import raise_on_signals
    from ..runtime.cores import CoreShare
    from ..learning.train import train_student

    raise_on_signals()  # the parent's terminate() becomes Cancelled: training checkpoints on the way out
    try:
        with CoreShare(reserved=reserved) as cores:

            def follow_the_core_share() -> bool:  # called every step; the child never asks to stop
                cores.apply()
                return False

            res = train_student(rows, tcfg, class_names, workdir, out_dir, key, run=run,
                                should_stop=follow_the_core_share)
        write_json_atomic(result, res)
    except BaseException:
        error.write_text(traceback.format_exc())
        raise
