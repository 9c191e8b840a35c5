"""Write docs/configuration.md, the configuration reference, from omni/config.py's models.

    .venv/bin/python scripts/config_reference.py            # rewrite docs/configuration.md
    .venv/bin/python scripts/config_reference.py --check    # exit 1 if it is out of date
    .venv/bin/python scripts/config_reference.py --stdout   # print it instead

Every field of the root model (``omni.config.Config``, what ``load_config`` returns) is listed
with its dotted name, type (with its bounds), default and description, one section per config
section and one table per model (nested models such as ``train.model`` get their own). Defaults
are read from a default instance, so a section whose default differs from its class's own
(``teacher.image``) shows what a run really gets. Nothing here is written by hand: change a
default or a description in omni/config.py and run this again (tests/test_docs.py fails until
the committed file matches).
"""
from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from pathlib import Path

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from omni import config as omni_config  # noqa: E402

OUT = ROOT / "docs" / "configuration.md"
REQUIRED = object()


def _runtime_only() -> frozenset[str]:
    """Dotted settings that are in no cache key (``omni.pipeline.RUNTIME_ONLY``)."""
    from omni.pipeline import RUNTIME_ONLY
    return frozenset(RUNTIME_ONLY)


# ------------------------------------------------------------------ text helpers

def _md(text: str) -> str:
    """Docstring or description text as Markdown: reST ``code`` to `code`, lines joined."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped."""
    return " ".join(_md(text).split()).replace("|", "\\|")


def _doc(cls: type) -> str:
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return ""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _heading(name: str) -> str:
    return f"`{name}`"


def _link(name: str) -> str:
    return f"[`{name}`](#{anchor(_heading(name))})"


# ------------------------------------------------------------------ types

def _bounds(metadata) -> list[str]:
    out = []
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            out.append(f"≥ {m.ge}")
        elif isinstance(m, annotated_types.Gt):
            out.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Le):
            out.append(f"≤ {m.le}")
        elif isinstance(m, annotated_types.Lt):
            out.append(f"< {m.lt}")
        elif getattr(m, "pattern", None):
            out.append(f"matching `{m.pattern}`")
    return out


def _choices(values) -> str:
    return " / ".join(f"`{v}`" for v in values)


def _type(ann, metadata=(), inner: bool = False) -> str:
    """A type annotation in words (no pipes: the result goes into a table cell); ``inner``: inside
    a list or mapping, where choices read as `a` / `b` without "one of"."""
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        base, *meta = args
        extra = [m for info in meta for m in (info.metadata if isinstance(info, FieldInfo) else [info])]
        return _type(base, extra, inner)
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("`null`")
        text = " or ".join(parts)
    elif origin is typing.Literal:
        text = ("one of " + _choices(args) if len(args) > 1 else f"`{args[0]}`") if not inner else _choices(args)
    elif origin is list:
        (item,) = args
        if inspect.isclass(item) and issubclass(item, BaseModel):
            text = "list of entries (table below)"
        elif typing.get_origin(item) is tuple:
            text = f"list of {_type(item, inner=True)} pairs"
        else:
            text = f"list of {_type(item, inner=True)}"
    elif origin is tuple:
        text = "[" + ", ".join(_type(a, inner=True) for a in args) + "]"
    elif origin is dict:
        key, value = args
        text = f"mapping from {_type(key, inner=True)} to {_type(value, inner=True)}"
    elif inspect.isclass(ann) and issubclass(ann, BaseModel):
        text = "section (table below)"
    elif ann is Path:
        text = "path"
    elif ann in (int, float, str, bool):
        text = ann.__name__
    else:
        text = str(ann).replace("typing.", "")
    bounds = _bounds(metadata)
    return f"{text} ({', '.join(bounds)})" if bounds else text


# ------------------------------------------------------------------ defaults

def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _plain(value):
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def _default(value) -> str:
    if value is REQUIRED:
        return "**required**"
    if isinstance(value, (list, tuple, dict)):
        text = yaml.safe_dump(_plain(value), default_flow_style=True, sort_keys=False, width=10_000).strip()
        return f"`{text}`"
    return f"`{_scalar(value)}`".replace("|", "\\|")


# ------------------------------------------------------------------ tables

class Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.runtime_only = _runtime_only()
        self.first_of: dict[type, str] = {}  # model class -> the dotted name it was first described under

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def model(self, cls: type[BaseModel], prefix: str, instance, level: int, row_prefix: str | None = None) -> None:
        """A heading, the class's docstring and a table of its fields, then its nested models."""
        row_prefix = prefix if row_prefix is None else row_prefix
        self.add("#" * level + " " + _heading(prefix), "")
        self.add(f"Class `{cls.__name__}` in `omni/config.py`.", "")
        if cls in self.first_of:
            self.add(f"The same fields as {_link(self.first_of[cls])}; see there for what the class is.", "")
        else:
            self.first_of[cls] = prefix
            doc = _doc(cls)
            if doc:
                self.add(_md(doc), "")
        if instance is not None and type(instance) is cls:
            try:
                own = cls()
            except Exception:
                own = None
            if own is not None:
                differ = [n for n in cls.model_fields if getattr(instance, n) != getattr(own, n)]
                if differ:
                    names = [f"`{n}`" for n in differ]
                    names = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
                    self.add(f"Here the defaults of {names} differ from "
                             f"`{cls.__name__}`'s own (the table shows the ones this section gets).", "")
        self.add("| setting | type | default | description |", "|---|---|---|---|")
        nested = []
        for name, field in cls.model_fields.items():
            dotted = f"{row_prefix}.{name}" if row_prefix else name
            if instance is not None:
                value = getattr(instance, name)
            elif field.is_required():
                value = REQUIRED
            else:
                value = field.get_default(call_default_factory=True)
            ann = field.annotation
            sub = _model_of(ann)
            description = _cell(field.description or "")
            if dotted in self.runtime_only:
                description = (description + " " if description else "") + "*Runtime only: in no cache key.*"
            if sub is not None:
                nested.append((name, sub, value, ann))
                default = "see " + _link(dotted if typing.get_origin(ann) is not list else f"{dotted}[]")
            else:
                default = _default(value)
            self.add(f"| `{dotted}` | {_type(ann, field.metadata)} | {default} | {description} |")
        self.add("")
        for name, sub, value, ann in nested:
            dotted = f"{prefix}.{name}"
            if typing.get_origin(ann) is list:
                self.model(sub, f"{dotted}[]", None, level + 1)
            else:
                self.model(sub, dotted, value if isinstance(value, BaseModel) else None, level + 1)


def _model_of(ann) -> type[BaseModel] | None:
    """The model class a field holds (directly or as a list of them), else None."""
    if inspect.isclass(ann) and issubclass(ann, BaseModel):
        return ann
    if typing.get_origin(ann) is list:
        (item,) = typing.get_args(ann)
        if inspect.isclass(item) and issubclass(item, BaseModel):
            return item
    return None


def render() -> str:
    root = omni_config.Config
    w = Writer()
    w.add(
        "<!-- Generated by scripts/config_reference.py from omni/config.py. Do not edit: change the models",
        "     and run `.venv/bin/python scripts/config_reference.py` (tests/test_docs.py checks it). -->",
        "",
        "# Configuration reference",
        "",
        "Every setting of an omni config, generated from the pydantic models in `omni/config.py`",
        f"(`{root.__name__}`, what `omni.config.load_config` returns). A config is a YAML file; only",
        "`workdir`, `classes`, `target` and `sources` are needed, every other setting has the default",
        "shown here. Relative paths are relative to the config file. Unknown keys and wrong types are",
        "rejected with a message naming the key. `--set section.key=value` overrides any setting from",
        "the command line (the value is read as YAML; list entries by index: `--set sources.0.list=...`).",
        "",
        "What the settings do and what was measured with them: [settings.md](settings.md). Settings",
        "marked *runtime only* change how fast or where work runs, never what it computes: they are in",
        "no cache key ([caching.md](caching.md)).",
        "",
    )
    top = [n for n, f in root.model_fields.items() if _model_of(f.annotation) is None]
    sections = [n for n in root.model_fields if n not in top]
    heads = [f"{n}[]" if typing.get_origin(root.model_fields[n].annotation) is list else n for n in sections]
    w.add("Sections: " + ", ".join(["[top level](#top-level)"] + [_link(h) for h in heads]) + ".", "")

    w.add("## Top level", "")
    w.add(f"Class `{root.__name__}` in `omni/config.py`.", "")
    doc = _doc(root)
    if doc:
        w.add(_md(doc), "")
    w.add("| setting | type | default | description |", "|---|---|---|---|")
    for name in top:
        field = root.model_fields[name]
        value = REQUIRED if field.is_required() else field.get_default(call_default_factory=True)
        w.add(f"| `{name}` | {_type(field.annotation, field.metadata)} | {_default(value)} | "
              f"{_cell(field.description or '')} |")
    w.add("")
    for name in sections:
        field = root.model_fields[name]
        sub = _model_of(field.annotation)
        if typing.get_origin(field.annotation) is list:
            w.model(sub, f"{name}[]", None, 2, row_prefix=f"{name}[]")
        else:
            instance = None if field.is_required() else field.get_default(call_default_factory=True)
            w.model(sub, name, instance, 2)
    return "\n".join(w.lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    ap.add_argument("--stdout", action="store_true", help="print the reference instead of writing it")
    args = ap.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/config_reference.py",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
