"""Fan-out: one function over many small shard descriptions, here or on a Dask cluster.

A shard description is a tuple of small picklable arguments; the function returns a small
result (status rows, or the path of a part file it wrote) and records a bad item instead of
raising. Results reach ``on_result`` as each shard finishes, so whatever finished is kept
when a later shard fails or the run is stopped, and a rerun does only the rest.

With ``scheduler`` (``tcp://host:8786``) the shards go to that Dask cluster through
``dask.distributed`` directly (no Prefect in the library); the workers must import the same
omni and see the workdir at the same path. Without it: ``workers`` local spawned processes.
"""
from __future__ import annotations

import logging
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)


class FanoutError(RuntimeError):
    """The cluster could not be reached or a shard's worker failed for good."""


def map_shards(fn: Callable[..., Any], shards: Sequence[tuple], on_result: Callable[[Any], None], *,
               scheduler: str | None = None, workers: int = 1,
               resources: dict[str, float] | None = None, name: str = "shard") -> None:
    """Call ``fn(*shard)`` for every shard and ``on_result(result)`` in the caller as each ends."""
    if not shards:
        return
    if scheduler:
        _on_dask(fn, shards, on_result, scheduler, resources or {}, name)
    elif workers <= 1 or len(shards) == 1:
        for shard in shards:
            on_result(fn(*shard))
    else:
        _on_pool(fn, shards, on_result, workers)


def _on_pool(fn, shards, on_result, workers: int) -> None:
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        futs = [pool.submit(fn, *shard) for shard in shards]
        for fut in as_completed(futs):
            on_result(fut.result())
    except BaseException:  # stop now; what finished was handed over already
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _on_dask(fn, shards, on_result, scheduler: str, resources: dict, name: str) -> None:
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError as exc:  # pragma: no cover - dask is a dependency
        raise FanoutError(f"cluster.scheduler_address is set but dask.distributed is not installed: {exc}") from None
    try:
        client = Client(scheduler, timeout="30s", set_as_default=False)
    except Exception as exc:
        raise FanoutError(f"cannot reach the Dask scheduler at {scheduler}: {type(exc).__name__}: {exc}") from None
    futs = []
    batch = uuid.uuid4().hex[:12]
    try:
        log.info("%s: %d shards to the Dask cluster at %s (%d workers)", name, len(shards), scheduler,
                 len(client.scheduler_info().get("workers", {})))
        # retries: a shard whose worker died is run again elsewhere (results are files or rows,
        # written atomically, so a repeat is harmless)
        futs = [client.submit(fn, *shard, pure=False, retries=2, resources=resources or None,
                              key=f"omni-{name}-{i}-{batch}") for i, shard in enumerate(shards)]
        with client.as_current():
            for fut in dask_completed(futs):
                try:
                    result = fut.result()
                except Exception as exc:
                    raise FanoutError(f"{name}: a shard failed on the cluster: {type(exc).__name__}: {exc}") from exc
                on_result(result)
    except BaseException:
        client.cancel(futs)
        raise
    finally:
        client.close()
