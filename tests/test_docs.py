"""The README and docs/ do not drift: the configuration reference is the one the config models
generate, every relative link leads somewhere, and the README stays short."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 420


def _script(name: str):
    """A script of scripts/ as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config_reference():
    return _script("config_reference")


def test_configuration_reference_is_up_to_date():
    ref = _config_reference()
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert ref.render() == committed, (
        "docs/configuration.md differs from what omni/config.py generates (a default, type or description "
        "changed): run `.venv/bin/python scripts/config_reference.py` and commit docs/configuration.md")


# ------------------------------------------------------------------ links

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _links(text: str) -> list[str]:
    text = _FENCE.sub("", text)
    text = _CODE_SPAN.sub("", text)
    return _LINK.findall(text)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (duplicates get -1, -2, ...)."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in text.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _broken_links(md: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in _links(md.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (md.parent / path_part).resolve() if path_part else md
        if not dest.is_relative_to(root.resolve()):
            # outside the repository: only ../shared (beside every checkout and CI run), when present
            shared = (root.parent / "shared").resolve()
            if dest.is_relative_to(shared) and not shared.is_dir():
                continue
        if not dest.exists():
            broken.append(f"{target}: no such file {dest}")
        elif anchor and dest.suffix == ".md" and dest.is_file() and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return broken


@pytest.mark.parametrize("md", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(md):
    broken = _broken_links(md)
    assert not broken, f"{md.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)


def test_link_checker_finds_a_broken_link(tmp_path):
    """The checker itself: a missing file and a missing anchor are reported, code is not read."""
    (tmp_path / "a.md").write_text("# Title\n\n[ok](b.md#part) [gone](c.md) [bad](b.md#nope)\n"
                                   "`[code](d.md)`\n```\n[fenced](e.md)\n```\n[web](https://example.org/x)\n")
    (tmp_path / "b.md").write_text("## Part\n")
    broken = _broken_links(tmp_path / "a.md", root=tmp_path)
    assert [b.split(":")[0] for b in broken] == ["c.md", "b.md#nope"]


def test_readme_is_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): it is for users; move detail into docs/ "
        "and link it")


def _result_tables():
    return _script("result_tables")


def test_quoted_result_tables_match_their_result_files():
    mod = _result_tables()
    stale = [d.name for d in mod.documents() if mod.filled(d.read_text()) != d.read_text()]
    assert not stale, f"{stale}: a quoted result table differs from its file: run `.venv/bin/python scripts/result_tables.py`"
    quoting = [d.name for d in mod.documents() if mod.BLOCK.search(d.read_text())]
    assert {"README.md", "performance.md"} <= set(quoting)


def test_a_quoted_table_follows_its_file(tmp_path, monkeypatch):
    mod = _result_tables()
    (tmp_path / "t.md").write_text("| world | top1 |\n|---|---|\n| a | 1 |\n| MEAN | 2 |\n")
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    doc = "x\n<!-- table: t.md rows: MEAN -->\n| stale |\n<!-- end table -->\ny\n"
    assert mod.filled(doc) == "x\n<!-- table: t.md rows: MEAN -->\n| world | top1 |\n|---|---|\n| MEAN | 2 |\n<!-- end table -->\ny\n"
