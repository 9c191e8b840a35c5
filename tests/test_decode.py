import hashlib

import numpy as np
import pytest

from omni.video.decode import Window, decode_windows, load_image, sample_times, scaled_size
from omni.demo.world import write_video

REAL = ["demo.mp4", "test.mp4", "test.avi", "ntu_sample.avi", "demo_skeleton.mp4", "demo_spatiotemporal_det.mp4",
        "test_video_structuralize.mp4", "rawvideo_dataset/part_0.mp4"]


def test_scaled_size_keeps_aspect_and_never_upscales():
    assert scaled_size(1920, 1080, 320) == (569, 320)
    assert scaled_size(240, 320, 120) == (120, 160)
    assert scaled_size(100, 80, 320) == (100, 80)


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_every_real_file_decodes(realdata, name, backend):
    path = realdata / name
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    out = decode_windows(path, [Window(0.0, 1.0), Window(0.5, 1.0)], 4, 64, backend=backend)
    assert [o.shape[0] for o in out] == [4, 4]
    assert min(out[0].shape[1:3]) == 64 and out[0].dtype == np.uint8
    assert out[0].std() > 1  # real pixels, not a blank frame
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_ffmpeg_backend_when_installed(realdata):
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg executable not installed")
    out = decode_windows(realdata / "demo_skeleton.mp4", [Window(0.0, 2.0)], 4, 48, backend="ffmpeg")
    assert out[0].shape[0] == 4 and min(out[0].shape[1:3]) == 48


def test_sampled_frames_are_the_right_ones(tmp_path):
    """A clip whose frame k has brightness 10*k: each sampled time must return its frame."""
    frames = np.stack([np.full((32, 32, 3), 10 * k, np.uint8) for k in range(20)])
    path = tmp_path / "ramp.mp4"
    write_video(path, frames, fps=10, crf=0)
    win = Window(0.0, 2.0)
    got = decode_windows(path, [win], 5, 32, backend="pyav")[0]
    expect = [10 * int(t * 10) for t in sample_times(win, 5)]  # frame shown at each time
    assert np.allclose(got.mean(axis=(1, 2, 3)), expect, atol=3)


def test_images_load_at_the_short_side(media):
    img = load_image(media / "test.jpg", 60)
    assert img.shape == (1, 60, 80, 3)


@pytest.mark.parametrize("rotation,band", [(-90, "top"), (90, "bottom"), (180, "right")])
def test_a_phone_video_is_decoded_upright_as_players_show_it(tmp_path, rotation, band):
    """A display-matrix rotation (phone videos): frames come out turned as ffmpeg and players show
    them, by the default backend and by the ffmpeg fallback, and ingest reports the shown size."""
    import shutil

    import av

    from omni.video.media import check_video

    path = tmp_path / "phone.mp4"
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :16] = 255  # a white band on the left of the stored picture
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.set_display_rotation(rotation)
        for _ in range(10):
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    info = check_video(path, "mp4")
    assert (info.width, info.height) == ((64, 48) if rotation == 180 else (48, 64))
    backends = ["pyav"] + (["ffmpeg"] if shutil.which("ffmpeg") else [])
    for backend in backends:
        frame = decode_windows(path, [Window(0.0, 0.5)], 1, 48, backend=backend)[0][0, :, :, 0].astype(float)
        assert frame.shape == ((48, 64) if rotation == 180 else (64, 48)), backend
        edges = {"top": frame[:4].mean(), "bottom": frame[-4:].mean(), "left": frame[:, :4].mean(),
                 "right": frame[:, -4:].mean()}
        assert max(edges, key=edges.get) == band, (backend, edges)
