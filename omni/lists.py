"""Readers for target lists and crawl lists in the formats users already hold.

A crawl list is untrusted: a row that cannot be used gets a reason (``query_error``) instead
of failing the list, expansion of MMAction2 untrimmed records is bounded, and a list column
whose name omni itself uses (``source``, ``kind``, ``item_id``, ``status``, ...) is carried
under ``list_<name>`` instead of colliding.
"""
from __future__ import annotations

import gzip
import io
import json
import math
from pathlib import Path

import pandas as pd

from .fetch import url_scheme

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".txt", ".lst", ".list")
MAX_CLIPS_PER_RECORD = 10_000  # an MMAction2 untrimmed record expands to at most this many rows
MAX_EXPANDED_ROWS = 1_000_000  # and a whole list to at most this many
MAX_LIST_TEXT_BYTES = 1 << 30  # a compressed list decompresses to at most this much text
# columns that ingest, extract and the manifests add: a list's own column of that name is renamed
RESERVED_COLUMNS = {
    "item_id", "source", "kind", "query_error", "list_file", "list_row", "label", "status", "reason", "sha256",
    "path", "file_type", "nbytes", "http_status", "tries", "width", "height", "duration_s", "fps", "codec",
    "thumbs", "leak_of", "leak_similarity", "duplicate_of", "split", "sample_id", "clip_index", "start_s",
    "end_s", "shard", "offset", "t", "h", "w", "teacher", "teacher_label", "teacher_score", "ingest_status",
    "ingest_reason", "extract_status", "extract_reason", "filter_status", "filter_reason", "row_error",
    "filter_label", "train_label", "query_rank", "top_score", "teacher_probs", "judge_probs", "checked_this_run",
    "fetched_this_run", "elapsed_s", "items_per_s",
}


class ListError(ValueError):
    """A list file that cannot be read, with the file and the reason."""


def _strip_gz(path: Path) -> tuple[str, bool]:
    name = path.name.lower()
    if name.endswith(".gz"):
        return Path(name[:-3]).suffix, True
    return path.suffix.lower(), False


