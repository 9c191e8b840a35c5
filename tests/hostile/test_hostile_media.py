"""Hostile media: pixels that must come out right, headers that lie, bombs in frame size and
in duration. Every case gives the right answer or a clear reason, in bounded time."""
import io
import os
import shutil
import struct
import zlib
from fractions import Fraction

import numpy as np
import pytest
from hostile_helpers import Timer
from PIL import Image, features

from omni.config import ExtractConfig
from omni.decode import DecodeError, decode_windows, evenly_spaced, frame_times, load_image, Window
from omni.extract import _windows_for, plan_windows
from omni.media import MIN_SIDE, MediaError, check_image, check_video, jpeg_data_shortfall, sniff_file, sniff_type

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
    from omni.shots import detect_shots

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
