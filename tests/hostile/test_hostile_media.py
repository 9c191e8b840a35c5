"""Hostile media: pixels that must come out right, headers that lie, bombs in frame size and
in duration. Every case gives the right answer or a clear reason, in bounded time."""
import io
import os
import shutil
import struct
import zlib
from pathlib import Path
from fractions import Fraction

import numpy as np
import pytest
from hostile_helpers import Timer
from PIL import Image, features

from omni.config import ExtractConfig
from omni.video import decode
from omni.video.decode import (DecodeError, LimitError, capped_frames, decode_windows, evenly_spaced, frame_times,
                         load_image, open_video, video_stream, Window)
from omni.video.extract import _windows_for, plan_windows
from omni.video.media import MIN_SIDE, MediaError, check_image, check_video, jpeg_data_shortfall, sniff_file, sniff_type

CAP = 50_000_000


def _jpeg(im: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, "JPEG", **kw)
    return b.getvalue()


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))


def _claim_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header claiming another size."""
    data = bytearray(data)
    i = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[i + 5:i + 7] = height.to_bytes(2, "big")
    data[i + 7:i + 9] = width.to_bytes(2, "big")
    return bytes(data)


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I;16")
    info, rgb = check_image(path, "png", CAP)
    arr = np.asarray(rgb)
    assert arr.shape == (16, 256, 3) and abs(arr.mean() - 127.5) < 2  # convert() alone gives ~254 (white)
    assert arr[0, 0, 0] == 0 and arr[0, -1, 0] == 255
    assert abs(load_image(path, 320).mean() - 127.5) < 2  # extract sees the same pixels


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (64, 32), "white")
    im.paste((255, 0, 0), (0, 0, 16, 32))  # red on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _write(tmp_path, "turned.jpg", _jpeg(im, exif=exif, quality=95))
    info, rgb = check_image(path, "jpeg", CAP)
    assert (info.width, info.height) == (32, 64) and rgb.size == (32, 64)
    top = np.asarray(rgb)[:8].mean(axis=(0, 1))
    assert top[0] > 200 and top[1] < 80  # the red stripe is now on top
    frames = load_image(path, 320)
    assert frames.shape == (1, 64, 32, 3) and frames[0, :8, :, 0].mean() > 200


@pytest.mark.parametrize("kind", ["baseline", "progressive", "grey", "444", "restarts", "optimized"])
def test_jpeg_that_claims_a_size_its_data_does_not_have_is_rejected(tmp_path, kind):
    im = _noise(64, 64).convert("L") if kind == "grey" else _noise(64, 64)
    kw = {"baseline": {}, "progressive": {"progressive": True}, "grey": {}, "444": {"subsampling": 0},
          "restarts": {"restart_marker_blocks": 1}, "optimized": {"optimize": True}}[kind]
    path = _write(tmp_path, "lie.jpg", _claim_size(_jpeg(im, quality=90, **kw), 4000, 4000))
    with Timer() as t, pytest.raises(MediaError, match=r"^corrupt image: jpeg data too short for 4000x4000"):
        check_image(path, "jpeg", CAP)
    assert t.s < 1


@pytest.mark.parametrize("kind", ["noise", "flat", "flat-optimized", "flat-progressive", "grey-flat", "restarts",
                                  "444", "tiny", "odd-size"])
def test_honest_jpegs_pass_the_length_check(tmp_path, kind):
    flat = Image.new("RGB", (1600, 1200), (128, 128, 128))
    im, kw = {
        "noise": (_noise(640, 480), {}), "flat": (flat, {}), "flat-optimized": (flat, {"optimize": True}),
        "flat-progressive": (flat, {"progressive": True, "optimize": True}),
        "grey-flat": (flat.convert("L"), {"optimize": True}),
        "restarts": (_noise(200, 100), {"restart_marker_rows": 1}),
        "444": (_noise(123, 77), {"subsampling": 0}), "tiny": (_noise(1, 1), {}), "odd-size": (_noise(333, 17), {}),
    }[kind]
    path = _write(tmp_path, "ok.jpg", _jpeg(im, quality=75, **kw))
    assert jpeg_data_shortfall(path) == ""
    if min(im.size) < MIN_SIDE:  # honest, but nothing to learn from: refused for its size, not as corrupt
        with pytest.raises(MediaError, match="^too small"):
            check_image(path, "jpeg", CAP)
        return
    info, _ = check_image(path, "jpeg", CAP)
    assert (info.width, info.height) == im.size


def test_truncated_jpegs_are_corrupt(tmp_path):
    data = _jpeg(_noise(256, 256), quality=90)
    with pytest.raises(MediaError, match="^corrupt image"):
        check_image(_write(tmp_path, "cut.jpg", data[:len(data) // 2]), "jpeg", CAP)
    with pytest.raises(MediaError, match="^corrupt image"):
        check_image(_write(tmp_path, "head.jpg", data[:400]), "jpeg", CAP)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_avif_is_an_image_when_pillow_decodes_it(tmp_path):
    path = tmp_path / "a.avif"
    _noise(48, 32).save(path, "AVIF")
    assert sniff_file(path) == "avif"
    info, rgb = check_image(path, "avif", CAP)
    assert (info.type, info.width, info.height) == ("avif", 48, 32) and rgb.mode == "RGB"
    assert load_image(path, 16).shape == (1, 16, 24, 3)


def test_heic_is_named_not_decoded():
    assert sniff_type(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "heif"
    with pytest.raises(MediaError, match="^not an image: heif$"):
        check_image("/nonexistent", "heif", CAP)


def test_image_pixel_bomb_is_refused_before_decoding(tmp_path):
    with Timer() as t:
        with pytest.raises(MediaError, match=r"^too many pixels: 400000000 > 50000000$"):
            check_image(_write(tmp_path, "bomb.png", _png_header(20000, 20000)), "png", CAP)
        with pytest.raises(MediaError, match=r"^too many pixels: 10000x8000 > 50000000$"):  # under Pillow's limit
            check_image(_write(tmp_path, "bomb2.png", _png_header(10000, 8000)), "png", CAP)
    assert t.s < 1


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds almost nothing: a bomb is judged by its header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_sniffing_a_fifo_never_blocks(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with Timer() as t, pytest.raises(MediaError, match="not a regular file"):
        sniff_file(tmp_path / "fifo")
    assert t.s < 1


# ---------------------------------------------------------------- videos

def write_video(path, times, size=(32, 32), codec="libx264"):
    """A video with one frame at each of ``times`` (seconds): variable frame rate on purpose."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"preset": "ultrafast", "threads": "1"}
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), (i * 37) % 255, np.uint8), "rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _item(path, duration, kind="untrimmed", window=2.0):
    return {"kind": kind, "duration_s": duration, "path": str(path), "window_s": window, "stride_s": window}


