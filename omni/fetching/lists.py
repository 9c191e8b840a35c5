"""Readers for target lists and crawl lists in the formats users already hold.

A crawl list is untrusted: a row that cannot be used gets a reason (``query_error``) instead
of failing the list, text lists are read in pieces with every row and cell bounded in size
(``MAX_LIST_ROW_BYTES``, ``MAX_LIST_CELL_BYTES``), expansion of MMAction2 untrimmed records is
bounded, and a list column whose name omni itself uses (``source``, ``kind``, ``item_id``,
``status``, ...) is carried under ``list_<name>`` instead of colliding.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import re
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pandas as pd

from .fetch import url_scheme

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".txt", ".lst", ".list")
MAX_CLIPS_PER_RECORD = 10_000  # an MMAction2 untrimmed record expands to at most this many rows
MAX_EXPANDED_ROWS = 1_000_000  # and a whole list to at most this many
MAX_LIST_TEXT_BYTES = 1 << 30  # a compressed list decompresses to at most this much text
# A row of a list (a CSV/TSV record, a JSONL or text line, a JSON record) of more bytes is a bad
# row: text lists are read in pieces and such a row is never held whole (one 200 MB CSV cell cost
# 1.7 GB to read). A cell of more bytes (UTF-8; a nested JSON value as JSON text) makes its row
# a bad row too, and is emptied. Both leave the rest of the list as it is.
MAX_LIST_ROW_BYTES = 256 * 1024
MAX_LIST_CELL_BYTES = 64 * 1024
_READ_BYTES = 1 << 20  # list files are read this many bytes at a time
_JSON_READ_BYTES = 1 << 18  # (.json: scanned vectorised, a few arrays of this many items)
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


@contextlib.contextmanager
def _open_list(path: Path, gz: bool) -> Iterator[BinaryIO]:
    """A list file to read in pieces, past a UTF-8 byte order mark (a .gz one decompressed into a
    temporary file, with the cap); anything but a regular file is refused rather than read."""
    if not path.is_file():
        raise ListError(f"{path}: not a regular file")
    if not gz:
        with open(path, "rb") as fh:
            _skip_bom(fh)
            yield fh
        return
    with tempfile.TemporaryFile() as tmp:
        total = 0
        try:
            with gzip.open(path, "rb") as src:
                while chunk := src.read(_READ_BYTES):
                    total += len(chunk)
                    if total > MAX_LIST_TEXT_BYTES:
                        raise ListError(f"{path}: decompresses to more than {MAX_LIST_TEXT_BYTES >> 20} MB")
                    tmp.write(chunk)
        except (OSError, EOFError) as exc:
            raise ListError(f"{path}: not a readable gzip file: {exc}") from None
        tmp.seek(0)
        _skip_bom(tmp)
        yield tmp


def _skip_bom(fh: BinaryIO) -> None:
    if fh.read(3) != b"\xef\xbb\xbf":
        fh.seek(0)


def _decode(raw: bytes, offset: int, path: Path) -> str:
    """A row's text (UTF-8); ``offset``: where the row starts in the file, for the message."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ListError(f"{path}: not UTF-8 text (byte {offset + exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                        "save the list as UTF-8") from None


class _TooLong:
    """A row of more than ``MAX_LIST_ROW_BYTES``: its size, where it is and its first bytes."""

    def __init__(self, nbytes: int, where: str, head: bytes):
        self.nbytes, self.where, self.head = nbytes, where, head

    @property
    def reason(self) -> str:
        return f"bad list row: {self.where}: {self.nbytes:,} bytes > {MAX_LIST_ROW_BYTES:,} (limit per row)"


