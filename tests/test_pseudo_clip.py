import numpy as np
from PIL import Image

from omni.learning.pseudo_clip import as_clip, replicate, warp_clip


def test_replicate_repeats_the_frame(realdata):
    img = np.asarray(Image.open(realdata / "test.jpg").convert("RGB"))
    clip = replicate(img, 8)
    assert clip.shape == (8, 240, 320, 3) and (clip == img).all()


def test_warp_has_the_right_shape_stays_in_bounds_and_moves(realdata):
    img = np.asarray(Image.open(realdata / "test.jpg").convert("RGB"))
    clip = warp_clip(img, 8, 0.1, np.random.default_rng(0))
    assert clip.shape == (8, 240, 320, 3) and clip.dtype == np.uint8
    # every pixel samples the image: no black or padded border appears
    assert clip.min() >= img.min() and clip.max() <= img.max()
    lum = clip.astype(float).mean(-1)
    assert (lum[:, :3, :].mean() > 5) and (lum[:, -3:, :].mean() > 5)
    # consecutive frames differ (it moves), and the motion is smooth (small steps)
    steps = [np.abs(clip[k + 1].astype(float) - clip[k]).mean() for k in range(7)]
    assert min(steps) > 0.5
    assert np.abs(clip[7].astype(float) - clip[0]).mean() > max(steps)


def test_as_clip_only_changes_single_frames():
    video = np.zeros((5, 8, 8, 3), np.uint8)
    assert as_clip(video, 8, "warp", 0.1, np.random.default_rng()) is video
    one = np.random.default_rng(0).integers(0, 255, (1, 16, 16, 3), dtype=np.uint8)
    assert as_clip(one, 4, "replicate", 0.1, np.random.default_rng()).shape == (4, 16, 16, 3)


def test_training_pseudo_clips_are_the_warped_images_cropped_in_one_pass(realdata):
    """What the student sees of a web image: the same warped pseudo-clip (same random draws)
    as warping full frames and then cropping, sampled in one pass; replication is exact."""
    import torch

    from omni.learning.data import to_input, warped_input

    img = np.asarray(Image.open(realdata / "test.jpg").convert("RGB").resize((92, 69)))
    for train in (True, False):
        r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
        ref = to_input(warp_clip(img, 8, 0.1, r1), 48, train, r1)
        got = warped_input(img, 8, 0.1, 48, train, r2)
        assert got.shape == (3, 8, 48, 48)
        assert (got - ref).abs().mean() < 0.05 * ref.std()  # resampling differences only
        assert r1.random() == r2.random()  # the same draws were consumed
        # it moves: the first and last frames differ
        assert (got[:, 0] - got[:, -1]).abs().mean() > 0.1 * ref.std()
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    one = to_input(img[None], 48, True, r1).expand(-1, 4, -1, -1)
    assert torch.equal(one, to_input(replicate(img, 4), 48, True, r2))
