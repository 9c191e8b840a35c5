"""Decode video windows and images into resized RGB arrays.

One sequential pass per video: every frame is decoded once, and only the frames that a
window samples are converted, with scaling fused into the same swscale call (PyAV's
``reformat``). Sequential PyAV decoding was measured faster than decord here; decord and
the ffmpeg executable are fallbacks, chosen by name or tried in order by ``auto``.
"""
from __future__ import annotations

import errno
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .pixels import DEFAULT_MAX_VIDEO_PIXELS


class DecodeError(RuntimeError):
    pass


class LimitError(DecodeError):
    """A file past one of omni's limits (frame pixels, streams): every decoder would meet it, so no
    other backend is tried; the message is the per-item reason."""


_STILL_CODECS = {"mjpeg", "png", "bmp", "webp", "tiff"}  # a track of these beside another is a cover image
# Streams one video file may hold: a film with its audio, subtitle and font tracks has a few dozen.
# FFmpeg's probe opens a decoder for every stream and decodes its first frames (a 6 MB Matroska
# file with 1,000 H.264 streams cost 480 MB to open); a file is opened with the demuxer making
# at most MAX_STREAMS + 1 streams and probing with no decoder at all, so only the stream that is
# read gets one, when it is decoded.
MAX_STREAMS = 64


def open_video(path: str | Path):
    """A PyAV container of ``path`` opened under the stream limit, no decoder opened by probing;
    a file with more streams is a ``LimitError``."""
    import av

    try:
        container = av.open(str(path), container_options={"max_streams": str(MAX_STREAMS + 1),
                                                          "codec_whitelist": "none"})
    except av.error.MemoryError:  # (ENOMEM) how the MP4/MOV and AVI demuxers meet max_streams
        raise LimitError(f"too many streams: cannot be opened within {MAX_STREAMS} streams (limit per file)") from None
    if len(container.streams) > MAX_STREAMS:
        container.close()
        raise LimitError(f"too many streams: more than {MAX_STREAMS} (limit per file)")
    return container


def pixel_refusal(width: int, height: int, max_pixels: int) -> str:
    return f"too many pixels: {width}x{height} video frames > {max_pixels}"


def decoder_pixel_cap(max_pixels: int) -> int:
    """FFmpeg's ``max_pixels`` for a cap of ``max_pixels``: a decoder checks a frame's width padded
    to 64 (its SIMD alignment) times its height, so 1/8 more lets every frame within the cap at
    least 512 wide through (at the default 8K cap a narrower one would be over 64,000 px tall);
    each decoded frame is then checked exactly."""
    return max_pixels + max_pixels // 8


def capped_frames(container, stream, max_pixels: int | None):
    """``container.decode(stream)``, every frame within ``max_pixels``: the stream's decoder is
    opened with FFmpeg's ``max_pixels`` (``decoder_pixel_cap``), so it refuses a larger frame
    before allocating it (a stream that declares 64x48 may carry 10000x10000 frames later); that
    refusal, or a decoded frame past the cap, is a ``LimitError``."""
    for _, frame in capped_decode(container, [stream], max_pixels):
        yield frame


def capped_decode(container, streams: list, max_pixels: int | None, counts: dict[int, int] | None = None):
    """``(stream, frame)`` for the frames of ``streams`` in file order, as ``capped_frames``; with
    ``counts`` (stream index: frames) each stream is decoded only that far, and decoding ends when
    every one is."""
    known = {}
    for stream in streams:
        ctx = stream.codec_context
        if max_pixels and ctx.width * ctx.height > max_pixels:  # as its header declares them
            raise LimitError(pixel_refusal(ctx.width, ctx.height, max_pixels))
        if max_pixels and not ctx.is_open:
            ctx.options = {**ctx.options, "max_pixels": str(decoder_pixel_cap(int(max_pixels)))}
        known[stream.index] = ctx.width * ctx.height > 0
    left = dict(counts) if counts is not None else None
    for packet in container.demux(streams):
        index = packet.stream.index
        if left is not None and left.get(index, 0) <= 0:
            if not any(n > 0 for n in left.values()):
                return
            continue
        try:
            frames = packet.decode()
        except Exception as exc:
            refused = _decoder_refusal(packet.stream.codec_context, exc, known[index], max_pixels) if max_pixels else ""
            if refused:
                raise LimitError(refused) from None
            raise
        for frame in frames:
            if max_pixels and frame.width * frame.height > max_pixels:
                raise LimitError(pixel_refusal(frame.width, frame.height, max_pixels))
            known[index] = True
            if left is not None:
                left[index] -= 1
            yield packet.stream, frame


