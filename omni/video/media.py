"""Know what a file is from its bytes, and check that it decodes as what it claims."""
from __future__ import annotations

import math
import mmap
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from .pixels import DEFAULT_MAX_VIDEO_PIXELS, to_rgb, upright  # noqa: F401  (the cap: its importers' name)

IMAGE_TYPES = {"jpeg", "png", "gif", "webp", "bmp", "tiff", "avif"}
VIDEO_TYPES = {"mp4", "mov", "avi", "webm", "mkv", "flv", "mpeg-ts", "mpeg-ps", "3gp", "ogg"}
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "webp": ".webp", "bmp": ".bmp", "tiff": ".tif",
              "avif": ".avif", "mp4": ".mp4", "mov": ".mov", "avi": ".avi", "webm": ".webm", "mkv": ".mkv",
              "flv": ".flv", "mpeg-ts": ".ts", "mpeg-ps": ".mpg", "3gp": ".3gp", "ogg": ".ogv"}
# The media checks' version, kept in each downloads-journal record they judged: raise it when a
# check comes to accept files it refused before, and a workdir's earlier refusals are judged again
# (2: a cover-image track ahead of the film is passed over, no longer read as a truncated video).
CHECKS_VERSION = 2
MAX_HEAD_FRAMES = 1000  # frames decoded from the start of a short video before checking its end instead


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
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
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
    """The type of a regular file from its first bytes (a FIFO or device is refused, never opened blocking)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MediaError("not a regular file")
        return sniff_type(os.read(fd, 1024))
    finally:
        os.close(fd)


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


MIN_SIDE = 16  # pixels: a smaller image or frame (a 1x1 tracking pixel, a 1-px rule) holds nothing to learn


def _check_min_side(width: int, height: int, what: str) -> None:
    if min(width, height) < MIN_SIDE:
        raise MediaError(f"too small: {width}x{height} {what} (short side under {MIN_SIDE} px)")


def check_image(path: str | Path, file_type: str, max_pixels: int, decode_short_side: int | None = None):
    """Decode an image fully (with a pixel cap against decompression bombs).

    Returns ``(info, rgb)``: ``rgb`` is the decoded RGB ``PIL.Image``; with
    ``decode_short_side`` a JPEG is decoded by DCT scaling at no less than that short side
    (every block is still entropy-decoded, so corruption is still caught), which is how one
    decode serves validation, thumbnails and resizing.
    """
    from PIL import Image, features

    if file_type not in IMAGE_TYPES:
        raise MediaError(f"not an image: {file_type}")
    if file_type == "avif" and not features.check("avif"):
        raise MediaError("unsupported image type: avif (this Pillow has no AVIF decoder)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)  # load() below reads the pixels and closes the file
            w, h = im.size
            if w * h > max_pixels:
                im.close()
                raise MediaError(f"too many pixels: {w}x{h} > {max_pixels}")
            if min(w, h) < MIN_SIDE:
                im.close()
                _check_min_side(w, h, "image")
            if im.format == "JPEG":
                shortfall = jpeg_data_shortfall(path)
                if shortfall:
                    im.close()
                    raise MediaError(shortfall)
            if decode_short_side and im.format == "JPEG":
                scale = decode_short_side / min(w, h)
                im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
            im.load()
            im, turned = upright(im)
            if turned:
                w, h = h, w
            rgb = to_rgb(im)
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:  # raised by open() itself past twice Pillow's own limit
        count = re.search(r"\((\d+) pixels\)", str(exc))
        raise MediaError(f"too many pixels: {count.group(1)} > {max_pixels}" if count else
                         f"too many pixels: {str(exc)[:80]}") from None
    except Exception as exc:
        raise MediaError(f"corrupt image: {type(exc).__name__}: {str(exc)[:80]}") from None
    return ImageInfo(file_type, w, h), rgb


_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # a marker: not a stuffed byte, not a restart


def jpeg_data_shortfall(path: str | Path) -> str:
    """A reason when a JPEG's entropy-coded data is too short for the size its header claims.

    Whatever the Huffman tables, every 8x8 block costs at least two bits in a sequential
    scan (a DC and an AC code) and one bit in a progressive first DC scan, so a header that
    claims more pixels than the data holds is caught without decoding (libjpeg would fill the
    rest with grey and say nothing). Other JPEG kinds (arithmetic, lossless) are not checked."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        frame, have, need_bits = None, 0, 0
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return ""
            marker = data[pos + 1]
            if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
                pos += 1 if marker == 0xFF else 2
                continue
            if marker == 0xD9:
                break
            end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
            segment = bytes(data[pos + 4:end])
            if marker in (0xC0, 0xC1, 0xC2):
                frame = _jpeg_frame(segment, progressive=marker == 0xC2)
            elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return ""
            pos = end
            if marker == 0xDA and frame:
                found = _JPEG_SCAN_END.search(data, pos)
                scan_end = found.start() if found else len(data)
                have += scan_end - pos
                need_bits += _jpeg_scan_min_bits(segment, frame)
                pos = scan_end
    if frame is None or have * 8 >= need_bits:
        return ""
    return (f"corrupt image: jpeg data too short for {frame['width']}x{frame['height']} "
            f"({have} of at least {need_bits // 8} bytes)")