class _Row:
    """The bytes of one row as the file is read, kept only while within ``MAX_LIST_ROW_BYTES``."""

    def __init__(self, start: int):
        self.start, self.nbytes, self.parts, self.head = start, 0, [], b""

    def add(self, data: bytes) -> None:
        if len(self.head) < 256:
            self.head += data[:256 - len(self.head)]
        self.nbytes += len(data)
        if self.nbytes <= MAX_LIST_ROW_BYTES:
            self.parts.append(data)
        else:
            self.parts = []

    def finish(self, where: str) -> bytes | _TooLong:
        return _TooLong(self.nbytes, where, self.head) if self.nbytes > MAX_LIST_ROW_BYTES else b"".join(self.parts)


def _lines(fh: BinaryIO, ends: str, group: bool = False) -> Iterator[tuple[int, int, bytes | _TooLong]]:
    """``(line number, offset, line)`` of a file read in pieces, each line without its end
    (``lines``: CR, LF or CRLF; ``jsonl``: LF only), a ``_TooLong`` past the row limit. With
    ``group`` (``lines``), the whole lines of a piece within the limit come together, with their
    ends."""
    number, pos, skip_lf = 1, fh.tell(), False
    row = _Row(pos)
    while chunk := fh.read(_READ_BYTES):
        if skip_lf and chunk[:1] == b"\n":  # the LF of a CRLF cut between two pieces
            chunk, pos, row.start = chunk[1:], pos + 1, row.start + 1
        if ends == "lines":
            pieces = chunk.splitlines(keepends=True)
        else:  # (split drops the LFs: every piece but the last ended with one)
            pieces = chunk.split(b"\n")
            pieces = [piece + b"\n" for piece in pieces[:-1]] + [pieces[-1]]
        k = 0
        while k < len(pieces):
            piece = pieces[k]
            if group and k > 0 and k < len(pieces) - 1:  # whole lines begun in this piece
                m = k
                while m < len(pieces) - 1 and len(pieces[m]) <= MAX_LIST_ROW_BYTES:
                    m += 1
                if m > k:
                    text = b"".join(pieces[k:m])
                    yield number, pos, text
                    number, pos, k = number + m - k, pos + len(text), m
                    row = _Row(pos)
                    continue
            body = piece.rstrip(b"\r\n") if ends == "lines" else piece[:-1] if piece.endswith(b"\n") else piece
            row.add(body)
            pos += len(piece)
            k += 1
            if len(body) < len(piece):
                yield number, row.start, row.finish(f"line {number}")
                number, row = number + 1, _Row(pos)
        skip_lf = ends == "lines" and chunk.endswith(b"\r")
    if row.nbytes:
        yield number, row.start, row.finish(f"line {number}")


def _csv_patterns(sep: bytes) -> dict[str, re.Pattern]:
    d = re.escape(sep)
    quoted = rb'"(?:[^"]++|"")*+"[^' + d + rb'\r\n]*+'  # a quoted field, and what runs on after its quote
    plain = rb'[^"' + d + rb'\r\n][^' + d + rb'\r\n]*+'
    field = rb"(?>" + quoted + rb"|" + plain + rb"|)"
    fields = field + rb"(?:" + d + field + rb")*+"
    return {"records": re.compile(rb"(?:" + fields + rb"(?:\r\n|\r|\n))*+"),  # whole records, each to its end
            "fields": re.compile(fields),  # fields of a record, to its end
            "fields_sep": re.compile(rb"(?:" + field + d + rb")*+"),  # fields each followed by a separator
            "quoted": re.compile(rb'(?:[^"]++|"")*+'),  # inside a quoted field, up to its closing quote
            "rest": re.compile(rb"[^" + d + rb"\r\n]*+")}  # the rest of an unquoted field


_FIELD_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)


