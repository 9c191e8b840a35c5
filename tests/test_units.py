"""Small pure functions: windows, resampling, leak matching, cache keys, frame store."""
import numpy as np
import pytest
from PIL import Image

from omni import cache
from omni.fetching import leak
from omni.learning.data import resampling_weights, temporal_indices
from omni.video.extract import plan_windows
from omni.video.framestore import FrameStore, ShardWriter


def test_windows_are_consecutive_and_cover_the_video():
    w = plan_windows(10.0, 3.0, 3.0)
    assert [(x.start_s, x.end_s) for x in w] == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0)]  # 1 s tail < half window
    w = plan_windows(11.0, 3.0, 3.0)
    assert w[-1].start_s == 9.0 and w[-1].end_s == 11.0  # 2 s tail >= half a window is kept
    assert [(x.start_s, x.end_s) for x in plan_windows(2.0, 10.0, 10.0)] == [(0.0, 2.0)]  # shorter than a window
    overlapping = plan_windows(10.0, 4.0, 2.0)
    assert [x.start_s for x in overlapping] == [0.0, 2.0, 4.0, 6.0]
    shots = plan_windows(10.0, 3.0, 3.0, shots=[(0.0, 4.0), (4.0, 10.0)])
    assert all(not (x.start_s < 4.0 < x.end_s) for x in shots)  # no window crosses a cut


def test_shot_detection_finds_a_hard_cut(tmp_path):
    from omni.demo.world import write_video
    from omni.video.shots import detect_shots

    frames = np.concatenate([np.full((20, 32, 32, 3), 30, np.uint8), np.full((20, 32, 32, 3), 220, np.uint8)])
    frames[:20, :, :, 0] = 200
    write_video(tmp_path / "cut.mp4", frames, 10, crf=10)
    shots = detect_shots(tmp_path / "cut.mp4", 0.5)
    assert len(shots) == 2 and abs(shots[0][1] - 2.0) < 0.15


def test_resampling_power_flattens_classes_and_cap_limits_them():
    labels = np.array([0] * 90 + [1] * 10)
    p1 = resampling_weights(labels, 1.0, None)
    assert p1[labels == 0].sum() == pytest.approx(0.9)
    p05 = resampling_weights(labels, 0.5, None)
    assert p05[labels == 0].sum() == pytest.approx(np.sqrt(90) / (np.sqrt(90) + np.sqrt(10)))
    capped = resampling_weights(labels, None, 20)
    assert capped[labels == 0].sum() * 100 == pytest.approx(20 / (20 + 10) * 100, rel=1e-6)


def test_temporal_sampling_is_one_index_per_segment():
    rng = np.random.default_rng(0)
    idx = temporal_indices(16, 4, train=False, rng=rng)
    assert list(idx) == [2, 6, 10, 14]
    for _ in range(20):
        t = temporal_indices(16, 4, train=True, rng=rng)
        assert all(4 * k <= v < 4 * (k + 1) for k, v in enumerate(t))


def test_leak_matching_finds_a_cropped_reencoded_copy_and_not_others():
    rng = np.random.default_rng(0)
    from PIL import Image

    frames = [np.asarray(Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((64, 48), 3))
              for _ in range(5)]
    ref = [np.stack([leak.thumbnail(f)]) for f in frames]
    crop = frames[2][2:-2, 3:-3]
    mirrored = frames[4][:, ::-1]
    query = [np.stack([leak.thumbnail(crop)]), np.stack([leak.thumbnail(255 - frames[0])]),
             np.stack([leak.thumbnail(mirrored)])]
    sims, which = leak.best_matches(query, ref)
    assert which[0] == 2 and sims[0] > 0.85  # the default leak threshold
    assert sims[1] < 0.5
    assert which[2] == 4 and sims[2] > 0.95  # a mirrored copy is still a copy
    assert leak.decode(leak.encode(ref[0])).shape == ref[0].shape