def test_video_pixel_cap(tmp_path):
    path = write_video(tmp_path / "wide.mp4", [i / 10 for i in range(5)], size=(64, 48))
    with pytest.raises(MediaError, match=r"^too many pixels: 64x48 video frames > 1000$"):
        check_video(path, "mp4", max_pixels=1000)
    assert check_video(path, "mp4", max_pixels=64 * 48).width == 64
    assert check_video(path, "mp4").width == 64  # the default cap is 8K


def test_an_hour_with_two_frames_makes_no_windows(tmp_path):
    path = write_video(tmp_path / "bomb.mp4", [0.0, 3600.0])
    assert path.stat().st_size < 4096
    info = check_video(path, "mp4")
    assert info.duration_s > 3599
    with Timer() as t:
        with pytest.raises(DecodeError, match="^no window holds 2 or more frames"):
            _windows_for(_item(path, info.duration_s), ExtractConfig())
        with pytest.raises(DecodeError, match="^no window holds 2 or more frames"):
            _windows_for(_item(path, info.duration_s), ExtractConfig(max_duration_s=7200))
    assert t.s < 2


def test_windows_come_from_frames_that_exist_and_the_cut_is_recorded(tmp_path):
    path = write_video(tmp_path / "vfr.mp4", [i / 10 for i in range(20)] + [3600.0])
    duration = check_video(path, "mp4").duration_s
    plan = _windows_for(_item(path, duration), ExtractConfig())
    assert list(plan) == [Window(0.0, 2.0)]
    assert plan.note == f"duration cut at 1800 s of {duration:g} s; 899 of 900 windows dropped: no frames"
    frames = decode_windows(path, plan, 8, 32)
    assert len(frames) == 1 and frames[0].shape == (8, 32, 32, 3)
    assert len({int(f.mean()) for f in frames[0]}) > 4  # real, different frames