def _csv_records(fh: BinaryIO, sep: str) -> Iterator[tuple[int, int, bytes | _TooLong]]:
    """``(line number, offset, records)`` of a CSV/TSV file read in pieces: complete records with
    their line ends (several at a time), or one ``_TooLong``. A record ends at a line end outside
    quotes, as pandas' parser (and Python's csv) tell them: a quote opens a quoted field only at a
    field's start, ``""`` inside one is a quote, and after its closing quote the field runs on
    unquoted to the next separator."""
    pat = _csv_patterns(sep.encode())
    d = ord(sep)
    state, line, pos = _FIELD_START, 1, fh.tell()
    row, row_line = _Row(pos), 1  # the record being read (begun in an earlier piece when row.nbytes)
    while chunk := fh.read(_READ_BYTES):
        n, i, start = len(chunk), 0, 0
        group, group_line = 0, row_line  # complete records of this piece not handed out yet
        while i < n:
            if i == start and not row.nbytes:  # at a record's start: whole records at once, none past the limit
                j = pat["records"].match(chunk, i, min(n, i + MAX_LIST_ROW_BYTES)).end()
                if j > i:
                    line += chunk.count(b"\n", i, j)
                    i = start = j
                    row, row_line = _Row(pos + j), line
                    continue
            end = -1  # where a line end closes the record, if in this piece
            if state == _QUOTED:
                q = pat["quoted"].match(chunk, i).end()
                line += chunk.count(b"\n", i, q)
                if q >= n - 1:  # no closing quote here, or one whose next byte is in the next piece
                    state, i = (_QUOTED, n) if q == n else (_QUOTE_IN_QUOTED, n)
                    continue
                state, i = _QUOTE_IN_QUOTED, q + 1
            if state == _QUOTE_IN_QUOTED:
                c = chunk[i]
                if c == 0x22:
                    state, i = _QUOTED, i + 1
                    continue
                if c in (0x0A, 0x0D):
                    end = i
                else:
                    state = _UNQUOTED
            if end < 0 and state == _UNQUOTED:
                r = pat["rest"].match(chunk, i).end()
                if r == n:
                    i = n
                    continue
                if chunk[r] == d:
                    state, i = _FIELD_START, r + 1
                    continue
                end = r
            if end < 0:  # at a field's start
                j = pat["fields"].match(chunk, i).end()
                if j == n:  # the piece ends inside this record: where, in its last field?
                    line += chunk.count(b"\n", i, n)
                    state, i = _csv_tail_state(chunk, i, pat), n
                    continue
                if chunk[j] == 0x22:  # a quoted field that does not close in this piece
                    state, i = _QUOTED, j + 1
                    continue
                line += chunk.count(b"\n", i, j)
                end = j
            # a line end closes the record (CRLF as one)
            stop = end + 2 if chunk[end:end + 2] == b"\r\n" else end + 1
            line += 1
            if row.nbytes or stop - start > MAX_LIST_ROW_BYTES:  # begun before this piece, or too long
                if start > group:
                    yield group_line, pos + group, chunk[group:start]
                row.add(chunk[start:stop])
                yield row_line, row.start, row.finish(f"line {row_line}")
                group, group_line = stop, line
            state, i, start = _FIELD_START, stop, stop
            row, row_line = _Row(pos + stop), line
        if start > group:
            yield group_line, pos + group, chunk[group:start]
        row.add(chunk[start:])
        pos += n
    if row.nbytes:
        yield row_line, row.start, row.finish(f"line {row_line}")


def _csv_tail_state(chunk: bytes, i: int, pat: dict) -> int:
    """The parser's state at the end of ``chunk``, read from a field start at ``i`` with no line
    end outside quotes after it: the state of its last field."""
    n = len(chunk)
    k = pat["fields_sep"].match(chunk, i).end()  # the last field starts at k
    if k == n:
        return _FIELD_START
    if chunk[k] != 0x22:
        return _UNQUOTED
    q = pat["quoted"].match(chunk, k + 1).end()
    return _QUOTED if q == n else _QUOTE_IN_QUOTED if q == n - 1 else _UNQUOTED


