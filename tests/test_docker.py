"""docker/: the worker images and the compose file, checked without a Docker engine (none runs
here): hadolint on every Dockerfile, the compose file against the Compose specification, and
the cross-references a typo would break (images, Dockerfiles, pools, ports, COPY sources)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))


def _hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=120)


def test_there_is_a_cpu_and_a_cuda_image():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile.cpu", "Dockerfile.cuda"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    r = _hadolint(dockerfile)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_does_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install ffmpeg\nRUN cd /opt && pip install omni\n")
    r = _hadolint(bad)
    assert r.returncode != 0 and "DL3007" in r.stdout and "DL3008" in r.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_only_what_the_repository_has(dockerfile):
    sources = [src for line in dockerfile.read_text().splitlines() if line.startswith("COPY ")
               for src in line.split()[1:-1] if not src.startswith("--")]
    assert {"pyproject.toml", "omni", "flows"} <= {s.rstrip("/") for s in sources}, \
        f"{dockerfile.name} does not copy the project in: {sources}"
    for src in sources:
        assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src}: no such path"


def test_compose_file_meets_the_compose_spec_and_its_references_hold():
    import compose_spec

    text = (DOCKER / "compose.yaml").read_text()
    compose_spec.PyCompose.from_yaml(text).validate()  # raises on keys the spec does not know
    spec = yaml.safe_load(text)
    services = spec["services"]
    assert {"postgres", "server", "cpu-worker", "gpu-worker"} <= set(services)
    built = {}
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        if "build" in svc:
            assert (DOCKER / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file(), name
            built[svc["image"]] = name
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host's loopback"
    assert services["server"].get("ports"), "the server's API and UI are published (on loopback) for the host"
    assert built, "compose builds the project's own images"
    for name, svc in services.items():
        image = svc["image"]
        assert image in built or ":" in image, f"{name} uses image {image} that nothing builds or pins"
    # the server keeps its state in PostgreSQL; the workers serve the pools prefect.yaml deploys to
    assert services["server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    pools = set(re.findall(r"name: (omni-\w+)", (ROOT / "prefect.yaml").read_text()))
    served = {svc["command"][svc["command"].index("--pool") + 1] for svc in services.values()
              if "worker" in svc.get("command", [])}
    assert served == pools
    assert services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
