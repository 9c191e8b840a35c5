"""The score stage: every web sample scored by its teacher (omni/learning/score.py), and ``rescore``, the one
sharded, resumable scoring that the second round uses too."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .layout import source_config
from .unit import Progress, Unit, take_core_share


def body(u: Unit) -> dict:
    from ..learning.teacher import KIND_OF_SOURCE

    take_core_share(u)
    teacher = KIND_OF_SOURCE[source_config(u.cfg, u.part).kind]
    samples = pd.read_parquet(u.input(f"extract/{u.part}") / "samples.parquet")
    return rescore(u, samples, u.input(f"teacher/{teacher}"), teacher, u.dir, amp=u.settings["amp"],
                   progress=u.progress)


def rescore(u: Unit, samples: pd.DataFrame, model_dir: Path, kind: str, out: Path, *, amp,
            progress: Progress | None = None) -> dict:
    """Score ``samples`` with the model in ``model_dir`` into ``out/scores.parquet``: sharded and
    resumable (omni/learning/score.py), on a Dask cluster or every rank of a torchrun job when there is
    one. ``kind`` is the judge: ``image``/``video`` (a teacher) or ``student``."""
    from ..learning.score import assemble_scores, prepare_parts, score_samples

    if u.ranks.many:  # rank 0 checks earlier parts before any rank writes one
        if u.ranks.main:
            prepare_parts(out, int((samples["extract_status"] == "ok").sum()), u.runtime["cluster.shard_items"])
        u.ranks.barrier()
    info = score_samples(samples, u.workdir, model_dir, kind, out, amp=amp,
                         device=u.runtime["train.device"], batch_size=u.runtime["evaluate.batch_size"],
                         loader_workers=u.runtime["train.loader_workers"], shard_items=u.runtime["cluster.shard_items"],
                         scheduler=u.runtime["cluster.scheduler_address"],
                         resources=u.runtime["cluster.score_resources"], rank=u.ranks.rank,
                         world_size=u.ranks.world_size, progress=progress)
    u.ranks.barrier()  # every rank's shards have their parts
    if u.ranks.main:
        assemble_scores(out, info["shards"])
    return info