def _read_csv(fh: BinaryIO, path: Path, sep: str) -> tuple[pd.DataFrame, dict[int, str]]:
    """A CSV/TSV list as pandas reads it (text cells) and the reasons of its bad rows by position:
    a record past the row limit is never held, a one-cell stand-in takes its place (the header
    may not be one); a cell past the cell limit is emptied."""
    stand_in = f"omni-row-past-limit-{secrets.token_hex(8)}-"
    kept, too_long, header = [], [], False
    for _line, offset, records in _csv_records(fh, sep):
        if isinstance(records, _TooLong):
            if not header:
                raise ListError(f"{path}: the header is too long: {records.nbytes:,} bytes > "
                                f"{MAX_LIST_ROW_BYTES:,} (limit per row)")
            kept.append(f"{stand_in}{len(too_long)}\n".encode())
            too_long.append(records.reason)
            continue
        _decode(records, offset, path)
        header = header or bool(records.strip())
        kept.append(records)
    data = b"".join(kept)
    del kept
    if not data.strip():
        raise ListError(f"{path}: the list is empty")
    df = pd.read_csv(io.BytesIO(data), sep=sep, dtype=str, keep_default_na=False)
    del data
    reasons: dict[int, str] = {}
    for col in [0, None] if too_long else []:  # the stand-in is the first field: column 0 (or the index)
        values = (df.iloc[:, col] if col is not None else df.index).to_numpy(dtype=object)
        for pos, value in enumerate(values):
            first = value[0] if isinstance(value, tuple) else value  # (a MultiIndex: its first level)
            if isinstance(first, str) and first.startswith(stand_in):
                reasons[pos] = too_long[int(first[len(stand_in):])]
                if col is not None:
                    df.iat[pos, col] = ""
    for pos, reason in _bound_cells(df).items():
        reasons.setdefault(pos, reason)
    return df, reasons


def _cell_reason(column, nbytes: int) -> str:
    return f"bad list row: {str(column)[:60]!r} cell of {nbytes:,} bytes > {MAX_LIST_CELL_BYTES:,} (limit per cell)"