def _decoder_refusal(ctx, exc: Exception, known: bool, max_pixels: int) -> str:
    """The reason when a decoding error was the decoder refusing a frame's size, else empty."""
    w, h = ctx.width, ctx.height
    if w * h > max_pixels:  # (H.264: the new size stays on the context)
        return pixel_refusal(w, h, max_pixels)
    padded = -(-w // 64) * 64
    if w and padded * h > decoder_pixel_cap(max_pixels):  # a narrow, very tall frame, padded past the cap
        return f"too many pixels: {w}x{h} video frames, {padded}x{h} as decoded > {max_pixels}"
    if known and w == h == 0 and getattr(exc, "errno", None) == errno.EINVAL:
        # ff_set_dimensions refused the size (MPEG-2/4, MJPEG, VP9, ...) and left 0x0 behind
        return f"too many pixels: a video frame > {max_pixels} (refused by the decoder)"
    return ""


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float


class WindowPlan(list):
    """Windows of one video, with ``note`` saying what was cut (duration, window count), if anything."""

    def __init__(self, windows=(), note: str = ""):
        super().__init__(windows)
        self.note = note


def evenly_spaced(windows: list[Window], k: int) -> list[Window]:
    """At most ``k`` of ``windows``, spread evenly over them (first and last kept)."""
    if len(windows) <= k:
        return list(windows)
    if k <= 1:
        return list(windows[:k])
    step = (len(windows) - 1) / (k - 1)
    return [windows[round(i * step)] for i in range(k)]


def video_stream(container):
    """The container's main video stream: a cover image (an attached picture, or a still-image
    track such as a one-frame MJPEG ahead of the film in a Matroska file, default flag or not) is
    passed over while a moving track exists; among the rest, ffmpeg's pick (``av_find_best_stream``).
    ``None`` when the file holds no video stream but a cover image."""
    import av

    films = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not films:
        return None
    if len(films) > 1:
        films = [s for s in films if s.codec_context.name not in _STILL_CODECS and s.frames != 1] or films
    best = container.streams.best("video")
    if best is not None and best.index in {s.index for s in films}:
        return best
    return max(films, key=lambda s: (s.frames or 0, bool(s.disposition & av.stream.Disposition.default)))


def frame_times(path: str | Path, limit_s: float | None = None) -> list[float] | None:
    """Sorted timestamps (seconds from the first frame) of the video frames that the file really
    holds, read from packet headers without decoding; ``None`` when they cannot be read."""
    try:
        with open_video(path) as container:
            stream = video_stream(container)
            if stream is None:
                return None
            base = stream.time_base
            start = float(stream.start_time * base) if stream.start_time is not None else 0.0
            times = []
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                t = float(packet.pts * base) - start
                if limit_s is not None and packet.dts is not None and float(packet.dts * base) - start > limit_s + 1.0:
                    break
                times.append(t)
    except Exception:
        return None
    return sorted(times) if times else None


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at ``short_side``, aspect kept, never upscaled."""
    short = min(width, height)
    if short <= short_side:
        return width, height
    scale = short_side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def sample_times(window: Window, n: int) -> list[float]:
    """``n`` timestamps at the centres of ``n`` equal segments of the window (TSN-style)."""
    step = (window.end_s - window.start_s) / n
    return [window.start_s + (k + 0.5) * step for k in range(n)]


def decode_windows(path: str | Path, windows: list[Window], frames_per_window: int, short_side: int,
                   backend: str = "auto", max_pixels: int | None = DEFAULT_MAX_VIDEO_PIXELS) -> list[np.ndarray]:
    """Frames for each window as ``uint8[T, H, W, 3]``, from one pass over the file. No backend
    decodes a frame of more than ``max_pixels``: such a frame, or a file of more than
    ``MAX_STREAMS`` streams, is a ``LimitError`` (no other backend is tried)."""
    backends = ["pyav", "decord", "ffmpeg"] if backend == "auto" else [backend]
    errors = []
    for name in backends:
        try:
            return _BACKENDS[name](str(path), windows, frames_per_window, short_side, max_pixels)
        except LimitError:
            raise
        except DecodeError as exc:
            errors.append(f"{name}: {exc}")
        except Exception as exc:  # a backend failing on an odd file falls through to the next
            errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:80]}")
    raise DecodeError("; ".join(errors))


def _pyav(path: str, windows: list[Window], n: int, short_side: int, max_pixels: int | None) -> list[np.ndarray]:
    targets = sorted((t, wi, k) for wi, w in enumerate(windows) for k, t in enumerate(sample_times(w, n)))
    out: list[list[np.ndarray | None]] = [[None] * n for _ in windows]
    with open_video(path) as container:
        stream = video_stream(container)
        if stream is None:
            raise DecodeError("no video stream")
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        size = None
        turns = 0
        ti = 0
        prev, prev_t, prev_rgb = None, 0.0, None
        for frame in capped_frames(container, stream, max_pixels):
            if size is None:
                size = scaled_size(frame.width, frame.height, short_side)
                turns = quarter_turns(frame)
            t = (frame.time - start) if frame.time is not None else prev_t + 1e-3
            # a target time is shown by the last frame whose timestamp is <= it
            while ti < len(targets) and targets[ti][0] < t and prev is not None:
                _, wi, k = targets[ti]
                out[wi][k] = prev_rgb if prev_rgb is not None else _rgb(prev, size, turns)
                prev_rgb = out[wi][k]
                ti += 1
            if ti >= len(targets):
                break
            prev, prev_t, prev_rgb = frame, t, None
        while ti < len(targets) and prev is not None:  # targets past the last frame
            _, wi, k = targets[ti]
            out[wi][k] = prev_rgb if prev_rgb is not None else _rgb(prev, size, turns)
            prev_rgb = out[wi][k]
            ti += 1
    if prev is None:
        raise DecodeError("no frame decodes")
    return [np.stack(frames) for frames in out]


def quarter_turns(frame) -> int:
    """How many quarter turns counter-clockwise a frame needs to stand as it is shown (a phone
    video's display matrix: ``rotate=90`` metadata), as ``np.rot90`` counts them."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


def _rgb(frame, size: tuple[int, int], turns: int = 0) -> np.ndarray:
    rgb = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _decord(path: str, windows: list[Window], n: int, short_side: int, max_pixels: int | None) -> list[np.ndarray]:
    import decord

    w, h = _checked_for_decord(path, max(w.end_s for w in windows), max_pixels)
    size = scaled_size(w, h, short_side)
    vr = decord.VideoReader(path, width=size[0], height=size[1], num_threads=1)
    fps = vr.get_avg_fps() or 25.0
    last = len(vr) - 1
    idx = [[min(last, max(0, int(t * fps))) for t in sample_times(win, n)] for win in windows]
    flat = sorted({i for row in idx for i in row})
    batch = vr.get_batch(flat).asnumpy()
    where = {i: j for j, i in enumerate(flat)}
    return [np.stack([batch[where[i]] for i in row]) for row in idx]


# Frames past the last sampled one that decord may decode (it reads by frame index at the mean
# rate, and decodes reordered frames ahead), and frames of each video stream that its probe (FFmpeg's,
# every stream) may decode: PyAV checks this far before decord opens the file.
_DECORD_LOOKAHEAD = 32
_PROBE_FRAMES = 16


def _checked_for_decord(path: str, until_s: float, max_pixels: int | None) -> tuple[int, int]:
    """The main stream's first frame size, once PyAV has decoded, within ``max_pixels`` and the
    stream limit, what decord will: the main stream to ``_DECORD_LOOKAHEAD`` frames past
    ``until_s`` at its mean rate, and the first ``_PROBE_FRAMES`` of every other video stream.
    decord's decoder takes no pixel cap; it reads only a file checked here."""
    try:
        with open_video(path) as container:
            main = video_stream(container)
            if main is None:
                raise DecodeError("no video stream")
            main.thread_type = "AUTO"
            rate = float(main.average_rate or main.guessed_rate or 25)
            streams = [s for s in container.streams.video if s.codec_context is not None]  # (decodable)
            counts = {s.index: _PROBE_FRAMES for s in streams}
            counts[main.index] = max(_PROBE_FRAMES, int(until_s * rate) + _DECORD_LOOKAHEAD)
            first = None
            for stream, frame in capped_decode(container, streams, max_pixels, counts):
                if stream is main and first is None:
                    first = (frame.width, frame.height)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"frame sizes not checked: {type(exc).__name__}: {str(exc)[:80]}") from None
    if first is None:
        raise DecodeError("no frame decodes")
    return first


_FFMPEG_PIXEL_REFUSAL = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")


def _ffmpeg_limits(stderr: bytes | None, max_pixels: int | None) -> None:
    """A ``LimitError`` when ffprobe's or ffmpeg's log says it met the stream limit or that its
    decoder refused a frame's size."""
    log = (stderr or b"").decode("utf-8", "replace")
    if "exceeds max_streams" in log:
        raise LimitError(f"too many streams: more than {MAX_STREAMS} (limit per file)")
    found = _FFMPEG_PIXEL_REFUSAL.search(log)
    if found and max_pixels:
        raise LimitError(pixel_refusal(int(found.group(1)), int(found.group(2)), max_pixels))


def _ffmpeg(path: str, windows: list[Window], n: int, short_side: int, max_pixels: int | None) -> list[np.ndarray]:
    import ffmpeg

    if shutil.which("ffmpeg") is None:
        raise DecodeError("the ffmpeg executable is not installed")
    # ffprobe and ffmpeg open at most MAX_STREAMS + 1 streams, and their decoders refuse frames over the cap
    limits = {"max_streams": str(MAX_STREAMS + 1), **({"max_pixels": str(int(max_pixels))} if max_pixels else {})}
    try:
        info = ffmpeg.probe(path, **limits)
    except ffmpeg.Error as exc:
        _ffmpeg_limits(exc.stderr, max_pixels)
        raise DecodeError(f"ffprobe: {(exc.stderr or b'').decode('utf-8', 'replace').strip()[-120:]}") from None
    if len(info["streams"]) > MAX_STREAMS:
        raise LimitError(f"too many streams: more than {MAX_STREAMS} (limit per file)")
    films = [s for s in info["streams"] if s["codec_type"] == "video"
             and not (s.get("disposition") or {}).get("attached_pic")]
    if not films:
        raise DecodeError("no video stream")
    pick = _best_video_index(path)
    vs = max(films, key=lambda s: (s["index"] == pick, s.get("codec_name") not in _STILL_CODECS,
                                   int(s.get("nb_frames") or 0), bool((s.get("disposition") or {}).get("default")),
                                   float(s.get("duration") or 0)))
    width, height = int(vs["width"]), int(vs["height"])
    rotation = next((d.get("rotation") for d in vs.get("side_data_list", []) if "rotation" in d),
                    (vs.get("tags") or {}).get("rotate", 0))
    if round(float(rotation or 0) / 90) % 2:  # ffmpeg turns the picture upright itself: scale the turned size
        width, height = height, width
    size = scaled_size(width, height, short_side)
    num, den = (vs.get("avg_frame_rate") or "25/1").split("/")
    fps = float(num) / float(den or 1) if float(num) else 25.0
    try:
        raw, err = (ffmpeg.input(path, **limits)[str(vs["index"])].filter("scale", size[0], size[1], flags="area")
                    .output("pipe:", format="rawvideo", pix_fmt="rgb24", vsync="passthrough")
                    .run(capture_stdout=True, capture_stderr=True, quiet=True))
    except ffmpeg.Error as exc:
        _ffmpeg_limits(exc.stderr, max_pixels)
        raise
    _ffmpeg_limits(err, max_pixels)  # a refused frame is skipped, and the file refused
    frames = np.frombuffer(raw, np.uint8).reshape(-1, size[1], size[0], 3)
    if len(frames) == 0:
        raise DecodeError("no frame decodes")
    last = len(frames) - 1
    return [np.stack([frames[min(last, int(t * fps))] for t in sample_times(w, n)]) for w in windows]


def _best_video_index(path: str) -> int | None:
    """PyAV's pick of the main video stream (``video_stream``), where PyAV opens the file."""
    try:
        with open_video(path) as container:
            stream = video_stream(container)
            return None if stream is None else stream.index
    except LimitError:
        raise
    except Exception:  # ffmpeg is the fallback for files PyAV refuses: its own probe decides
        return None


_BACKENDS = {"pyav": _pyav, "decord": _decord, "ffmpeg": _ffmpeg}


def load_image(path: str | Path, short_side: int) -> np.ndarray:
    """An image as ``uint8[1, H, W, 3]`` at the short side, using JPEG DCT scaling when it can."""
    from PIL import Image

    from .pixels import to_rgb, upright

    with Image.open(path) as im:
        w, h = im.size
        size = scaled_size(w, h, short_side)
        if im.format == "JPEG":
            im.draft("RGB", size)  # decode at 1/2, 1/4 or 1/8 scale when that is still >= size
        im.load()
        im, turned = upright(im)  # EXIF orientation, as ingest saw it
        if turned:
            size = size[::-1]
        im = to_rgb(im)
        if im.size != size:
            im = im.resize(size, Image.BILINEAR, reducing_gap=2.0)
        return np.asarray(im)[None]