def test_windows_per_video_are_capped_evenly(tmp_path):
    path = write_video(tmp_path / "long.mp4", [i / 5 for i in range(300)])  # 60 s at 5 fps
    duration = check_video(path, "mp4").duration_s
    plan = _windows_for(_item(path, duration, window=1.0), ExtractConfig(max_windows_per_video=5))
    assert len(plan) == 5 and plan.note == "kept 5 of 60 windows"
    assert plan[0].start_s == 0.0 and plan[-1].start_s == 59.0
    assert len(decode_windows(path, plan, 4, 32)) == 5


def test_a_long_web_video_is_cut_at_max_duration(tmp_path):
    path = write_video(tmp_path / "clip.mp4", [i / 5 for i in range(50)])
    plan = _windows_for(_item(path, 10.0, kind="video"), ExtractConfig(max_duration_s=4))
    assert list(plan) == [Window(0.0, 4.0)] and plan.note == "duration cut at 4 s of 10 s"
    plan = _windows_for(_item(path, float("inf"), kind="video"), ExtractConfig(max_duration_s=4))
    assert list(plan) == [Window(0.0, 4.0)]
    assert _windows_for(_item(path, 10.0, kind="video"), ExtractConfig()).note == ""


def test_short_video_with_very_many_frames_is_checked_in_bounded_work(tmp_path):
    path = write_video(tmp_path / "dense.mp4", [i / 400 for i in range(1400)], size=(16, 16))  # 3.5 s at 400 fps
    with Timer() as t:
        info = check_video(path, "mp4")
    assert info.duration_s == pytest.approx(3.5, abs=0.1) and t.s < 5


def test_frame_times_and_plan_helpers():
    assert plan_windows(10.0, 2.0, 2.0, frame_times=[0.0, 0.5, 9.0]) == [Window(0.0, 2.0)]
    assert plan_windows(10.0, 2.0, 2.0, frame_times=[0.0, 0.5, 9.0], min_frames=1) == [
        Window(0.0, 2.0), Window(8.0, 10.0)]
    assert plan_windows(10.0, 2.0, 2.0, frame_times=[]) == []
    ws = [Window(float(i), float(i + 1)) for i in range(10)]
    assert evenly_spaced(ws, 3) == [ws[0], ws[4], ws[9]] and evenly_spaced(ws, 20) == ws
    assert frame_times("/nonexistent.mp4") is None


def test_a_transport_stream_with_keyframes_far_apart_is_not_called_truncated(tmp_path):
    """MPEG-TS has no index: a seek near the end lands between keyframes (here one every 10 s),
    where nothing decodes; the packets still say the stream runs to its end."""
    import av

    path = tmp_path / "broadcast.ts"
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"preset": "ultrafast", "threads": "1", "g": "250"}
        for i in range(150):  # 6 s, one keyframe
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), "rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    info = check_video(path, sniff_file(path))
    assert 5.5 < info.duration_s < 6.5
    cut = tmp_path / "cut.ts"  # a TS declares no duration: a cut one is simply a shorter video
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert check_video(cut, sniff_file(cut)).duration_s < 4.5


def test_a_live_webm_without_a_duration_is_measured_from_its_packets(tmp_path):
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg executable not installed")
    path = tmp_path / "live.webm"
    with open(path, "wb") as out:  # written to a pipe: no duration, no cues in the header
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=6",
                        "-c:v", "libvpx", "-f", "webm", "-"], stdout=out, check=True)
    info = check_video(path, sniff_file(path))
    assert 5.5 < info.duration_s < 6.5