def _bound_cells(df: pd.DataFrame) -> dict[int, str]:
    """Empties every text cell past the cell limit; returns the reasons by row position."""
    reasons: dict[int, str] = {}
    for col in range(df.shape[1]):
        try:
            chars = df.iloc[:, col].str.len()  # (a UTF-8 byte count is at most 4x this)
        except (AttributeError, TypeError):
            continue
        for pos in np.flatnonzero((chars > MAX_LIST_CELL_BYTES // 4).fillna(False).to_numpy(dtype=bool)):
            value = df.iat[pos, col]
            nbytes = len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else 0
            if nbytes > MAX_LIST_CELL_BYTES:
                reasons.setdefault(int(pos), _cell_reason(df.columns[col], nbytes))
                df.iat[pos, col] = ""
    return reasons


def _bound_record(rec: dict, nbytes: int) -> dict:
    """A parsed JSON record with every value past the cell limit emptied (and ``row_error``
    saying which); ``nbytes``, the record's own size, spares the check where no cell can be."""
    if nbytes <= MAX_LIST_CELL_BYTES:
        return rec
    reason = ""
    for key in list(rec):
        value = rec[key]
        if isinstance(value, str):
            size = len(value.encode("utf-8", "surrogatepass")) if len(value) > MAX_LIST_CELL_BYTES // 4 else 0
        elif isinstance(value, (dict, list)):
            size = len(json.dumps(value).encode())
        else:
            size = 0
        size = max(size, len(key.encode("utf-8", "surrogatepass")))
        if size > MAX_LIST_CELL_BYTES:
            reason = reason or _cell_reason(key if len(key) <= 60 else key[:60] + "...", size)
            if len(key.encode("utf-8", "surrogatepass")) > MAX_LIST_CELL_BYTES:
                del rec[key]
            else:
                rec[key] = ""
    if reason:
        rec["row_error"] = reason
    return rec


def _with_reasons(df: pd.DataFrame, reasons: dict[int, str]) -> pd.DataFrame:
    """``df`` with the reasons of its bad rows (by position) in ``row_error``."""
    if reasons:
        errors = (df["row_error"].fillna("").astype(str).tolist() if "row_error" in df.columns else [""] * len(df))
        for pos, reason in reasons.items():
            errors[pos] = reason
        df["row_error"] = errors
    return df


def _read_jsonl(fh: BinaryIO, path: Path) -> pd.DataFrame:
    """One JSON object per line, values as they are (a huge integer stays a Python int: a bad row
    for the row's own reason, not a list that cannot be read); a line past the row limit or a
    value past the cell limit is a bad row."""
    records, seen = [], False
    # lines end at \n only: U+2028, U+0085 and friends are legal raw inside a JSON string
    for n, offset, raw in _lines(fh, "jsonl"):
        if isinstance(raw, _TooLong):
            records.append({"row_error": raw.reason})
            seen = True
            continue
        line = _decode(raw, offset, path)
        if not line.strip():
            continue
        seen = True
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise ListError(f"{path}:{n}: cannot read as .jsonl list: {exc}") from None
        if not isinstance(rec, dict):
            raise ListError(f"{path}:{n}: cannot read as .jsonl list: each line must be a JSON object, "
                            f"got {type(rec).__name__}")
        records.append(_bound_record(rec, len(raw)))
    if not seen:
        raise ListError(f"{path}: the list is empty")
    return pd.DataFrame.from_records(records)


def _read_lines(fh: BinaryIO, path: Path) -> pd.DataFrame:
    """Plain text: one URL per line, or MMAction2's "path label_index"; ``#`` starts a comment.
    A line past the row limit is a bad row (a comment is passed over, however long)."""
    lines: list[str | _TooLong] = []
    seen = False
    for _n, offset, raw in _lines(fh, "lines", group=True):
        if isinstance(raw, _TooLong):
            seen = True
            if not raw.head.lstrip().startswith(b"#"):
                lines.append(raw)
            continue
        text = _decode(raw, offset, path)
        seen = seen or bool(text.strip())
        lines += [ln for ln in (part.strip() for part in text.splitlines()) if ln and not ln.startswith("#")]
    if not seen:
        raise ListError(f"{path}: the list is empty")
    good = [ln for ln in lines if isinstance(ln, str)]
    reasons = {i: ln.reason for i, ln in enumerate(lines) if isinstance(ln, _TooLong)}
    if good and all(_is_mmaction_line(ln) for ln in good):
        rows = [ln.rsplit(None, 1) if isinstance(ln, str) else ["", ""] for ln in lines]
        df = pd.DataFrame({"url": [r[0] for r in rows], "query": [int(r[1]) if r[1] else "" for r in rows]})
    else:
        df = pd.DataFrame({"url": [ln if isinstance(ln, str) else "" for ln in lines]})
    for pos, reason in _bound_cells(df).items():
        reasons.setdefault(pos, reason)
    return _with_reasons(df, reasons)


def _first_byte(fh: BinaryIO) -> tuple[int, bytes]:
    """The offset and value of the first byte that is not JSON whitespace (``b""`` at the end)."""
    pos = fh.tell()
    while chunk := fh.read(_READ_BYTES):
        stripped = chunk.lstrip(b" \t\r\n")
        if stripped:
            return pos + len(chunk) - len(stripped), stripped[:1]
        pos += len(chunk)
    return pos, b""


def _json_parts(fh: BinaryIO, start: int, what: str,
                group: bool = False) -> Iterator[tuple[int, bytes | _TooLong, int]]:
    """``(offset, parts, count)`` of the JSON array or object that opens at ``start``: each element
    (or ``"key": value`` member) as its bytes, or a ``_TooLong``; with ``group``, neighbours that
    fit in a piece together up to the cell limit, ``count`` of them joined by their commas. Read
    in pieces, strings and nesting told apart vectorised (numpy), so a huge part costs no more
    than a piece. Returns the offset just past the closing bracket."""
    fh.seek(start)
    opener = fh.read(1)
    closer = {b"[": 0x5D, b"{": 0x7D}[opener]
    pos, depth, in_string, slashes = start + 1, 1, False, 0
    row, count = _Row(pos), 1
    while True:
        chunk = fh.read(_JSON_READ_BYTES)
        if not chunk:
            raise ListError(f"cannot read as .json list: the {opener.decode()} at byte {start} is never closed")
        if in_string and b'"' not in chunk:  # all inside one long string
            tail = len(chunk) - len(chunk.rstrip(b"\\"))
            slashes = tail + (slashes if tail == len(chunk) else 0)
            row.add(chunk)
            pos += len(chunk)
            continue
        a = np.frombuffer(chunk, np.uint8)
        quote = a == 0x22
        slash = a == 0x5C
        if slashes or slash.any():  # a quote after an odd run of backslashes is escaped
            idx = np.arange(len(a), dtype=np.int32)
            last_other = np.maximum.accumulate(np.where(slash, np.int32(-1), idx))
            before = np.concatenate((np.array([-1], np.int32), last_other[:-1]))
            run = idx - 1 - before + np.where(before < 0, slashes, 0)
            quote &= run % 2 == 0
            slashes = len(a) - 1 - int(last_other[-1]) + (slashes if last_other[-1] < 0 else 0)
        else:
            slashes = 0
        flips = np.cumsum(quote, dtype=np.int32)
        inside = ((flips - quote) % 2 == 1) ^ in_string  # within a string, before this byte
        in_string = bool((int(flips[-1]) % 2 == 1) ^ in_string)
        outside = ~inside & ~quote
        opens = outside & ((a == 0x5B) | (a == 0x7B))
        closes = outside & ((a == 0x5D) | (a == 0x7D))
        step = opens.astype(np.int32) - closes
        level = depth + np.cumsum(step, dtype=np.int64) - step  # nesting before each byte
        i, g0, g1, grouped = 0, 0, 0, 0  # parts chunk[g0:g1] of this piece, not handed out yet
        for j in np.flatnonzero(outside & (level == 1) & ((a == 0x2C) | closes)):
            j = int(j)
            if group and i > 0 and j - (g0 if grouped else i) <= MAX_LIST_CELL_BYTES:
                g0, g1, grouped = (g0 if grouped else i), j, grouped + 1  # a part begun in this piece
            else:
                if grouped:
                    yield pos + g0, chunk[g0:g1], grouped
                    grouped = 0
                row.add(chunk[i:j])
                yield row.start, row.finish(f"{what} {count}"), 1
            if a[j] != 0x2C:
                if grouped:
                    yield pos + g0, chunk[g0:g1], grouped
                if a[j] != closer:
                    raise ListError(f"cannot read as .json list: {chr(a[j])} at byte {pos + j} closes "
                                    f"the {opener.decode()} at byte {start}")
                return pos + j + 1
            i, count = j + 1, count + 1
            row = _Row(pos + i)
        if grouped:
            yield pos + g0, chunk[g0:g1], grouped
        row.add(chunk[i:])
        depth = int(depth + step.sum())
        pos += len(chunk)


def _json_records(fh: BinaryIO, start: int, path: Path) -> tuple[list[dict | _TooLong], int]:
    """The records of the JSON array at ``start`` (objects, or ``_TooLong``) and its end."""
    parts = _json_parts(fh, start, "record", group=True)
    records: list[dict | _TooLong] = []
    empty = []
    try:
        while True:
            offset, raw, count = next(parts)
            if isinstance(raw, _TooLong):
                records.append(raw)
                continue
            text = _decode(raw, offset, path)
            if count == 1 and not text.strip():
                empty.append(offset)
                continue
            try:
                got = json.loads(f"[{text}]") if count > 1 else [json.loads(text)]
            except ValueError as exc:
                which = f"record {len(records) + 1}" + (f" to {len(records) + count}" if count > 1 else "")
                raise ListError(f"{path}: cannot read as .json list: {which} (from byte {offset}): {exc}") from None
            if not all(isinstance(rec, dict) for rec in got):
                raise ListError(f"{path}: a .json list must hold a list of records (objects)")
            # (records read together are each within the cell limit)
            records += [_bound_record(rec, len(raw)) for rec in got] if count == 1 else got
    except StopIteration as stop:
        end = stop.value
    if empty and (records or len(empty) > 1):  # ([] and [ ] hold no records; [1,] and [1,,2] are wrong)
        raise ListError(f"{path}: cannot read as .json list: a value is missing at byte {empty[0]}")
    return records, end


def _read_json(fh: BinaryIO, path: Path) -> list[dict | _TooLong]:
    """The records of a .json list: a list of objects, an object holding one under ``items`` (or
    ``data``), or one object. A list is read record by record, a large object member by member."""
    start, first = _first_byte(fh)
    if not first:
        raise ListError(f"{path}: the list is empty")
    size = fh.seek(0, 2)
    if first == b"[":
        records, end = _json_records(fh, start, path)
    elif first == b"{" and size - start > MAX_LIST_ROW_BYTES:
        records, end = _json_large_object(fh, start, path)
    elif size - start > MAX_LIST_ROW_BYTES:
        raise ListError(f"{path}: a .json list must hold a list of records (objects)")
    else:  # a small document, read whole
        fh.seek(start)
        raw = fh.read()
        data = json.loads(_decode(raw, start, path))
        if isinstance(data, dict):
            data = data.get("items", data.get("data", [data]))
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ListError(f"{path}: a .json list must hold a list of records (objects)")
        return [_bound_record(r, len(raw)) for r in data]
    fh.seek(end)
    if _first_byte(fh)[1]:
        raise ListError(f"{path}: cannot read as .json list: extra data after byte {end}")
    return records


_JSON_KEY = re.compile(rb'\s*("(?:[^"\\]|\\.)*+")\s*:')


def _json_large_object(fh: BinaryIO, start: int, path: Path) -> tuple[list[dict | _TooLong], int]:
    """The records of a JSON object past the row limit: those of its ``items`` (else ``data``)
    member, else the object itself as one record (a bad row); and the object's end."""
    found: dict[str, int] = {}
    parts = _json_parts(fh, start, "member")
    try:
        while True:
            offset, raw, _ = next(parts)
            key = _JSON_KEY.match(raw.head if isinstance(raw, _TooLong) else raw[:256])
            if key and json.loads(key.group(1)) in ("items", "data"):
                found[json.loads(key.group(1))] = offset + key.end()  # where its value starts
    except StopIteration as stop:
        end = stop.value
    key = "items" if "items" in found else "data" if "data" in found else None
    if key is None and end - start > MAX_LIST_ROW_BYTES:
        return [_TooLong(end - start, "record 1", b"")], end
    if key is None:  # (one small record, with a long run of whitespace after it)
        fh.seek(start)
        raw = fh.read(end - start)
        return [_bound_record(json.loads(_decode(raw, start, path)), len(raw))], end
    fh.seek(found[key])
    value_start, first = _first_byte(fh)
    if first != b"[":
        raise ListError(f"{path}: a .json list must hold a list of records (objects)")
    return _json_records(fh, value_start, path)[0], end


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
    """A list file's rows; a row past the row or cell limit carries its reason in ``row_error``."""
    suffix, gz = _strip_gz(path)
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(io.BytesIO(_read_bytes(path, gz)) if gz else path)
            return _with_reasons(df, _bound_cells(df))
        with _open_list(path, gz) as fh:
            if suffix in (".jsonl", ".ndjson"):
                return _read_jsonl(fh, path)
            if suffix == ".json":
                data = _read_json(fh, path)
                parsed = [r for r in data if isinstance(r, dict)]
                if parsed and all("video_dir" in r for r in parsed):
                    return _expand_mmaction_untrimmed(data, path.parent)
                return pd.DataFrame.from_records([r if isinstance(r, dict) else {"row_error": r.reason}
                                                  for r in data])
            if suffix in (".tsv", ".csv"):
                return _with_reasons(*_read_csv(fh, path, "\t" if suffix == ".tsv" else ","))
            return _read_lines(fh, path)  # plain text: one URL per line, or MMAction2's "path label_index"
    except ListError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise ListError(f"{path}: cannot read as {suffix or 'text'} list: {exc}") from exc


def _expand_mmaction_untrimmed(records: list[dict | _TooLong], base: Path) -> pd.DataFrame:
    """MMAction2 untrimmed records over pre-cut ``part_{i}.mp4`` files, one row per part.

    A record that cannot be expanded (no ``video_dir`` or ``label``, a bad or too large
    ``num_clips``, past the row or cell limit) becomes one row with ``row_error`` saying why."""
    rows = []
    for rec in records:
        if isinstance(rec, _TooLong):
            rows.append({"url": "", "query": "", "video_dir": None, "row_error": rec.reason})
            continue
        clips, error = _num_clips(rec)
        error = rec.get("row_error") or error  # (a cell past the limit)
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
        if "row_error" in df.columns and df["row_error"].fillna("").astype(bool).all():
            for col in (url_column, query_column):  # every row past a limit: none has the columns
                if col not in df.columns:
                    df[col] = ""
        url_col = url_column if url_column in df.columns else "url"  # plain text lists: one "url" column
        own = df.shape[1] - ("row_error" in df.columns)  # (the reasons of rows past a limit)
        if url_col not in df.columns or (url_col != url_column and own != 1):
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
        _refuse_bad_rows(path, _bound_cells(df))
        return df
    with _open_list(path, gz) as fh:
        start = fh.tell()
        first = ""
        for _n, offset, raw in _lines(fh, "lines"):
            if isinstance(raw, _TooLong):
                raise ListError(f"{path}: {raw.reason.removeprefix('bad list row: ')}")
            first = _decode(raw, offset, path)
            if first.strip():
                break
        if not first.strip():
            raise ListError(f"{path}: the list is empty")
        fh.seek(start)
        if suffix in (".csv", ".tsv") or "," in first:
            df, reasons = _read_csv(fh, path, "\t" if suffix == ".tsv" else ",")
            _require_columns(df, path)
            _refuse_bad_rows(path, reasons)
            return df
        rows = []
        for n, offset, raw in _lines(fh, "lines"):
            if isinstance(raw, _TooLong):
                raise ListError(f"{path}: {raw.reason.removeprefix('bad list row: ')}")
            line = _decode(raw, offset, path)
            if not line.strip() or line.startswith("#"):
                continue
            if not _is_mmaction_line(line.strip()):
                raise ListError(f"{path}:{n}: expected 'path label_index', got {line[:200]!r}")
            p, lab = line.strip().rsplit(None, 1)
            rows.append({"path": p, "label": lab})
    return pd.DataFrame(rows, columns=["path", "label"])


def _refuse_bad_rows(path: Path, reasons: dict[int, str]) -> None:
    """A target list is the user's own: a row past a limit stops the run."""
    if reasons:
        pos = min(reasons)
        raise ListError(f"{path} row {pos}: {reasons[pos].removeprefix('bad list row: ')}")


def _require_columns(df: pd.DataFrame, path: Path) -> None:
    missing = {"path", "label"} - set(map(str, df.columns))
    if missing:
        raise ListError(f"{path}: missing column(s) {sorted(missing)} (columns: {list(df.columns)[:20]})")
