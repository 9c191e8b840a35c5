"""The pipeline's stages on their pools (flows/dispatch.py), without a server: prefect.yaml puts
each stage on the pool it belongs to, and the wait for a worker is bounded and says why. The real
thing, with a server and two workers, is tests/test_pools.py."""
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_puts_cpu_stages_on_omni_cpu_and_gpu_stages_on_omni_gpu():
    from omni.pipeline import GPU_STAGES, STAGES

    deps = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    for stage in STAGES:
        assert deps[stage]["entrypoint"].endswith(f":{stage}_flow")
        assert deps[stage]["work_pool"]["name"] == ("omni-gpu" if stage in GPU_STAGES else "omni-cpu"), stage
    pipeline = deps["omnisource"]
    assert pipeline["parameters"]["stages_on_pools"] is True and pipeline["work_pool"]["name"] == "omni-cpu"
    assert deps["omnisource-cpu"]["parameters"].get("stages_on_pools") is not True  # one process, one machine


def test_worker_wait_is_a_form_field_with_a_floor():
    from prefect.exceptions import ParameterTypeError

    from flows.pipeline import omnisource

    props = omnisource.parameters.properties
    assert props["stages_on_pools"]["default"] is False  # `omni run` keeps running the stages in process
    assert props["worker_wait_s"]["minimum"] == 1 and "online worker" in props["worker_wait_s"]["description"]
    with pytest.raises(ParameterTypeError):
        omnisource.validate_parameters({"config_path": "c.yaml", "worker_wait_s": 0})


class FakeClient:
    """A server where a stage run stays Scheduled for ``scheduled_polls`` reads, then goes through
    ``then``; its pool has ``online`` workers."""

    def __init__(self, online: int, scheduled_polls: int = 10**9, then=("RUNNING", "COMPLETED"), paused=False):
        self.online, self.paused, self.left, self.then = online, paused, scheduled_polls, list(then)
        self.run_id = uuid.uuid4()
        self.set_states = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read_deployment_by_name(self, name):
        return SimpleNamespace(id=uuid.uuid4(), work_pool_name="omni-gpu")

    def read_flow_run(self, run_id):
        from prefect.client.schemas.objects import StateType
        from prefect.states import State

        if self.set_states:
            kind = self.set_states[-1].type
        elif self.left > 0:
            self.left -= 1
            kind = StateType.SCHEDULED
        else:
            kind = StateType(self.then.pop(0) if len(self.then) > 1 else self.then[0])
        return SimpleNamespace(id=self.run_id, state=State(type=kind, name=kind.value.title()),
                               parent_task_run_id=None)

    def read_work_pool(self, name):
        return SimpleNamespace(is_paused=self.paused)

    def read_workers_for_work_pool(self, name):
        from prefect.client.schemas.objects import WorkerStatus

        return [SimpleNamespace(status=WorkerStatus.ONLINE) for _ in range(self.online)] + \
            [SimpleNamespace(status=WorkerStatus.OFFLINE)]

    def set_flow_run_state(self, run_id, state, force=False):
        self.set_states.append(state)


@pytest.fixture
def fake(monkeypatch):
    import flows.dispatch as d

    logged, artifacts = [], []
    logger = SimpleNamespace(info=lambda *a: logged.append(a[0] % a[1:] if len(a) > 1 else a[0]),
                             warning=lambda m: logged.append(m))
    monkeypatch.setattr(d, "get_run_logger", lambda: logger)
    monkeypatch.setattr(d, "create_markdown_artifact", lambda **kw: artifacts.append(kw))

    def install(client):
        monkeypatch.setattr(d, "get_client", lambda sync_client: client)
        monkeypatch.setattr(d, "run_deployment", lambda *a, **kw: SimpleNamespace(id=client.run_id))
        return client

    return SimpleNamespace(install=install, logged=logged, artifacts=artifacts, d=d)


def test_no_worker_on_the_pool_says_so_then_cancels_and_fails(fake):
    client = fake.install(FakeClient(online=0))
    record = fake.d.StageRun("teacher")
    with pytest.raises(fake.d.StageRunError, match="omni-gpu has no worker after 0 s"):
        fake.d.run_stage("teacher", {"config_path": "/x/demo/config.yaml"}, 0.2, record, poll_s=0.01)
    assert [s.type.value for s in client.set_states] == ["CANCELLED"]
    assert record.state == "Cancelled" and record.pool == "omni-gpu" and record.name == "teacher · demo/config.yaml"
    assert sum("no worker polls work pool omni-gpu" in m for m in fake.logged) == 1  # said once, not per poll
    assert fake.artifacts[0]["key"] == "omnisource-no-worker"
    assert "prefect worker start --pool omni-gpu" in fake.artifacts[0]["markdown"]


def test_a_paused_pool_is_named_as_paused(fake):
    fake.install(FakeClient(online=1, paused=True))
    with pytest.raises(fake.d.StageRunError, match="omni-gpu is paused"):
        fake.d.run_stage("train", {"config_path": "c.yaml"}, 0.05, fake.d.StageRun("train"), poll_s=0.01)
    assert any("prefect work-pool resume omni-gpu" in m for m in fake.logged)


def test_busy_workers_are_waited_on_and_a_stage_that_fails_fails_the_run(fake):
    client = fake.install(FakeClient(online=1, scheduled_polls=20))
    record = fake.d.StageRun("score")
    fake.d.run_stage("score", {"config_path": "c.yaml"}, 0.05, record, poll_s=0.01)  # waits past 0.05 s: no error
    assert record.state == "Completed" and not client.set_states
    assert any("1 worker(s) online on pool omni-gpu, but none has taken the run" in m for m in fake.logged)
    assert not any("no worker polls" in m for m in fake.logged)

    fake.install(FakeClient(online=1, scheduled_polls=0, then=("RUNNING", "FAILED")))
    with pytest.raises(fake.d.StageRunError, match="stage score ended Failed on work pool omni-gpu"):
        fake.d.run_stage("score", {"config_path": "c.yaml"}, 5, fake.d.StageRun("score"), poll_s=0.01)