def _cover_first_mkv(path, frames=50, size=(64, 48), cover_default=False):
    """A Matroska file whose first video track is a one-frame MJPEG cover image (red, 96 px), the
    film (grey, 25 fps) second: the shape a downloader that embeds thumbnails leaves."""
    import av

    with av.open(str(path), "w", format="matroska") as c:
        cover = c.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 96, 96, "yuvj420p"
        film = c.add_stream("libx264", rate=25)
        film.width, film.height, film.pix_fmt = size[0], size[1], "yuv420p"
        film.options = {"preset": "ultrafast", "threads": "1"}
        if cover_default:  # the cover flagged as the default track, the film not (ffmpeg's own pick is the cover)
            cover.disposition, film.disposition = av.stream.Disposition.default, av.stream.Disposition(0)
        red = av.VideoFrame.from_ndarray(np.tile(np.array([255, 0, 0], np.uint8), (96, 96, 1)), "rgb24")
        for p in [*cover.encode(red.reformat(format="yuvj420p")), *cover.encode()]:
            c.mux(p)
        for i in range(frames):
            grey = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 100, np.uint8), "rgb24")
            grey.pts = i
            for p in film.encode(grey):
                c.mux(p)
        for p in film.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("cover_default", [False, True])
def test_a_cover_image_track_ahead_of_the_film_is_passed_over(tmp_path, cover_default):
    from omni.video.shots import detect_shots

    path = _cover_first_mkv(tmp_path / "with_cover.mkv", cover_default=cover_default)
    import av
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "mjpeg" and len(c.streams.video) == 2
        assert bool(c.streams.video[0].disposition & av.stream.Disposition.default) == cover_default
    info = check_video(path, "mkv")  # was: "truncated video: frames stop at 0.0s of 2.0s" (the cover)
    assert (info.width, info.height) == (64, 48) and info.duration_s == pytest.approx(2.0, abs=0.1)
    assert len(frame_times(path)) == 50
    assert detect_shots(path) == [(0.0, pytest.approx(2.0, abs=0.05))]
    backends = ["pyav", "decord"] + (["ffmpeg"] if shutil.which("ffmpeg") else [])
    for backend in backends:
        clip = decode_windows(path, [Window(0.0, 2.0)], 4, 48, backend=backend)[0]
        assert clip.shape[1:] == (48, 64, 3), backend  # the film's size, not the cover's square
        r, g = clip[..., 0].mean(), clip[..., 1].mean()
        assert abs(r - 100) < 8 and abs(g - 100) < 8, (backend, r, g)  # the grey film, not the red cover


