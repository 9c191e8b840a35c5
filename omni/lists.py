"""Readers for target lists and crawl lists in the formats users already hold."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pandas as pd

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".txt", ".lst", ".list")


class ListError(ValueError):
    """A list file that cannot be read, with the file and the reason."""


def _strip_gz(path: Path) -> tuple[str, bool]:
    name = path.name.lower()
    if name.endswith(".gz"):
        return Path(name[:-3]).suffix, True
    return path.suffix.lower(), False


def _read_text(path: Path, gz: bool) -> str:
    raw = path.read_bytes()
    if gz:
        raw = gzip.decompress(raw)
    return raw.decode("utf-8-sig")


def _label_to_name(value, class_names: list[str], where: str) -> str:
    """A label given as a class name or as a 0-based index, returned as the class name."""
    if isinstance(value, str):
        text = value.strip()
        if text in class_names:
            return text
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            raise ListError(f"{where}: unknown class {text!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if 0 <= value < len(class_names):
            return class_names[value]
        raise ListError(f"{where}: class index {value} out of range 0..{len(class_names) - 1}")
    raise ListError(f"{where}: label {value!r} is neither a class name nor an index")


def _is_mmaction_line(line: str) -> bool:
    parts = line.rsplit(None, 1)
    return len(parts) == 2 and parts[1].lstrip("-").isdigit() and "," not in line


def _read_table(path: Path, class_names: list[str] | None = None) -> pd.DataFrame:
    suffix, gz = _strip_gz(path)
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(io.StringIO(_read_text(path, gz)), lines=True, dtype=False)
        if suffix == ".json":
            data = json.loads(_read_text(path, gz))
            if isinstance(data, dict):
                data = data.get("items", data.get("data", [data]))
            if data and all(isinstance(r, dict) and "video_dir" in r for r in data):
                return _expand_mmaction_untrimmed(data, path.parent)
            return pd.DataFrame.from_records(data)
        if suffix == ".tsv":
            return pd.read_csv(io.StringIO(_read_text(path, gz)), sep="\t", dtype=str, keep_default_na=False)
        if suffix == ".csv":
            return pd.read_csv(io.StringIO(_read_text(path, gz)), dtype=str, keep_default_na=False)
        # plain text: one URL per line, or MMAction2's "path label_index"
        lines = [ln.strip() for ln in _read_text(path, gz).splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        if lines and all(_is_mmaction_line(ln) for ln in lines):
            rows = [ln.rsplit(None, 1) for ln in lines]
            return pd.DataFrame({"url": [r[0] for r in rows], "query": [int(r[1]) for r in rows]})
        return pd.DataFrame({"url": lines})
    except ListError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise ListError(f"{path}: cannot read as {suffix or 'text'} list: {exc}") from exc


def _expand_mmaction_untrimmed(records: list[dict], base: Path) -> pd.DataFrame:
    """MMAction2 untrimmed records over pre-cut ``part_{i}.mp4`` files, one row per part."""
    rows = []
    for rec in records:
        positives = set(rec.get("positive_clip_inds", []))
        for i in range(int(rec.get("num_clips", 0))):
            rows.append({
                "url": str(Path(rec["video_dir"]) / f"part_{i}.mp4"),
                "query": rec["label"],
                "video_dir": rec["video_dir"],
                "part_index": i,
                "listed_positive": i in positives,
            })
    return pd.DataFrame(rows)


def list_files(path: Path) -> list[Path]:
    """A list path, or every list file inside a folder (sorted, recursive)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and _strip_gz(p)[0] in TABLE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise ListError(f"{path}: folder holds no list files ({', '.join(TABLE_SUFFIXES)})")
        return files
    if not path.exists():
        raise ListError(f"list not found: {path}")
    return [path]


def _resolve_local(url: str, base: Path) -> str:
    """Plain relative paths are taken relative to the list's folder; URLs are kept."""
    if "://" in url:
        return url
    p = Path(url).expanduser()
    return str(p if p.is_absolute() else (base / p))


def read_crawl_list(
    path: str | Path,
    class_names: list[str],
    url_column: str = "url",
    query_column: str = "query",
    default_query: str | None = None,
) -> pd.DataFrame:
    """Read a crawl list into rows of ``url``, ``query`` (a class name) and ``list_row``.

    Extra columns are carried through. Rows whose query is not a known class are kept with
    ``query_error`` set so that ingest can record the reason instead of crashing.
    """
    frames = []
    for file in list_files(Path(path)):
        df = _read_table(file, class_names)
        if url_column not in df.columns:
            if df.shape[1] == 1 and df.columns[0] == "url":
                pass
            else:
                raise ListError(f"{file}: no {url_column!r} column (columns: {list(df.columns)})")
        df = df.rename(columns={url_column: "url"})
        if query_column in df.columns and query_column != "query":
            df = df.rename(columns={query_column: "query"})
        if "query" not in df.columns:
            if default_query is None:
                raise ListError(f"{file}: no {query_column!r} column and no `query` set for this source")
            df["query"] = default_query
        df["list_file"] = str(file)
        df["list_row"] = range(len(df))
        df["url"] = [_resolve_local(str(u).strip(), file.parent) for u in df["url"]]
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    names, errors = [], []
    for i, q in enumerate(df["query"].tolist()):
        try:
            names.append(_label_to_name(q, class_names, f"row {i}"))
            errors.append("")
        except ListError as exc:
            names.append(str(q))
            errors.append(f"unknown query class: {exc}")
    df["query"] = names
    df["query_error"] = errors
    return df


def read_target_list(path: str | Path, class_names: list[str]) -> pd.DataFrame:
    """Read a target list (CSV ``path,label`` or MMAction2 ``path label_index``).

    Returns ``path`` (absolute), ``label`` (index) and ``label_name``.
    """
    path = Path(path)
    if not path.is_file():
        raise ListError(f"target list not found: {path}")
    suffix, gz = _strip_gz(path)
    text = _read_text(path, gz)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if suffix in (".csv", ".tsv") or "," in first:
        sep = "\t" if suffix == ".tsv" else ","
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
        missing = {"path", "label"} - set(df.columns)
        if missing:
            raise ListError(f"{path}: missing column(s) {sorted(missing)} (columns: {list(df.columns)})")
    elif suffix in (".parquet",):
        df = pd.read_parquet(path)
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            if not _is_mmaction_line(line.strip()):
                raise ListError(f"{path}:{n}: expected 'path label_index', got {line!r}")
            p, lab = line.strip().rsplit(None, 1)
            rows.append({"path": p, "label": lab})
        df = pd.DataFrame(rows, columns=["path", "label"])
    if df.empty:
        raise ListError(f"{path}: the list is empty")
    base = path.parent
    df["path"] = [_resolve_local(str(p).strip(), base) for p in df["path"]]
    df["label_name"] = [_label_to_name(v, class_names, f"{path} row {i}") for i, v in enumerate(df["label"])]
    df["label"] = [class_names.index(n) for n in df["label_name"]]
    return df[["path", "label", "label_name"] + [c for c in df.columns if c not in ("path", "label", "label_name")]]
