"""Small pure functions: windows, resampling, leak matching, cache keys, frame store."""
import numpy as np
import pytest

from omni import cache, leak
from omni.data import resampling_weights, temporal_indices
from omni.extract import plan_windows
from omni.framestore import FrameStore, ShardWriter


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
    from omni.shots import detect_shots

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