def _growing_video(path, fmt: str, codec: str, big: int = 600, counts=(10, 5)):
    """A video whose stream declares 64x48 and whose frames from 1.0 s on are big x big (10 small
    frames, then 5 big ones, at 10 fps; ``counts`` alternate small and big): its header and first
    frames pass any check."""
    import av

    pix = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, pix
        pts = 0
        for k, n in enumerate(counts):
            w, h = (big, big) if k % 2 else (64, 48)
            enc = av.CodecContext.create(codec, "w")
            enc.width, enc.height, enc.pix_fmt = w, h, pix
            enc.time_base, enc.framerate = Fraction(1, 10), Fraction(10)
            if codec == "libx264":
                enc.options = {"preset": "ultrafast", "threads": "1"}
            packets = []
            for _ in range(n):
                img = np.full((h, w, 3), 120, np.uint8)
                img[: h // 2] = 30
                frame = av.VideoFrame.from_ndarray(img, "rgb24").reformat(format=pix)
                frame.pts, frame.time_base = pts, Fraction(1, 10)
                pts += 1
                packets += enc.encode(frame)
            for packet in packets + list(enc.encode(None)):
                packet.stream, packet.time_base = s, Fraction(1, 10)
                c.mux(packet)
    return path


GROWING = [("growing.ts", "mpegts", "libx264"),  # H.264: a new SPS mid-stream
           ("growing.mkv", "matroska", "mjpeg"),  # every frame a JPEG of its own size
           ("growing.avi", "avi", "mpeg4")]


@pytest.mark.parametrize("name,fmt,codec", GROWING)
def test_frames_that_outgrow_the_declared_size_are_refused_by_every_decoder(tmp_path, name, fmt, codec):
    path = _growing_video(tmp_path / name, fmt, codec)
    cap = 100_000  # 64x48 within, 600x600 past it
    import av
    with av.open(str(path)) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (64, 48)
    with pytest.raises(MediaError, match=r"^too many pixels: (600x600 video frames|a video frame) > 100000"):
        check_video(path, sniff_file(path), max_pixels=cap)  # (ingest: its first frame passes)
    backends = ["pyav", "decord", "auto"] + (["ffmpeg"] if shutil.which("ffmpeg") else [])
    for backend in backends:
        with pytest.raises(LimitError, match=r"^too many pixels: (\d+x600 video frames|a video frame) > 100000"):
            decode_windows(path, [Window(0.0, 1.5)], 4, 32, backend=backend, max_pixels=cap)
    # within the cap the same file decodes, small frames then big ones: the refusal is the cap's
    clip = decode_windows(path, [Window(0.0, 1.5)], 4, 32, backend="pyav", max_pixels=600 * 600)[0]
    assert clip.shape[0] == 4
    # frames before the big ones are decoded as before under the lower cap
    assert decode_windows(path, [Window(0.0, 0.8)], 4, 32, backend="pyav", max_pixels=cap)[0].shape[0] == 4


def test_extract_and_shot_detection_hold_the_pixel_cap(tmp_path):
    import pandas as pd

    from omni.video.extract import extract_items
    from omni.video.shots import detect_shots

    path = _growing_video(tmp_path / "growing.ts", "mpegts", "libx264")
    with pytest.raises(LimitError, match="^too many pixels: 600x600 video frames > 100000$"):
        detect_shots(path, max_pixels=100_000)
    work = [{"item_id": "s:1", "split": "web", "source": "s", "kind": "video", "label": 0, "path": str(path),
             "duration_s": 1.5, "window_s": None, "stride_s": None}]
    extract_items(work, tmp_path / "x", "extract/s", ExtractConfig(short_side=32), max_pixels=100_000)
    row = pd.read_parquet(tmp_path / "x" / "samples.parquet").iloc[0]
    assert row["extract_status"] == "failed"
    assert row["extract_reason"] == "decode failed: too many pixels: 600x600 video frames > 100000"
    extract_items(work, tmp_path / "y", "extract/s", ExtractConfig(short_side=32))  # the default cap: 8K
    assert pd.read_parquet(tmp_path / "y" / "samples.parquet")["extract_status"].tolist() == ["ok"]


def test_the_extract_stage_decodes_no_frame_past_ingest_max_video_pixels(tmp_path):
    """A 10 s clip whose frames at 5-6 s outgrow its header passes ingest's check (its start and
    end), and extract, decoding it whole, refuses it under the same cap."""
    import pandas as pd
    import yaml

    from omni import pipeline
    from omni.config import load_config
    from omni.demo.world import write_video as write_clip

    rng = np.random.default_rng(0)
    _growing_video(tmp_path / "grows.mkv", "matroska", "mjpeg", counts=(50, 10, 40))
    for name in ("plain.mp4", "val.mp4"):
        write_clip(tmp_path / name, rng.integers(0, 255, (20, 48, 64, 3), dtype=np.uint8), 10)
    (tmp_path / "train.csv").write_text("path,label\ngrows.mkv,a\nplain.mp4,b\n")
    (tmp_path / "val.csv").write_text("path,label\nval.mp4,a\n")
    reasons = {}
    for cap in (100_000, None):
        cfg = {"workdir": str(tmp_path / f"work{cap}"), "classes": ["a", "b"],
               "target": {"train": "train.csv", "val": "val.csv"}, "sources": [],
               "ingest": {"max_video_pixels": cap} if cap else {}}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        for stage in ("ingest", "extract"):
            pipeline.run_stage(load_config(tmp_path / "c.yaml"), stage)
        targets = pd.read_parquet(tmp_path / f"work{cap}" / "ingest" / "target" / "targets.parquet")
        assert targets["status"].tolist() == ["ok", "ok", "ok"], targets["reason"].tolist()
        samples = pd.read_parquet(tmp_path / f"work{cap}" / "extract" / "target" / "samples.parquet")
        reasons[cap] = dict(zip(samples["item_id"].map(dict(zip(targets["item_id"], targets["path"]))).map(
            lambda p: Path(p).name), samples["extract_reason"]))
    assert reasons[100_000] == {"grows.mkv": "decode failed: too many pixels: a video frame > 100000 "
                                "(refused by the decoder)", "plain.mp4": "", "val.mp4": ""}
    assert reasons[None] == {"grows.mkv": "", "plain.mp4": "", "val.mp4": ""}


def _many_streams(path, fmt: str, n: int, codec: str = "mpeg4"):
    """A video file of ``n`` small video streams, two frames each."""
    import av

    with av.open(str(path), "w", format=fmt) as c:
        streams = []
        for _ in range(n):
            s = c.add_stream(codec, rate=10)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
            if codec == "libx264":
                s.options = {"preset": "ultrafast", "threads": "1"}
            streams.append(s)
        for k in range(2):
            for s in streams:
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 60 * k + 20, np.uint8), "rgb24")
                frame.pts = k
                for packet in s.encode(frame):
                    c.mux(packet)
        for s in streams:
            for packet in s.encode():
                c.mux(packet)
    return path