def _read_bytes(path: Path, gz: bool) -> bytes:
    """A list file's bytes (decompressed, with a cap); anything but a regular file (a FIFO, a
    device) is refused rather than read, since reading one can block for ever."""
    if not path.is_file():
        raise ListError(f"{path}: not a regular file")
    if not gz:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:  # read with a cap: a small .gz can hold a huge text
            raw = fh.read(MAX_LIST_TEXT_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise ListError(f"{path}: not a readable gzip file: {exc}") from None
    if len(raw) > MAX_LIST_TEXT_BYTES:
        raise ListError(f"{path}: decompresses to more than {MAX_LIST_TEXT_BYTES >> 20} MB")
    return raw


def _read_text(path: Path, gz: bool) -> str:
    """A list file's text (UTF-8)."""
    raw = _read_bytes(path, gz)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ListError(f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                        "save the list as UTF-8") from None


def _is_index(text: str) -> bool:
    """An integer written in ASCII digits (``str.isdigit`` also accepts '²', which ``int`` refuses)."""
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def _label_to_name(value, class_names: list[str], where: str) -> str:
    """A label given as a class name or as a 0-based index, returned as the class name."""
    if isinstance(value, bool):
        raise ListError(f"{where}: label {value!r} is neither a class name nor an index")
    if isinstance(value, str):
        text = value.strip()
        if text in class_names:
            return text
        if _is_index(text):
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
    return len(parts) == 2 and _is_index(parts[1]) and "," not in line


def _read_table(path: Path, class_names: list[str] | None = None) -> pd.DataFrame:
    suffix, gz = _strip_gz(path)
    try:
        if suffix == ".parquet":
            return pd.read_parquet(io.BytesIO(_read_bytes(path, gz)) if gz else path)
        text = _read_text(path, gz)
        if not text.strip():
            raise ListError(f"{path}: the list is empty")
        if suffix in (".jsonl", ".ndjson"):
            return _read_jsonl(text, path)
        if suffix == ".json":
            data = json.loads(text)
            if isinstance(data, dict):
                data = data.get("items", data.get("data", [data]))
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise ListError(f"{path}: a .json list must hold a list of records (objects)")
            if data and all("video_dir" in r for r in data):
                return _expand_mmaction_untrimmed(data, path.parent)
            return pd.DataFrame.from_records(data)
        if suffix == ".tsv":
            return pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
        if suffix == ".csv":
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        # plain text: one URL per line, or MMAction2's "path label_index"
        lines = [ln.strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        if lines and all(_is_mmaction_line(ln) for ln in lines):
            rows = [ln.rsplit(None, 1) for ln in lines]
            return pd.DataFrame({"url": [r[0] for r in rows], "query": [int(r[1]) for r in rows]})
        return pd.DataFrame({"url": lines})
    except ListError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise ListError(f"{path}: cannot read as {suffix or 'text'} list: {exc}") from exc


def _read_jsonl(text: str, path: Path) -> pd.DataFrame:
    """One JSON object per line, values as they are (a huge integer stays a Python int: a bad row
    for the row's own reason, not a list that cannot be read)."""
    records = []
    # lines end at \n only: U+2028, U+0085 and friends are legal raw inside a JSON string
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise ListError(f"{path}:{n}: cannot read as .jsonl list: {exc}") from None
        if not isinstance(rec, dict):
            raise ListError(f"{path}:{n}: cannot read as .jsonl list: each line must be a JSON object, "
                            f"got {type(rec).__name__}")
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _expand_mmaction_untrimmed(records: list[dict], base: Path) -> pd.DataFrame:
    """MMAction2 untrimmed records over pre-cut ``part_{i}.mp4`` files, one row per part.

    A record that cannot be expanded (no ``video_dir`` or ``label``, a bad or too large
    ``num_clips``) becomes one row with ``row_error`` saying why."""
    rows = []
    for rec in records:
        clips, error = _num_clips(rec)
        if error:
            rows.append({"url": str(rec.get("video_dir") or ""), "query": rec.get("label", ""),
                         "video_dir": rec.get("video_dir"), "row_error": error})
            continue
        inds = rec.get("positive_clip_inds") or []
        positives = set(inds) if isinstance(inds, list) else set()
        if len(rows) + clips > MAX_EXPANDED_ROWS:
            raise ListError(f"untrimmed records expand to more than {MAX_EXPANDED_ROWS:,} rows")
        for i in range(clips):
            rows.append({
                "url": str(Path(rec["video_dir"]) / f"part_{i}.mp4"),
                "query": rec["label"],
                "video_dir": rec["video_dir"],
                "part_index": i,
                "listed_positive": i in positives,
            })
    return pd.DataFrame(rows)


def _num_clips(rec: dict) -> tuple[int, str]:
    """A record's clip count, or an error for a record that cannot be expanded."""
    if not isinstance(rec.get("video_dir"), str) or not rec["video_dir"].strip():
        return 0, "bad list row: no video_dir"
    if "label" not in rec:
        return 0, "bad list row: no label"
    n = rec.get("num_clips", 0)
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n != int(n) or n < 0:
        return 0, f"bad list row: num_clips {str(n)[:30]!r} is not a count"
    if n > MAX_CLIPS_PER_RECORD:
        shown = f"{n:g}" if isinstance(n, float) else str(n)
        return 0, f"bad list row: num_clips {shown} > {MAX_CLIPS_PER_RECORD} (limit per record)"
    return int(n), ""


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
    if not path.is_file():
        raise ListError(f"{path}: not a regular file or folder")
    return [path]


def _resolve_local(url: str, base: Path) -> str:
    """Plain relative paths are taken relative to the list's folder; URLs (any ``scheme:``,
    ``data:`` and ``javascript:`` included) and empty values are kept as they are."""
    if not url or url_scheme(url):
        return url
    p = Path(url).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _cell_text(value) -> str:
    """A list cell as text: missing values (None, NaN) are empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _rename_reserved(df: pd.DataFrame, keep: frozenset = frozenset({"row_error"}),
                     also: frozenset = frozenset()) -> pd.DataFrame:
    """A list column named like one of omni's own (or ``url``/``query`` when other columns play
    those parts, or one of ``also``), but not one of ``keep``, is carried as ``list_<name>``
    (``list_list_<name>`` if that is taken too)."""
    renames = {}
    for col in df.columns:
        if col in RESERVED_COLUMNS | {"url", "query"} | also and col not in keep:
            new = f"list_{col}"
            while new in df.columns or new in renames.values():
                new = f"list_{new}"
            renames[col] = new
    return df.rename(columns=renames)


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
        if df.empty:  # a header, comments or [] only: no rows to check
            continue
        df.columns = [str(c) for c in df.columns]
        url_col = url_column if url_column in df.columns else "url"  # plain text lists: one "url" column
        if url_col not in df.columns or (url_col != url_column and df.shape[1] != 1):
            raise ListError(f"{file}: no {url_column!r} column (columns: {list(df.columns)[:20]})")
        if query_column not in df.columns and default_query is None:
            raise ListError(f"{file}: no {query_column!r} column and no `query` set for this source")
        df = _rename_reserved(df.rename(columns={url_col: "\0url", query_column: "\0query"}))
        df = df.rename(columns={"\0url": "url", "\0query": "query"})
        if "query" not in df.columns:
            df["query"] = default_query
        df["list_file"] = str(file)
        df["list_row"] = range(len(df))
        df["url"] = [_resolve_local(_cell_text(u), file.parent) for u in df["url"]]
        frames.append(df)
    if not frames:
        raise ListError(f"{path}: the list has no rows")
    df = pd.concat(frames, ignore_index=True)
    row_errors = df.pop("row_error").fillna("").tolist() if "row_error" in df.columns else [""] * len(df)
    names, errors = [], []
    for i, (q, row_error) in enumerate(zip(df["query"].tolist(), row_errors)):
        try:
            names.append(_label_to_name(q, class_names, f"row {i}"))
            errors.append(row_error)
        except ListError as exc:
            names.append(_cell_text(q))
            errors.append(row_error or f"unknown query class: {exc}")
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
    try:
        df = _read_target_table(path)
    except ListError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise ListError(f"{path}: cannot read as a target list: {exc}") from exc
    if df.empty:
        raise ListError(f"{path}: the list is empty")
    df.columns = [str(c) for c in df.columns]
    # a list column named like one of omni's own (split, item_id, url, status, ...) is carried as list_<name>
    df = _rename_reserved(df, keep=frozenset({"path", "label"}), also=frozenset({"label_name"}))
    base = path.parent
    df["path"] = [_resolve_local(_cell_text(p), base) for p in df["path"]]
    df["label_name"] = [_label_to_name(v, class_names, f"{path} row {i}") for i, v in enumerate(df["label"])]
    df["label"] = [class_names.index(n) for n in df["label_name"]]
    return df[["path", "label", "label_name"] + [c for c in df.columns if c not in ("path", "label", "label_name")]]


def _read_target_table(path: Path) -> pd.DataFrame:
    suffix, gz = _strip_gz(path)
    if suffix == ".parquet":
        df = pd.read_parquet(io.BytesIO(_read_bytes(path, gz)) if gz else path)
        _require_columns(df, path)
        return df
    text = _read_text(path, gz)
    if not text.strip():
        raise ListError(f"{path}: the list is empty")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if suffix in (".csv", ".tsv") or "," in first:
        sep = "\t" if suffix == ".tsv" else ","
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
        _require_columns(df, path)
        return df
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if not _is_mmaction_line(line.strip()):
            raise ListError(f"{path}:{n}: expected 'path label_index', got {line[:200]!r}")
        p, lab = line.strip().rsplit(None, 1)
        rows.append({"path": p, "label": lab})
    return pd.DataFrame(rows, columns=["path", "label"])


def _require_columns(df: pd.DataFrame, path: Path) -> None:
    missing = {"path", "label"} - set(map(str, df.columns))
    if missing:
        raise ListError(f"{path}: missing column(s) {sorted(missing)} (columns: {list(df.columns)[:20]})")
