import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_HOME = tempfile.mkdtemp(prefix="omni-prefect-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)  # tests remove what they make
os.environ.setdefault("PREFECT_HOME", _HOME)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.path.join(_HOME, "results"))
# omni's per-machine cache (precision choice, the registry of runs sharing the cores) stays inside the
# suite: an omni run elsewhere on the machine must not change the suite's thread counts mid-test
os.environ["OMNI_CACHE_DIR"] = os.path.join(_HOME, "omni-cache")

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not beside the repository")
    return REALDATA


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    """Generated media for decode tests that need no particular real file: a 320x240 JPEG, a
    2 s H.264 MP4 and a 2 s MPEG-4 AVI (textured, so truncation and decoding are real)."""
    import numpy as np

    from omni.demo.world import write_jpeg, write_video

    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (50, 120, 160, 3), dtype=np.uint8)
    write_video(root / "test.mp4", frames, 25)
    write_video(root / "test.avi", frames, 25, codec="mpeg4")
    still = np.kron(rng.integers(0, 255, (24, 32, 3)), np.ones((10, 10, 1))).astype(np.uint8)
    write_jpeg(root / "test.jpg", still, 90)
    return root


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    from omni.demo.world import generate_world, tiny_spec

    return generate_world(tmp_path_factory.mktemp("world") / "world", tiny_spec())
