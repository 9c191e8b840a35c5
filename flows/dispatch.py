"""The pipeline's stages as runs of their own deployments, each on its deployment's work pool.

With ``stages_on_pools`` (the ``omnisource`` deployment) the pipeline flow starts every stage with
``run_deployment`` as a subflow: the stage deployments of prefect.yaml put ingest, extract, filter
and manifest on ``omni-cpu`` and teacher, score, train and evaluate on ``omni-gpu``, so each stage
is its own flow run, on its own pool, linked to the pipeline's run page. Both workers must see the
config and the workdir at the same paths (shared storage).

A stage run nobody picks up does not wait silently: while its pool has no online worker (or is
paused) the pipeline run logs it, puts an ``omnisource-no-worker`` artifact on its page, and after
``worker_wait_s`` seconds without a worker cancels the stage run and fails with the reason. A pool
whose workers are online but busy (a worker's ``--limit``) is waited on, with one log line.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType, WorkerStatus
from prefect.deployments import run_deployment
from prefect.logging import get_run_logger
from prefect.states import Cancelled, Completed, Failed

from flows.stages import config_label


class StageRunError(RuntimeError):
    """A stage's deployment run did not complete, or no worker took it in time."""


@dataclass
class StageRun:
    stage: str
    pool: str = ""
    flow_run_id: str = ""
    name: str = ""
    state: str = "not started"
    waited_s: float = 0.0  # from creation until a worker took it
    ran_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict:
        return {"stage": self.stage, "pool": self.pool, "flow run": self.name, "state": self.state,
                "waited for a worker (s)": round(self.waited_s, 1), "ran (s)": round(self.ran_s, 1)}


def deployment_name(stage: str) -> str:
    """prefect.yaml names each stage deployment after its flow: ``teacher/teacher``."""
    return f"{stage}/{stage}"


def no_worker_note(stage: str, pool: str, online: int, paused: bool, worker_wait_s: float) -> str:
    """What the run page says while a stage waits on a pool that nobody serves."""
    why = f"work pool {pool} is paused" if paused else f"no worker polls work pool {pool}"
    fix = (f"resume it (`prefect work-pool resume {pool}`)" if paused
           else f"start one where this stage should run: `prefect worker start --pool {pool}`")
    return (f"stage {stage} is waiting: {why} ({online} worker(s) online). To go on, {fix}; "
            f"without one within {worker_wait_s:.0f} s (parameter worker_wait_s) the run fails.")


def busy_note(stage: str, pool: str, online: int, waited: float) -> str:
    return (f"stage {stage}: {online} worker(s) online on pool {pool}, but none has taken the run for "
            f"{waited:.0f} s; they may be busy (a worker started with --limit, a pool concurrency limit; "
            f"the pipeline run itself holds one slot of an omni-cpu worker). Still waiting.")


def pool_status(client, pool: str) -> tuple[int, bool]:
    """(workers online, paused) as the server sees them: a worker is online while its heartbeats
    arrive (the server's foreman marks it offline after three missed ones)."""
    work_pool = client.read_work_pool(pool)
    workers = client.read_workers_for_work_pool(pool)
    return sum(w.status == WorkerStatus.ONLINE for w in workers), bool(work_pool.is_paused)


def _settle_parent_task(client, flow_run, ok: bool, message: str) -> None:
    """run_deployment leaves the stage's placeholder task in the parent Pending: give it the stage's end."""
    if flow_run.parent_task_run_id is None:
        return
    try:
        client.set_task_run_state(flow_run.parent_task_run_id, Completed(message=message) if ok
                                  else Failed(message=message), force=True)
    except Exception:
        pass


