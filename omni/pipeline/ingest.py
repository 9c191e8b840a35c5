"""The ingest stage: fetch, validate and de-duplicate the target clips and each crawl list
(omni/fetching/ingest.py does the work)."""
from __future__ import annotations

import dataclasses

from ..config import Config
from .layout import downloads_dir, source_config
from .unit import Unit


def _fetch_options(ingest: dict, runtime: dict, roots: list[str] | None):
    from ..fetching.fetch import FetchOptions

    names = {f.name for f in dataclasses.fields(FetchOptions)}
    opts = {k: v for k, v in ingest.items() if k in names}
    opts["per_host"] = runtime["ingest.per_host"]
    opts["local_roots"] = tuple(roots) if roots is not None else None
    return FetchOptions(**opts)


def body(u: Unit) -> dict:
    from ..fetching.ingest import ingest_source, ingest_target

    s, ing = u.settings, u.settings["ingest"]
    journal = u.dir / "journal" / u.keys.fetch(u.name)
    # the target lists are the user's own: their clips are read wherever they are (never special files)
    fetch = _fetch_options(ing, u.runtime, s.get("local_roots"))
    if u.part == "target":
        return ingest_target(u.cfg.target.train, u.cfg.target.val, s["classes"], fetch, ing["max_video_pixels"],
                             u.dir, journal, workers=u.runtime["ingest.workers"], progress=u.progress)
    return ingest_source(*_source_list_args(u.cfg, u.part, s), fetch, _validate_options(ing),
                         ing["leak_check"], ing["leak_threshold"], u.input("ingest/target") / "targets.parquet",
                         u.dir, journal, downloads_dir(u.cfg), workers=u.runtime["ingest.workers"],
                         progress=u.progress, scheduler=u.runtime["cluster.scheduler_address"],
                         shard_items=u.runtime["cluster.shard_items"])


def _source_list_args(cfg: Config, part: str, settings: dict) -> tuple:
    """(name, kind, list, url column, query column, default query, class names) of a source unit."""
    src = settings["source"]
    return (part, src["kind"], source_config(cfg, part).list, src["url_column"], src["query_column"], src["query"],
            settings["classes"])


def _validate_options(ing: dict):
    from ..fetching.validate import ValidateOptions

    return ValidateOptions(ing["max_image_pixels"], ing["image_short_side"], ing["max_video_pixels"])
