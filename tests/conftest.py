import os
import tempfile
from pathlib import Path

import pytest

_HOME = tempfile.mkdtemp(prefix="omni-prefect-home-")
os.environ.setdefault("PREFECT_HOME", _HOME)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.path.join(_HOME, "results"))

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not beside the repository")
    return REALDATA


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    from omni.demo.world import generate_world, tiny_spec

    return generate_world(tmp_path_factory.mktemp("world") / "world", tiny_spec())


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
