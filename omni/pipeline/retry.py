"""``omni ingest CONFIG --retry-failed [REASON...]``: fetch again only what failed for a transient
reason (the rules: omni/fetching/retry.py), before the ingest stage runs."""
from __future__ import annotations

import logging

from ..config import Config
from .ingest import _fetch_options, _source_list_args, _validate_options
from .keys import Keys, runtime_settings, unit_settings
from .layout import StageError, downloads_dir, stage_dir, units
from .runner import claim_workdir, workdir_lock

log = logging.getLogger("omni")


def retry_failed(cfg: Config, reasons: list[str] | None = None) -> list:
    """``omni ingest CONFIG --retry-failed [REASON...]``: fetch again, for every crawl list that
    was ingested, only the URLs whose download failed for a transient reason (omni/fetching/retry.py;
    ``reasons`` restricts the classes). Returns one ``retry.RetryCounts`` per source. Run the
    ingest stage after it: a source whose records changed has a new key (``Keys``) and is
    rebuilt from the journal; the others stay cache hits."""
    from ..fetching.ingest import retry_failed_rows
    from ..fetching.retry import RetryCounts, parse_classes

    try:
        classes = parse_classes(reasons)
    except ValueError as exc:
        raise StageError(str(exc)) from None
    keys = Keys(cfg)
    claim_workdir(cfg)
    out = []
    with workdir_lock(cfg):
        for unit in units(cfg, "ingest"):
            part = unit.partition("/")[2]
            if part == "target":  # the user's own clips, read in place: nothing transient to retry
                continue
            journal = stage_dir(cfg, unit) / "journal" / keys.fetch(unit)
            if not (journal / "journal.jsonl").exists():  # never ingested: the ingest stage fetches it all
                out.append(RetryCounts(part))
                continue
            s = unit_settings(cfg, unit)
            runtime = runtime_settings(cfg)
            counts = retry_failed_rows(*_source_list_args(cfg, part, s), _fetch_options(s["ingest"], runtime,
                                       s.get("local_roots")), _validate_options(s["ingest"]),
                                       stage_dir(cfg, unit) / "tmp", journal, downloads_dir(cfg), classes,
                                       workers=runtime["ingest.workers"])
            log.info("%s", counts.line())
            out.append(counts)
    return out
