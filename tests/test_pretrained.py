"""Pretrained weights as users name them: timm names from a Hugging Face cache, torchvision
weights from TORCH_HOME, local checkpoints (timm, torchvision references, MMAction2), all offline.

Each cache is laid out here by hand, the way huggingface_hub and torch.hub lay theirs out, with
small networks made in the test; the real loading code must then load exactly those tensors."""
import argparse
import hashlib
import re
import socket
from pathlib import Path

import pytest
import torch
import yaml

from omni.learning.models import build_model

TIMM_TAG = "test_resnet.r160_in1k"  # timm's own tiny test network (373k parameters), a real pretrained tag
TV_NAME = "R2Plus1D_18_Weights.KINETICS400_V1"
TV_FILE = "r2plus1d_18-91a641e6.pth"  # the file name in the weights' download URL


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Caches under tmp_path, the hub offline, and any network connection an error."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"network use: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tmp_path


def _hf_cache(root: Path, repo: str, state: dict) -> Path:
    """``state`` as ``model.safetensors`` of ``repo``, laid out as huggingface_hub does: the
    bytes in blobs/<sha256>, a snapshot folder named by the commit with a relative link to the
    blob, and refs/main naming the commit."""
    from safetensors.torch import save_file

    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "blobs").mkdir(parents=True)
    tmp = folder / "blobs" / "tmp"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    blob = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.rename(folder / "blobs" / blob)
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(Path("..") / ".." / "blobs" / blob)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    return snap / "model.safetensors"


def _timm_weights(offline) -> dict:
    import timm

    torch.manual_seed(1)
    state = timm.create_model("test_resnet", num_classes=1000).state_dict()  # as published: 1000 classes
    _hf_cache(offline / "hf", f"timm/{TIMM_TAG}", state)
    return state


def _same_but_head(model_state: dict, saved: dict, head: str, prefix: str = "") -> None:
    body = [k for k in saved if not k.startswith(head + ".")]
    assert body and all(torch.equal(model_state[prefix + k], saved[k]) for k in body)


def test_a_timm_name_loads_the_cached_weights_offline_with_a_new_classifier(offline):
    saved = _timm_weights(offline)
    model = build_model("tsn_test_resnet", 5, pretrained=f"timm:{TIMM_TAG}")
    got = model.state_dict()
    _same_but_head(got, saved, "fc", prefix="backbone.")
    assert got["backbone.fc.weight"].shape == (5, saved["fc.weight"].shape[1])  # the user's 5 classes
    with torch.no_grad():
        assert model(torch.randn(2, 3, 2, 32, 32)).shape == (2, 5)

    # a trained model scores with the weights' input, and never reads the cache again
    import shutil

    from omni.config import ModelConfig
    from omni.learning.data import InputPolicy
    from omni.learning.train import load_model

    m = ModelConfig(arch="tsn_test_resnet", pretrained=f"timm:{TIMM_TAG}", input_size="weights", normalize="weights")
    torch.save({"model": got, "config": m.model_dump(mode="json"), "num_classes": 5}, offline / "model.pt")
    shutil.rmtree(offline / "hf")
    loaded, mcfg, _ = load_model(offline / "model.pt", "cpu")
    assert torch.equal(loaded.state_dict()["backbone.conv1.0.weight"], saved["conv1.0.weight"])
    assert mcfg.input_size == 160 and InputPolicy.of(mcfg).mean == (0.5, 0.5, 0.5)


