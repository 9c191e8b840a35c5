"""Helpers shared by the end-to-end tests (imported by name: conftest.py is not importable
when several test folders have one)."""
from pathlib import Path


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