def run_stage(stage: str, parameters: dict, worker_wait_s: float, record: StageRun, poll_s: float = 2.0) -> None:
    """Run one stage's deployment as a subflow of the current flow run and wait for its end."""
    logger = get_run_logger()
    name = deployment_name(stage)
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(name)
        except Exception as exc:
            raise StageRunError(f"stage {stage}: no deployment {name} ({exc}); deploy them with "
                                f"`prefect deploy --all`") from exc
        record.pool = deployment.work_pool_name or ""
        record.name = f"{stage} · {config_label(parameters['config_path'])}"
        flow_run = run_deployment(deployment.id, parameters=parameters, flow_run_name=record.name, timeout=0,
                                  as_subflow=True)
        record.flow_run_id = str(flow_run.id)
        logger.info("%s: flow run %s on work pool %s", stage, flow_run.id, record.pool)
        created = time.monotonic()
        started = None
        no_worker_since = None
        warned_busy = False
        try:
            while True:
                flow_run = client.read_flow_run(flow_run.id)
                state = flow_run.state
                record.state = state.name if state else "?"
                if state is not None and state.is_final():
                    break
                now = time.monotonic()
                if state is not None and state.type == StateType.SCHEDULED:  # no worker has taken it yet
                    online, paused = pool_status(client, record.pool)
                    if online and not paused:
                        no_worker_since = None
                        if not warned_busy and now - created >= worker_wait_s:
                            warned_busy = True
                            logger.warning(busy_note(stage, record.pool, online, now - created))
                    elif no_worker_since is None:
                        no_worker_since = now
                        note = no_worker_note(stage, record.pool, online, paused, worker_wait_s)
                        record.notes.append(note)
                        logger.warning(note)
                        try:
                            create_markdown_artifact(markdown=f"### Waiting for a worker\n\n{note}\n",
                                                     key="omnisource-no-worker",
                                                     description=f"{stage} waits on pool {record.pool}")
                        except Exception:
                            pass
                    elif now - no_worker_since >= worker_wait_s:
                        why = "is paused" if paused else "has no worker"
                        msg = (f"stage {stage}: work pool {record.pool} {why} after {worker_wait_s:.0f} s "
                               f"(worker_wait_s); its flow run {flow_run.id} is cancelled. Start a worker "
                               f"(`prefect worker start --pool {record.pool}`) and run the pipeline again: "
                               f"finished stages are cache hits.")
                        client.set_flow_run_state(flow_run.id, Cancelled(message=msg), force=True)
                        record.state = "Cancelled"
                        record.waited_s = now - created
                        _settle_parent_task(client, flow_run, False, msg)
                        raise StageRunError(msg)
                elif started is None:
                    started = now
                    record.waited_s = now - created
                time.sleep(poll_s)
        except BaseException:
            # the pipeline run stops (failed, cancelled, killed): leave no stage run behind it
            try:
                current = client.read_flow_run(flow_run.id).state
                if current is not None and not current.is_final():
                    client.set_flow_run_state(flow_run.id, Cancelled(message="the pipeline run stopped"),
                                              force=True)
            except Exception:
                pass
            raise
        end = time.monotonic()
        if started is None:
            record.waited_s = end - created
        record.ran_s = end - (started if started is not None else end)
        ok = state.type == StateType.COMPLETED
        _settle_parent_task(client, flow_run, ok, f"{stage}: {state.name}")
        if not ok:
            raise StageRunError(f"stage {stage} ended {state.name} on work pool {record.pool} "
                                f"(flow run {flow_run.id}): {state.message or 'see its logs'}")
        logger.info("%s: %s on %s after %.0f s", stage, state.name, record.pool, record.ran_s)


def run_stages_on_pools(stages, config_path: str, overrides: list[str], worker_wait_s: float,
                        poll_s: float = 2.0) -> list[StageRun]:
    """Every stage in order, each a run of its deployment; a table of where each ran on the run page."""
    records = [StageRun(stage) for stage in stages]
    try:
        for record in records:
            run_stage(record.stage, {"config_path": config_path, "overrides": list(overrides)}, worker_wait_s,
                      record, poll_s)
    finally:
        try:
            create_table_artifact(table=[r.row() for r in records], key="omnisource-stages",
                                  description="where each stage ran: its flow run, work pool and state")
        except Exception:
            pass
    return records
