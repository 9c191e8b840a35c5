"""How stored frames become a model's input, and the augmentation policy (issue 33)."""
import numpy as np
import pandas as pd
import pytest
import torch

from omni.config import AugmentConfig, ConfigError, ModelConfig, config_from_dict
from omni.learning.data import ClipDataset, InputPolicy, consecutive_indices, finish_input, to_input
from omni.video.extract import frames_per_window
from omni.config import ExtractConfig
from omni.video.decode import Window
from omni.video.framestore import ShardWriter


def test_consecutive_frames_random_start_in_training_centre_at_evaluation():
    rng = np.random.default_rng(0)
    assert list(consecutive_indices(20, 8, False, rng)) == list(range(6, 14))
    starts = {int(consecutive_indices(20, 8, True, rng)[0]) for _ in range(200)}
    assert starts == set(range(13))  # every start from 0 to 12, nothing past the end
    assert all(np.all(np.diff(consecutive_indices(20, 8, True, rng)) == 1) for _ in range(20))
    # a clip shorter than the model's frames repeats its last frame
    assert list(consecutive_indices(5, 8, True, rng)) == [0, 1, 2, 3, 4, 4, 4, 4]
    assert list(consecutive_indices(20, 8, False, rng, offset=0.0)) == list(range(8))


def test_extract_stores_frames_at_a_fixed_rate():
    e = ExtractConfig()
    assert e.fps == 4.0
    assert frames_per_window([Window(0, 2.0)], e) == 8
    assert frames_per_window([Window(0, 10.0)], e) == 40
    assert frames_per_window([Window(0, 0.1)], e) == 1
    assert frames_per_window([Window(0, 600.0)], e) == e.max_frames_per_clip
    assert frames_per_window([Window(0, 10.0)], ExtractConfig(fps=None, frames_per_clip=8)) == 8


def test_squash_keeps_the_whole_frame_and_crop_cuts_it():
    frames = np.zeros((2, 40, 80, 3), np.uint8)
    frames[:, :, :8] = 255  # a white band at the left edge
    rng = np.random.default_rng(0)
    squash = to_input(frames, 16, False, rng, policy=InputPolicy(resize="squash"))
    crop = to_input(frames, 16, False, rng, policy=InputPolicy(resize="crop"))
    assert squash.shape == crop.shape == (3, 2, 16, 16)
    assert squash[:, :, :, 0].mean() > squash[:, :, :, -1].mean() + 1  # the band survives squashing
    assert torch.allclose(crop[:, :, :, 0], crop[:, :, :, -1])  # the centre crop loses it


def test_clip_normalisation_removes_a_clip_brightness_and_contrast():
    rng = np.random.default_rng(1)
    x = torch.rand(3, 4, 8, 8)
    p = InputPolicy(normalize="clip")
    a = finish_input(x.clone(), p, False, rng)
    b = finish_input(x.clone() * 0.5 + 0.3, p, False, rng)
    assert a.reshape(3, -1).mean(1).abs().max() < 1e-5
    # a darker, low-contrast copy of the same clip reads almost the same (the +0.05 keeps them apart a bit)
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.999


def test_augmentation_changes_training_clips_only():
    x = torch.rand(3, 4, 16, 16)
    p = InputPolicy(normalize="clip", augment=AugmentConfig())
    ev = finish_input(x.clone(), p, False, np.random.default_rng(0))
    tr = finish_input(x.clone(), p, True, np.random.default_rng(0))
    assert torch.equal(ev, finish_input(x.clone(), InputPolicy(normalize="clip"), True, np.random.default_rng(0)))
    assert not torch.allclose(ev, tr)
    assert tr.shape == ev.shape


def _dataset(tmp_path, flip: bool, pairs=()):
    """Two one-clip classes: a bright dot moving right ('right') and one moving left ('left')."""
    writer = ShardWriter(tmp_path / "frames", "s0")
    rows = []
    for label, direction in ((0, 1), (1, -1)):
        clip = np.zeros((8, 16, 16, 3), np.uint8)
        for t in range(8):
            clip[t, 6:10, 4 + direction * (t - 4) + 4: 4 + direction * (t - 4) + 6] = 255
        ref = writer.append(clip)
        rows.append({"item_id": f"i{label}", "sample_id": f"i{label}#0", "label": label,
                     "shard": f"frames/{ref['shard']}", **{k: ref[k] for k in ("offset", "t", "h", "w")}})
    writer.close()
    aug = AugmentConfig(flip=flip, flip_label_map=list(pairs), shift=0, gain=0, brightness=0, noise=0)
    m = ModelConfig(input_size=16, num_frames=8)
    return ClipDataset.for_model(pd.DataFrame(rows), tmp_path, m, train=True, augment=aug,
                                 class_names=["right", "left"])