def test_a_torchvision_name_loads_from_torch_home_with_a_new_classifier(offline):
    import torchvision

    torch.manual_seed(2)
    saved = torchvision.models.video.r2plus1d_18(num_classes=400).state_dict()  # Kinetics-400's head
    (offline / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(saved, offline / "torch" / "hub" / "checkpoints" / TV_FILE)
    model = build_model("r2plus1d_18", 7, pretrained=f"torchvision:{TV_NAME}")
    got = model.state_dict()
    _same_but_head(got, saved, "fc")
    assert got["fc.weight"].shape == (7, 512)


def _config(tmp_path, model: dict, extra: dict | None = None) -> Path:
    (tmp_path / "train.csv").write_text("path,label\na.mp4,a\n")
    (tmp_path / "val.csv").write_text("path,label\nb.mp4,b\n")
    cfg = {"workdir": "work", "classes": ["a", "b"], "target": {"train": "train.csv", "val": "val.csv"},
           "train": {"model": model}, **(extra or {})}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("model,message", [
    ({"arch": "tsn_test_resnet", "pretrained": f"timm:{TIMM_TAG}"},
     r"train\.model\.pretrained: timm:test_resnet\.r160_in1k: not in the Hugging Face cache \(looked for "
     r"\S*/hf/models--timm--test_resnet\.r160_in1k/snapshots/<refs/main>/model\.safetensors"),
    ({"arch": "r2plus1d_18", "pretrained": f"torchvision:{TV_NAME}"},
     r"train\.model\.pretrained: torchvision:R2Plus1D_18_Weights\.KINETICS400_V1: not in the torch hub cache "
     r"\(looked for \S*/torch/hub/checkpoints/r2plus1d_18-91a641e6\.pth"),
    ({"arch": "tsn_resnet18", "pretrained": f"timm:{TIMM_TAG}"},
     r"timm:test_resnet\.r160_in1k are weights of tsn_test_resnet, not of arch tsn_resnet18: "
     r"set arch: tsn_test_resnet"),
    ({"arch": "r3d_18", "pretrained": f"torchvision:{TV_NAME}"}, r"are weights of r2plus1d_18, not of arch r3d_18"),
    ({"arch": "tsn_resnet50", "pretrained": "timm:resnet50.no_such_tag"}, r"not a timm pretrained model tag"),
    ({"arch": "r2plus1d_18", "pretrained": "torchvision:R2Plus1D_18_Weights.NOPE"}, r"not a torchvision weights name"),
    ({"pretrained": "weights/missing.pt"}, r"train\.model\.pretrained: no such file: \S*/weights/missing\.pt"),
])
def test_weights_that_are_not_there_are_one_error_before_any_stage(offline, capsys, model, message):
    from flows.cli import main

    path = _config(offline, model)
    assert main(["teacher", "--no-prefect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("omni: error:") == 1 and re.search(message, err), err
    assert not (offline / "work").exists()  # refused before anything was written


def test_the_cached_name_passes_the_check_and_the_cache_is_read_from_the_environment(offline):
    from omni.config import load_config
    from omni.pipeline.checks import check_config

    _timm_weights(offline)
    check_config(load_config(_config(offline, {"arch": "tsn_test_resnet", "pretrained": f"timm:{TIMM_TAG}"})))


def _mmaction_resnet_names(key: str) -> str:
    """A timm / torchvision ResNet key as MMAction2's ResNet (ConvModules) names it: written out
    by hand here, the reverse of what omni maps."""
    key = re.sub(r"^conv1\.", "conv1.conv.", key)
    key = re.sub(r"^bn1\.", "conv1.bn.", key)
    key = re.sub(r"^(layer\d\.\d)\.conv(\d)\.", r"\1.conv\2.conv.", key)
    key = re.sub(r"^(layer\d\.\d)\.bn(\d)\.", r"\1.conv\2.bn.", key)
    key = re.sub(r"^(layer\d\.\d)\.downsample\.0\.", r"\1.downsample.conv.", key)
    return re.sub(r"^(layer\d\.\d)\.downsample\.1\.", r"\1.downsample.bn.", key)


def test_an_mmaction2_tsn_resnet_checkpoint_maps_onto_the_timm_resnet(tmp_path):
    import timm

    torch.manual_seed(3)
    src = timm.create_model("resnet18", num_classes=1000).state_dict()
    mm = {"backbone." + _mmaction_resnet_names(k): v for k, v in src.items() if not k.startswith("fc.")}
    assert "backbone.layer2.0.downsample.conv.weight" in mm and "backbone.conv1.bn.running_mean" in mm
    mm.update({"cls_head.fc_cls.weight": torch.randn(400, 512), "cls_head.fc_cls.bias": torch.randn(400)})
    torch.save({"meta": {"mmaction_version": "1.2.0", "epoch": 100}, "state_dict": mm}, tmp_path / "tsn_r18.pth")
    model = build_model("tsn_resnet18", 6, pretrained=tmp_path / "tsn_r18.pth")
    _same_but_head(model.state_dict(), src, "fc", prefix="backbone.")
    assert model.backbone.fc.weight.shape == (6, 512)


def test_torchvision_imagenet_resnet_weights_map_onto_the_timm_resnet_by_name(tmp_path):
    import torchvision

    torch.manual_seed(5)
    src = torchvision.models.resnet18().state_dict()
    torch.save(src, tmp_path / "resnet18-f37072fd.pth")
    model = build_model("tsn_resnet18", 3, pretrained=tmp_path / "resnet18-f37072fd.pth")
    _same_but_head(model.state_dict(), src, "fc", prefix="backbone.")


def test_a_3d_checkpoint_whose_layout_does_not_map_is_an_error_saying_how_much_did(tmp_path):
    # MMAction2's ResNet3d names (conv1.conv, layer1.0.conv1.conv, ...) and shapes (1x3x3 in-block
    # kernels) are not torchvision's r3d_18 (stem.0, layer1.0.conv1.0, 3x3x3): nothing maps
    mm = {"backbone.conv1.conv.weight": torch.randn(64, 3, 3, 7, 7), "backbone.conv1.bn.weight": torch.ones(64),
          "backbone.layer1.0.conv1.conv.weight": torch.randn(64, 64, 1, 3, 3),
          "cls_head.fc_cls.weight": torch.randn(400, 512)}
    torch.save({"state_dict": mm}, tmp_path / "slowonly.pth")
    from omni.learning.pretrained import PretrainedError

    with pytest.raises(PretrainedError, match=r"only 0 of the \d+ tensors of r3d_18 .* missing e\.g\. stem\.0\.weight"):
        build_model("r3d_18", 4, pretrained=tmp_path / "slowonly.pth")


def test_training_checkpoints_of_timm_and_the_torchvision_references_load(tmp_path):
    import timm

    torch.manual_seed(4)
    src = timm.create_model("test_resnet", num_classes=3).state_dict()
    torch.save({"epoch": 9, "arch": "test_resnet", "state_dict": src, "state_dict_ema": src,
                "optimizer": {}, "args": argparse.Namespace(lr=0.1, model="test_resnet")}, tmp_path / "timm.pth.tar")
    model = build_model("tsn_test_resnet", 3, pretrained=tmp_path / "timm.pth.tar")
    _same_but_head(model.state_dict(), src, "", prefix="backbone.")  # same classes: the classifier too
    assert torch.equal(model.backbone.fc.weight, src["fc.weight"])

    ref = build_model("c3d_small", 10, width=8).state_dict()
    torch.save({"model": {"module." + k: v for k, v in ref.items()}, "optimizer": {}, "lr_scheduler": {},
                "epoch": 3, "args": argparse.Namespace(lr=0.01)}, tmp_path / "checkpoint.pth")
    model = build_model("c3d_small", 4, width=8, pretrained=tmp_path / "checkpoint.pth")
    _same_but_head(model.state_dict(), ref, "head.3")
    assert model.head[-1].weight.shape == (4, 64)  # 10 classes saved, 4 wanted: a new classifier


def test_input_size_and_normalisation_come_from_the_weights(tmp_path):
    import numpy as np

    from omni.config import ConfigError, load_config
    from omni.learning.data import InputPolicy, finish_input

    cfg = load_config(_config(tmp_path, {"arch": "tsn_test_resnet", "pretrained": f"timm:{TIMM_TAG}",
                                         "input_size": "weights", "normalize": "weights"}),
                      ["teacher.video.arch=r2plus1d_18", f"teacher.video.pretrained=torchvision:{TV_NAME}",
                       "teacher.video.input_size=weights", "teacher.video.normalize=weights"])
    assert cfg.train.model.input_size == 160 and cfg.teacher.video.input_size == 112
    grey = torch.full((3, 2, 4, 4), 0.75)
    x = finish_input(grey.clone(), InputPolicy.of(cfg.train.model), False, np.random.default_rng(0))
    assert torch.allclose(x, torch.full_like(x, 0.5))  # test_resnet's (0.75 - 0.5) / 0.5
    x = finish_input(grey.clone(), InputPolicy.of(cfg.teacher.video), False, np.random.default_rng(0))
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([(0.75 - 0.43216) / 0.22803, (0.75 - 0.394666) / 0.22145,
                                                       (0.75 - 0.37645) / 0.216989]))
    with pytest.raises(ConfigError, match=r"normalize: weights needs pretrained to name timm: or torchvision:"):
        load_config(_config(tmp_path, {"pretrained": "w.pt", "normalize": "weights"}))
    with pytest.raises(ConfigError, match=r"input_size: weights: .*a local file carries no input size"):
        load_config(_config(tmp_path, {"pretrained": "w.pt", "input_size": "weights"}))


def test_the_backbone_learns_at_its_share_of_the_rate_and_the_classifier_at_the_full_rate():
    from omni.config import ModelConfig
    from omni.learning.train import build_optimizer

    model = build_model("tsn_test_resnet", 5)
    plain = build_optimizer(model, ModelConfig(lr=0.01))
    assert [g["lr"] for g in plain.param_groups] == [0.01, 0.01]  # as before: decay and no-decay groups
    opt = build_optimizer(model, ModelConfig(lr=0.01, backbone_lr_mult=0.1))
    head = {id(model.backbone.fc.weight), id(model.backbone.fc.bias)}
    for g in opt.param_groups:
        ids = {id(p) for p in g["params"]}
        assert ids <= head or not ids & head
        assert g["lr"] == (0.01 if ids <= head else pytest.approx(0.001))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def _two_clips(tmp_path, m):
    import numpy as np
    import pandas as pd

    from omni.learning.data import ClipDataset
    from omni.video.framestore import ShardWriter

    w = ShardWriter(tmp_path / "frames", "shard-00000")
    refs = [w.append(np.random.default_rng(i).integers(0, 255, (8, 36, 36, 3), np.uint8)) for i in range(2)]
    w.close()
    rows = pd.DataFrame([{**r, "shard": "frames/" + r["shard"], "label": i, "sample_id": f"s{i}", "item_id": f"i{i}",
                          "split": "train", "source": "target", "kind": "video"} for i, r in enumerate(refs)])
    return ClipDataset.for_model(rows, tmp_path, m, train=True)


def test_frozen_batchnorm_keeps_the_loaded_statistics_while_the_weights_learn(tmp_path):
    from omni.config import ModelConfig
    from omni.learning.train import fit

    src = build_model("c3d_patch", 2, width=8)
    for m in src.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    out = {}
    for freeze in (True, False):
        m = ModelConfig(steps=3, width=8, input_size=32, batch_size=2, pretrained=str(tmp_path / "w.pt"),
                        freeze_bn=freeze)
        fit(m, ["a", "b"], _two_clips(tmp_path / f"data{freeze}", m), tmp_path / f"run{freeze}", "k")
        out[freeze] = torch.load(tmp_path / f"run{freeze}" / "model.pt", weights_only=False)["model"]
    key = "features.1.running_mean"
    assert torch.equal(out[True][key], src.state_dict()[key])  # frozen: the loaded statistics
    assert not torch.equal(out[False][key], src.state_dict()[key])  # not frozen: updated by the batches
    assert not torch.equal(out[True]["features.0.weight"], src.state_dict()["features.0.weight"])  # still learns


def test_new_settings_at_their_defaults_leave_every_key_as_it_was_and_the_file_is_keyed_by_content(tmp_path):
    from omni import pipeline
    from omni.config import load_config
    from omni.pipeline.keys import unit_settings

    cfg = load_config(_config(tmp_path, {}))
    for unit in ("teacher/video", "train/baseline"):
        s = unit_settings(cfg, unit)
        m = s["model"] if unit.startswith("teacher") else s["train"]["model"]
        assert not {"backbone_lr_mult", "freeze_bn"} & set(m)
    tuned = load_config(_config(tmp_path, {"backbone_lr_mult": 0.1, "freeze_bn": True}))
    assert unit_settings(tuned, "train/baseline")["train"]["model"]["backbone_lr_mult"] == 0.1

    torch.save(build_model("c3d_patch", 2, width=8).state_dict(), tmp_path / "w.pt")
    path = _config(tmp_path, {"pretrained": "w.pt"})
    keys = pipeline.Keys(load_config(path))
    before = {u: keys[u] for u in ("train/baseline", "teacher/video")}
    torch.save(build_model("c3d_patch", 2, width=8).state_dict(), tmp_path / "w.pt")  # other weights, same name
    after = pipeline.Keys(load_config(path))
    assert after["train/baseline"] != before["train/baseline"]
    assert after["teacher/video"] == before["teacher/video"]


def test_the_gpu_recipe_loads_and_has_the_papers_shape():
    from omni.config import load_config

    cfg = load_config(Path(__file__).parent.parent / "configs" / "gpu.yaml")
    img, vid, student = cfg.teacher.image, cfg.teacher.video, cfg.train.model
    assert (img.arch, img.num_frames, img.frame_sampling, img.input_size) == ("tsn_resnet50", 8, "segments", 224)
    assert img.pretrained.startswith("timm:resnet50.") and img.normalize == "weights"
    for m in (vid, student):
        assert (m.arch, m.num_frames, m.input_size) == ("r2plus1d_18", 16, 112)
        assert m.pretrained == f"torchvision:{TV_NAME}" and m.backbone_lr_mult < 1
    assert cfg.train.amp is True and cfg.train.device == "cuda" and cfg.train.loader_workers >= 4