def _smooth_clip(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """A natural-looking clip (smooth gradients and a moving disc): what JPEG is made for."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(t):
        base = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 60 + 20 * i)], -1)
        cy, cx = h // 2, int(w * (0.2 + 0.6 * i / max(1, t - 1)))
        base[(yy - cy) ** 2 + (xx - cx) ** 2 < (h // 5) ** 2] = rng.integers(0, 255, 3)
        frames.append(base)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def test_jpeg_frame_store_is_small_close_and_decodes_only_what_is_indexed(tmp_path, monkeypatch):
    from omni.video import framestore

    clip = _smooth_clip(8, 96, 128, 0)
    still = _smooth_clip(1, 60, 80, 1)
    raw_w, jpg_w = ShardWriter(tmp_path, "r"), ShardWriter(tmp_path, "j", codec="jpeg", quality=90)
    refs = {name: (w.append(clip), w.append(still)) for name, w in (("raw", raw_w), ("jpeg", jpg_w))}
    raw_w.close()
    jpg_w.close()
    assert (tmp_path / "j.jpgs").stat().st_size < 0.15 * (tmp_path / "r.bin").stat().st_size
    store = FrameStore(tmp_path)
    c, s = (store.read(**r) for r in refs["jpeg"])
    assert c.shape == clip.shape and s.shape == still.shape and len(c) == 8
    assert np.abs(np.asarray(c).astype(int) - clip).mean() < 3
    assert np.abs(np.asarray(s[0]).astype(int) - still[0]).mean() < 3
    decoded = []
    real = framestore.JpegFrames._decode
    monkeypatch.setattr(framestore.JpegFrames, "_decode", lambda self, f: decoded.extend(f) or real(self, f))
    raw_c = store.read(**refs["raw"][0])
    for key in (([1, 5], slice(10, 50), slice(20, 90)), (3,), (slice(0, 8, 2), slice(None), slice(5, 9))):
        decoded.clear()
        got = c[key if len(key) > 1 else key[0]]
        assert got.shape == raw_c[key if len(key) > 1 else key[0]].shape
        assert len(decoded) == len(np.arange(8)[key[0]].reshape(-1))  # only the frames asked for
    with pytest.raises(ValueError, match="unknown frame codec"):
        ShardWriter(tmp_path, "x", codec="png")


def test_stage_keys_change_with_settings_and_inputs():
    a = cache.stage_key("x", 1, {"k": 1}, {"up": "abc"})
    assert a == cache.stage_key("x", 1, {"k": 1}, {"up": "abc"})
    assert a != cache.stage_key("x", 1, {"k": 2}, {"up": "abc"})
    assert a != cache.stage_key("x", 2, {"k": 1}, {"up": "abc"})
    assert a != cache.stage_key("x", 1, {"k": 1}, {"up": "abd"})


def test_frame_store_round_trip(tmp_path):
    w = ShardWriter(tmp_path, "shard-00000")
    a = np.random.default_rng(0).integers(0, 255, (3, 5, 7, 3), dtype=np.uint8)
    b = np.random.default_rng(1).integers(0, 255, (1, 4, 4, 3), dtype=np.uint8)
    ra, rb = w.append(a), w.append(b)
    assert not (tmp_path / "shard-00000.bin").exists()  # only visible once complete
    w.close()
    store = FrameStore(tmp_path)
    assert (store.read(**ra) == a).all() and (store.read(**rb) == b).all()


def test_jpeg_crops_decode_at_a_reduced_scale_only_when_the_input_size_allows(tmp_path):
    clip = _smooth_clip(4, 240, 320, 2)
    w = ShardWriter(tmp_path, "j", codec="jpeg", quality=95)
    ref = w.append(clip)
    w.close()
    store = FrameStore(tmp_path)
    crop = (slice(0, 4, 2), slice(20, 220), slice(40, 260))
    full = store.read(**ref)[crop]
    assert full.shape == (2, 200, 220, 3)
    small = store.read(**ref, min_side=48)[crop]  # a 48 px model input: 1/4 scale still gives >= 48 px
    assert small.shape == (2, 50, 55, 3)
    reduced = np.asarray(Image.fromarray(full[0]).resize((55, 50), Image.Resampling.BOX)).astype(int)
    assert np.abs(small[0].astype(int) - reduced).mean() < 4  # the same region, fewer pixels
    assert store.read(**ref, min_side=200)[crop].shape == (2, 200, 220, 3)  # too big to reduce