def _direction(x: torch.Tensor) -> float:
    """+1 when the bright dot moves right over the clip, -1 when left."""
    cols = x.mean(dim=(0, 2))  # [T, W]
    centre = (cols.softmax(dim=1) * torch.arange(cols.shape[1])).sum(1)
    return float(torch.sign(centre[-1] - centre[0]))


def test_noise_augmentation_is_gaussian_per_clip_reproducible_and_different_per_draw():
    """train.augment.noise: each training clip gets independent N(0, noise^2) values per pixel,
    the same for the same draw (reproducible from the seed), others for the next draw."""
    from omni.learning import data

    aug = AugmentConfig(shift=0, gain=0, brightness=0, noise=0.05)
    policy = InputPolicy.of(ModelConfig(), aug)
    x = torch.rand(3, 8, 64, 64)
    clean = finish_input(x.clone(), InputPolicy.of(ModelConfig(), None), True, np.random.default_rng(0))

    def noise(seed):
        return finish_input(x.clone(), policy, True, np.random.default_rng(seed)) - clean

    a, b = noise(1), noise(2)
    for n in (a, b):
        assert abs(float(n.mean())) < 0.002 and abs(float(n.std()) - 0.05) < 0.002
        flat = n.flatten()
        assert abs(float(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1])) < 0.02  # independent pixels
    assert torch.equal(noise(1), a) and not torch.allclose(a, b)
    assert abs(float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])) < 0.02
    big = data.noise_slice(data.NOISE_BANK_SIZE + 5, np.random.default_rng(0))  # past the bank: fresh draws
    assert big.shape == (data.NOISE_BANK_SIZE + 5,) and abs(float(big.std()) - 1) < 0.01
    assert finish_input(x.clone(), policy, False, np.random.default_rng(1)).equal(clean)  # evaluation: no noise


def test_no_mirroring_by_default(tmp_path):
    ds = _dataset(tmp_path, flip=False)
    for _ in range(20):
        x, y = ds[0]
        assert y == 0 and _direction(x) == 1


def test_mirroring_swaps_the_labels_of_flip_label_map(tmp_path):
    ds = _dataset(tmp_path, flip=True, pairs=[("right", "left")])
    seen = set()
    for _ in range(40):
        x, y = ds[0]
        seen.add(y)
        assert _direction(x) == (1 if y == 0 else -1)  # a mirrored 'right' is learned as 'left'
    assert seen == {0, 1}


def test_mirroring_without_a_map_keeps_labels(tmp_path):
    ds = _dataset(tmp_path, flip=True)
    dirs = {(_direction(x), y) for x, y in (ds[0] for _ in range(40))}
    assert dirs == {(1, 0), (-1, 0)}


def test_flip_label_map_names_classes(tmp_path):
    base = {"workdir": str(tmp_path / "w"), "classes": ["right", "left"],
            "target": {"train": "t.csv", "val": "v.csv"}}
    cfg = config_from_dict({**base, "train": {"augment": {"flip": True, "flip_label_map": [["right", "left"]]}}},
                           tmp_path)
    assert cfg.train.augment.flip_label_map == [("right", "left")]
    with pytest.raises(ConfigError, match="augment"):
        config_from_dict({**base, "train": {"augment": {"flipp": True}}}, tmp_path)
    with pytest.raises(ValueError, match="not a class"):
        _dataset(tmp_path, flip=True, pairs=[("right", "up")])


def test_models_saved_before_the_policy_read_their_old_input(tmp_path):
    from omni.learning.models import build_model
    from omni.learning.train import load_model

    old = ModelConfig(arch="c3d_small", width=4, input_size=32).model_dump(mode="json")
    for k in ("frame_sampling", "resize", "normalize"):
        old.pop(k)
    torch.save({"model": build_model("c3d_small", 2, 4).state_dict(), "config": old, "num_classes": 2,
                "class_names": ["a", "b"]}, tmp_path / "model.pt")
    _, m, _ = load_model(tmp_path / "model.pt", "cpu")
    assert (m.frame_sampling, m.resize, m.normalize) == ("segments", "crop", "dataset")
