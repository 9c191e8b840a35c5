import pytest
import torch

from omni.learning.models import build_model


@pytest.mark.parametrize("arch", ["c3d_small", "tsn_resnet10t", "tsn_test_resnet", "r3d_18"])
def test_every_arch_maps_clips_to_class_logits(arch):
    model = build_model(arch, 5, width=8).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 4, 32, 32))
    assert out.shape == (2, 5)


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("resnet9000", 5)
    with pytest.raises(ValueError, match="unknown timm model"):
        build_model("tsn_notamodel", 5)


def test_local_pretrained_weights_load_and_a_new_head_is_kept(tmp_path):
    src = build_model("c3d_small", 10, width=8)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = build_model("c3d_small", 4, width=8, pretrained=tmp_path / "w.pt")
    assert torch.equal(dst.stem[0].weight, src.stem[0].weight)  # backbone loaded
    assert dst.head[-1].weight.shape == (4, 64)  # classifier of the new shape kept
    with pytest.raises(FileNotFoundError, match="pretrained weights not found"):
        build_model("c3d_small", 4, width=8, pretrained=tmp_path / "missing.pt")