@pytest.mark.parametrize("name,fmt", [("many.mkv", "matroska"), ("many.mp4", "mp4"), ("many.ts", "mpegts")])
def test_a_file_with_too_many_streams_is_refused_unopened(tmp_path, name, fmt):
    path = _many_streams(tmp_path / name, fmt, decode.MAX_STREAMS + 1)
    reason = rf"^too many streams: (more than|cannot be opened within) {decode.MAX_STREAMS}"
    with pytest.raises(MediaError, match=reason):
        check_video(path, sniff_file(path))
    backends = ["pyav", "decord", "auto"] + (["ffmpeg"] if shutil.which("ffmpeg") else [])
    for backend in backends:
        with pytest.raises(LimitError, match=reason):
            decode_windows(path, [Window(0.0, 0.2)], 2, 32, backend=backend)
    assert frame_times(path) is None
    ok = _many_streams(tmp_path / f"few.{name}", fmt, 3)  # a few streams: read as before
    assert check_video(ok, sniff_file(ok)).width == 64
    assert decode_windows(ok, [Window(0.0, 0.2)], 2, 32)[0].shape == (2, 32, 43, 3)


def test_probing_opens_no_decoder_only_the_stream_read_gets_one(tmp_path):
    """FFmpeg's probe would decode the first frames of every stream (a 6 MB file of 1,000 H.264
    streams cost 480 MB to open): the file is probed with no decoder, and only the stream read
    gets one."""
    path = _many_streams(tmp_path / "three.mkv", "matroska", 3, codec="libx264")
    with open_video(path) as c:
        assert [s.codec_context.pix_fmt for s in c.streams] == [None, None, None]  # no decoder saw a frame
        s = video_stream(c)
        assert len(list(capped_frames(c, s, 64 * 48))) == 2
        assert [o.codec_context.is_open for o in c.streams] == [o is s for o in c.streams]


def test_decord_reads_only_a_file_pyav_has_checked_within_the_cap(tmp_path):
    """decord's decoder takes no pixel cap, and its probe decodes every stream's first frames: it
    reads a file only once PyAV has checked those frames too. PyAV itself reads the film alone."""
    path = _cover_first_mkv(tmp_path / "with_cover.mkv")  # a 96x96 cover (9,216 px), a 64x48 film
    assert check_video(path, "mkv", max_pixels=5000).width == 64
    assert decode_windows(path, [Window(0.0, 2.0)], 4, 48, backend="pyav", max_pixels=5000)[0].shape[0] == 4
    with pytest.raises(LimitError, match="^too many pixels: 96x96 video frames > 5000$"):
        decode_windows(path, [Window(0.0, 2.0)], 4, 48, backend="decord", max_pixels=5000)
    assert decode_windows(path, [Window(0.0, 2.0)], 4, 48, backend="decord", max_pixels=20_000)[0].shape[0] == 4
