"""Fill the result tables in README.md and docs/*.md from the result files they quote.

    .venv/bin/python scripts/result_tables.py           # rewrite every quoted block
    .venv/bin/python scripts/result_tables.py --check   # exit 1 if a block is out of date

A block is written as

    <!-- table: benchmarks/results/<run>/table.md rows: MEAN -->
    ...
    <!-- end table -->

and holds the source table's header and the rows whose first cell starts with ``rows:`` (every
row without it). Nothing between the markers is written by hand: rerun this after a benchmark
rewrites its table (tests/test_docs.py fails until the committed files match).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- table: (?P<src>\S+)(?: rows: (?P<rows>[^>]*?))? -->\n)(?P<body>.*?)(<!-- end table -->)",
                   re.S)


def quoted(src: str, rows: str | None) -> str:
    """The header and the chosen rows of a Markdown table file under the repository."""
    lines = [ln for ln in (ROOT / src).read_text().splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        raise ValueError(f"{src}: no Markdown table")
    prefix = (rows or "").strip()
    body = [ln for ln in lines[2:] if ln.strip("| ").startswith(prefix)]
    if not body:
        raise ValueError(f"{src}: no row starts with {prefix!r}")
    return "\n".join(lines[:2] + body) + "\n"


def filled(text: str) -> str:
    return BLOCK.sub(lambda m: m[1] + quoted(m["src"], m["rows"]) + m[5], text)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a quoted table is out of date")
    args = ap.parse_args(argv)
    stale = []
    for doc in documents():
        text = doc.read_text()
        new = filled(text)
        if new != text:
            stale.append(doc.relative_to(ROOT).as_posix())
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        print("out of date: " + ", ".join(stale) + " (run .venv/bin/python scripts/result_tables.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