def _jpeg_frame(segment: bytes, progressive: bool) -> dict | None:
    if len(segment) < 6:
        return None
    height, width, n = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big"), segment[5]
    comps = {segment[6 + 3 * i]: (segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15)
             for i in range(n) if 8 + 3 * i <= len(segment)}
    if not (height and width and comps) or min(min(hv) for hv in comps.values()) == 0:
        return None
    hmax, vmax = max(hv[0] for hv in comps.values()), max(hv[1] for hv in comps.values())
    blocks = {cid: math.ceil(math.ceil(width * hh / hmax) / 8) * math.ceil(math.ceil(height * vv / vmax) / 8)
              for cid, (hh, vv) in comps.items()}
    return {"width": width, "height": height, "blocks": blocks, "progressive": progressive}


def _jpeg_scan_min_bits(segment: bytes, frame: dict) -> int:
    n = segment[0] if segment else 0
    if len(segment) < 4 + 2 * n:
        return 0
    blocks = sum(frame["blocks"].get(segment[1 + 2 * i], 0) for i in range(n))
    if not frame["progressive"]:
        return 2 * blocks
    ss, ah = segment[1 + 2 * n], segment[3 + 2 * n] >> 4
    return blocks if ss == 0 and ah == 0 else 0


def check_video(path: str | Path, file_type: str, max_pixels: int | None = DEFAULT_MAX_VIDEO_PIXELS) -> VideoInfo:
    """Probe a video (stream present, duration, fps, size) and decode its start and end.

    A file whose frames stop well before its declared duration is ``truncated video``; frames
    larger than ``max_pixels`` are refused before any is decoded, and the decoder refuses every
    later frame past them before allocating it (a header may declare 64x48 and the stream carry
    10000x10000 frames); a file of more than ``decode.MAX_STREAMS`` streams is refused unopened.
    """
    from .decode import LimitError, capped_frames, frame_times, open_video, quarter_turns, video_stream

    if file_type not in VIDEO_TYPES:
        raise MediaError(f"not a video: {file_type}")
    try:
        with open_video(path) as container:
            stream = video_stream(container)
            if stream is None:
                raise MediaError("no video stream" + (" (only a cover image)" if container.streams.video else ""))
            _check_frame_size(stream.codec_context.width, stream.codec_context.height, max_pixels)
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
            duration = _duration_s(container, stream)
            if stream.frames and fps:  # a header's frame count outlives truncation (AVI)
                duration = max(duration, stream.frames / fps)
            packet_span = None
            if not duration:  # a live recording or a pipe (WebM without a duration): its packets say
                times = frame_times(path)
                if times:
                    packet_span = times[-1]
                    duration = times[-1] + (1.0 / fps if fps else 0.04)
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            first = None
            last_t = None
            count = 0
            for frame in capped_frames(container, stream, max_pixels):
                if first is None:
                    first = frame
                if frame.time is not None:
                    last_t = frame.time - start
                count += 1
                if duration > 4.0 or count >= MAX_HEAD_FRAMES:
                    break
            if first is None:
                raise MediaError("truncated video: no frame decodes")
            w, h = first.width, first.height
            if quarter_turns(first) % 2:  # shown turned (a phone video): report the size as shown
                w, h = h, w
            _check_min_side(w, h, "video frames")
            if packet_span is not None:  # the stream's end was read from its packets just now
                last_t = max(last_t or 0.0, packet_span)
            elif duration > 4.0 or count >= MAX_HEAD_FRAMES:
                last_t = _tail_time(container, stream, start, duration, max_pixels)
    except MediaError:
        raise
    except LimitError as exc:
        raise MediaError(str(exc)) from None
    except Exception as exc:
        cut = _box_truncation(path) if file_type in ("mp4", "mov", "3gp") else ""
        raise MediaError(cut or f"corrupt video: {type(exc).__name__}: {str(exc)[:80]}") from None
    if not duration or not math.isfinite(duration) or duration <= 0:
        raise MediaError("truncated video: unknown duration")
    frame_s = 1.0 / fps if fps else 0.1
    if last_t is None or last_t + frame_s < duration - max(0.5, 3 * frame_s):
        raise MediaError(f"truncated video: frames stop at {last_t or 0:.1f}s of {duration:.1f}s")
    return VideoInfo(file_type, w, h, duration, fps, stream.codec_context.name)


def _check_frame_size(width: int, height: int, max_pixels: int | None) -> None:
    from .decode import pixel_refusal

    if max_pixels and width * height > max_pixels:
        raise MediaError(pixel_refusal(width, height, max_pixels))


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


def _tail_time(container, stream, start: float, duration: float, max_pixels: int | None) -> float | None:
    """Timestamp of the last frame that decodes after seeking near the declared end.

    In a file without an index (MPEG-TS, a piped recording) the seek lands where it can, and with
    keyframes further apart than the 2 s looked at nothing decodes from there: then the last
    packet's timestamp says where the stream ends (read from that point, else from the start)."""
    near_end = start + max(0.0, duration - 2.0)
    from .decode import capped_frames

    container.seek(int(near_end / stream.time_base), stream=stream, backward=True)
    last_t = None
    for frame in capped_frames(container, stream, max_pixels):
        if frame.time is not None:
            last_t = frame.time - start
    for seek_s in (near_end, start):
        if last_t is not None:
            break
        container.seek(int(seek_s / stream.time_base), stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                t = float(packet.pts * stream.time_base) - start
                last_t = t if last_t is None else max(last_t, t)
    return last_t
