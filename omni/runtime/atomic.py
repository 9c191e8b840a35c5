"""Write a file so that readers see the old version or the new one, never half of one."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the result onto ``path`` (same folder, same disk)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default)))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _parquet_writable(col) -> bool:
    """Whether Parquet can hold a column of nested values as they are (a list mixing types, or
    records without fields or with varying field types, cannot)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.write_table(pa.table({"c": pa.array(col, from_pandas=True)}), pa.BufferOutputStream())
        return True
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return False


def write_parquet_atomic(df, path: str | Path) -> Path:
    """A DataFrame as Parquet; object columns holding mixed Python types are stored as text, and
    nested values Parquet cannot hold (a crawl list's own odd columns) as JSON text."""
    df = df.copy()
    as_json = lambda v: None if _missing(v) else json.dumps(v, default=str, sort_keys=True)  # noqa: E731
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col] if not _missing(v)}
            if kinds & {dict, tuple, set}:  # records as JSON text: Parquet would merge their fields
                df[col] = df[col].map(as_json)
            elif len(kinds) > 1 and not kinds <= {list, np.ndarray}:
                df[col] = df[col].map(lambda v: None if _missing(v) else str(v))
            elif not kinds <= {str, bytes, bool, float, np.ndarray} and not _parquet_writable(df[col]):
                df[col] = df[col].map(as_json)  # a list mixing types, an integer past 64 bits
    return write_atomic(path, lambda p: df.to_parquet(p, index=False))


def concat_parquet_atomic(parts: list[Path], path: str | Path, empty=None) -> Path:
    """The rows of several Parquet files, in order, as one file; one part in memory at a time.
    ``empty`` (a DataFrame) is written when there are no parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not parts:
        return write_parquet_atomic(empty, path)
    schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in parts], promote_options="permissive")

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                table = pq.read_table(part).replace_schema_metadata(None)
                for name in schema.names:  # a column a part lacks is null there
                    if name not in table.column_names:
                        table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
                writer.write_table(table.select(schema.names).cast(schema))

    return write_atomic(path, write)


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a Python file, so that a full disk is the ``OSError`` it is (torch's
    own writer reports it as ``RuntimeError: ... unexpected pos``)."""
    import torch

    def save(p: Path) -> None:
        with open(p, "wb") as fh:
            try:
                torch.save(obj, fh)
            except RuntimeError as exc:
                if isinstance(exc.__context__, OSError):
                    raise exc.__context__ from None
                raise

    return write_atomic(path, save)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)
