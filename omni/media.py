"""Know what a file is from its bytes, and check that it decodes as what it claims."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

IMAGE_TYPES = {"jpeg", "png", "gif", "webp", "bmp", "tiff"}
VIDEO_TYPES = {"mp4", "mov", "avi", "webm", "mkv", "flv", "mpeg-ts", "mpeg-ps", "3gp", "ogg"}
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "webp": ".webp", "bmp": ".bmp", "tiff": ".tif",
              "mp4": ".mp4", "mov": ".mov", "avi": ".avi", "webm": ".webm", "mkv": ".mkv", "flv": ".flv",
              "mpeg-ts": ".ts", "mpeg-ps": ".mpg", "3gp": ".3gp", "ogg": ".ogv"}


class MediaError(ValueError):
    """A file that is not usable media; the message is the per-item reason."""


def sniff_type(head: bytes) -> str:
    """The file type named by its first bytes (at least 64 bytes for reliable answers)."""
    if not head:
        return "empty"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand.startswith(b"qt"):
            return "mov"
        if brand.startswith(b"3g"):
            return "3gp"
        if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
            return "heif"
        return "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47":
        return "mpeg-ts"
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg-ps"
    if head[:4] == b"%PDF":
        return "pdf"
    text = head[:512].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "html"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "xml"
    if text.startswith((b"{", b"[")):
        return "json"
    try:
        head[:512].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown"


def sniff_file(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return sniff_type(fh.read(1024))


@dataclass
class ImageInfo:
    type: str
    width: int
    height: int


@dataclass
class VideoInfo:
    type: str
    width: int
    height: int
    duration_s: float
    fps: float
    codec: str


def check_image(path: str | Path, file_type: str, max_pixels: int, decode_short_side: int | None = None):
    """Decode an image fully (with a pixel cap against decompression bombs).

    Returns ``(info, rgb)``: ``rgb`` is the decoded RGB ``PIL.Image``; with
    ``decode_short_side`` a JPEG is decoded by DCT scaling at no less than that short side
    (every block is still entropy-decoded, so corruption is still caught), which is how one
    decode serves validation, thumbnails and resizing.
    """
    from PIL import Image

    if file_type not in IMAGE_TYPES:
        raise MediaError(f"not an image: {file_type}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)  # load() below reads the pixels and closes the file
            w, h = im.size
            if w * h > max_pixels:
                im.close()
                raise MediaError(f"too many pixels: {w}x{h} > {max_pixels}")
            if decode_short_side and im.format == "JPEG":
                scale = decode_short_side / min(w, h)
                im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
            im.load()
            rgb = im if im.mode == "RGB" else im.convert("RGB")
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise MediaError(f"too many pixels: {exc}") from None
    except Exception as exc:
        raise MediaError(f"corrupt image: {type(exc).__name__}: {str(exc)[:80]}") from None
    return ImageInfo(file_type, w, h), rgb


def check_video(path: str | Path, file_type: str) -> VideoInfo:
    """Probe a video (stream present, duration, fps, size) and decode its start and end.

    A file whose frames stop well before its declared duration is ``truncated video``.
    """
    import av

    if file_type not in VIDEO_TYPES:
        raise MediaError(f"not a video: {file_type}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
            duration = _duration_s(container, stream)
            if stream.frames and fps:  # a header's frame count outlives truncation (AVI)
                duration = max(duration, stream.frames / fps)
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            first = None
            last_t = None
            for frame in container.decode(stream):
                if first is None:
                    first = frame
                if frame.time is not None:
                    last_t = frame.time - start
                if duration > 4.0:
                    break
            if first is None:
                raise MediaError("truncated video: no frame decodes")
            w, h = first.width, first.height
            if duration > 4.0:
                last_t = _tail_time(container, stream, start, duration)
    except MediaError:
        raise
    except Exception as exc:
        cut = _box_truncation(path) if file_type in ("mp4", "mov", "3gp") else ""
        raise MediaError(cut or f"corrupt video: {type(exc).__name__}: {str(exc)[:80]}") from None
    if not duration:
        raise MediaError("truncated video: unknown duration")
    frame_s = 1.0 / fps if fps else 0.1
    if last_t is None or last_t + frame_s < duration - max(0.5, 3 * frame_s):
        raise MediaError(f"truncated video: frames stop at {last_t or 0:.1f}s of {duration:.1f}s")
    return VideoInfo(file_type, w, h, duration, fps, stream.codec_context.name)


def _box_truncation(path: str | Path) -> str:
    """For ISO-BMFF files: a reason when a top-level box runs past the end of the file."""
    import struct

    size = Path(path).stat().st_size
    pos = 0
    with open(path, "rb") as fh:
        while pos + 8 <= size:
            fh.seek(pos)
            n, kind = struct.unpack(">I4s", fh.read(8))
            if n == 1:
                n = struct.unpack(">Q", fh.read(8))[0]
            elif n == 0:
                n = size - pos
            if n < 8:
                return ""
            if pos + n > size:
                name = kind.decode("latin-1")
                return f"truncated video: file ends inside the '{name}' box ({size - pos} of {n} bytes)"
            pos += n
    return ""


def _duration_s(container, stream) -> float:
    if container.duration:
        return container.duration / 1_000_000
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    return 0.0


def _tail_time(container, stream, start: float, duration: float) -> float | None:
    """Timestamp of the last frame that decodes after seeking near the declared end."""
    container.seek(int((start + max(0.0, duration - 2.0)) / stream.time_base), stream=stream, backward=True)
    last_t = None
    for frame in container.decode(stream):
        if frame.time is not None:
            last_t = frame.time - start
    return last_t
