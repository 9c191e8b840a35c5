"""Pretrained weights as users name them, found where the libraries keep them; never downloaded.

``pretrained:`` (on ``teacher.image``, ``teacher.video``, ``train.model``) is one of

- ``timm:<model>.<tag>`` (``timm:resnet50.a1_in1k``): the weights of a timm pretrained tag, read
  from the Hugging Face cache as ``huggingface_hub`` lays it out
  (``$HF_HUB_CACHE/models--timm--<model>.<tag>/refs/main`` names the snapshot whose
  ``model.safetensors`` or ``pytorch_model.bin`` is read) and loaded by timm itself
  (``timm.create_model(..., pretrained=True, pretrained_cfg_overlay={"file": ...})``, so timm's
  own checkpoint filters and classifier handling apply). The arch must be ``tsn_<model>``.
- ``torchvision:<WeightsEnum>.<MEMBER>`` (``torchvision:R2Plus1D_18_Weights.KINETICS400_V1``):
  read from ``$TORCH_HOME/hub/checkpoints/<file name of the weights' URL>``, where
  ``torch.hub`` keeps them. The arch must be the model the weights belong to (``r2plus1d_18``).
- a local file: a state dict, a timm or torchvision training checkpoint (``state_dict`` /
  ``model`` inside), an omni ``model.pt``, or an MMAction2 checkpoint (``state_dict`` with
  ``backbone.*`` and ``cls_head.*``; see ``load_file``). Every tensor of the network but its
  classifier must be found in the file by name and shape, else it is an error saying how many were.

The classifier is always new for named weights (the user's classes); a local file's classifier is
kept only when its shape is the new one's. Nothing here downloads: a name whose file is not in the
cache is a ``PretrainedError`` naming the path looked at.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

log = logging.getLogger(__name__)

TIMM, TORCHVISION = "timm:", "torchvision:"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's preference order on the hub


class PretrainedError(ValueError):
    """Weights that cannot be used, with where they were looked for."""


def is_named(spec: str | Path | None) -> bool:
    """True for ``timm:`` and ``torchvision:`` names (not a file)."""
    return isinstance(spec, str) and spec.startswith((TIMM, TORCHVISION))


# --- where the libraries keep weights (read from the environment at call time) ---

def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, as ``huggingface_hub`` resolves it: ``HF_HUB_CACHE``
    (``HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home).expanduser() / "hub"


def torch_checkpoints() -> Path:
    """Where ``torch.hub`` keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _timm_cfg(name: str):
    import timm

    if "." not in name:
        raise PretrainedError(f"timm:{name}: name a pretrained tag, e.g. timm:{name}.a1_in1k "
                              f"(tags: timm.list_pretrained('{name}.*'))")
    try:
        cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:
        cfg = None
    if cfg is None:
        raise PretrainedError(f"timm:{name}: not a timm pretrained model tag (list them with "
                              f"timm.list_pretrained('{name.split('.')[0]}*'))")
    return cfg


def _tv_weights(name: str):
    from torchvision.models import get_weight

    try:
        return get_weight(name)
    except (ValueError, KeyError, AttributeError) as exc:
        raise PretrainedError(f"torchvision:{name}: not a torchvision weights name (such as "
                              f"R2Plus1D_18_Weights.KINETICS400_V1): {exc}") from None


def timm_file(name: str) -> Path:
    """The cached weights file of timm tag ``name`` (``resnet50.a1_in1k``)."""
    cfg = _timm_cfg(name)
    repo = cfg.hf_hub_id
    if not repo:
        raise PretrainedError(f"timm:{name}: timm knows no Hugging Face hub copy of these weights "
                              f"(only {cfg.url or 'no URL'}); save them and give the file's path")
    repo, _, revision = repo.partition("@")
    cache = hf_hub_cache()
    folder = cache / f"models--{repo.replace('/', '--')}"
    ref = folder / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or None)
    if commit:
        for fname in HF_WEIGHT_FILES:
            f = folder / "snapshots" / commit / fname
            if f.is_file():
                return f
    where = folder / "snapshots" / (commit or "<refs/main>") / HF_WEIGHT_FILES[0]
    raise PretrainedError(f"timm:{name}: not in the Hugging Face cache (looked for {where}; cache "
                          f"{cache}, from HF_HUB_CACHE / HF_HOME). omni never downloads: on a machine with "
                          f"network run `python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` "
                          "and copy the cache here, or point HF_HUB_CACHE at a copy")


def torchvision_file(name: str) -> Path:
    """The cached file of torchvision weights ``name`` (``R2Plus1D_18_Weights.KINETICS400_V1``)."""
    w = _tv_weights(name)
    f = torch_checkpoints() / os.path.basename(urlparse(w.url).path)
    if not f.is_file():
        raise PretrainedError(f"torchvision:{name}: not in the torch hub cache (looked for {f}; from "
                              f"TORCH_HOME). omni never downloads: on a machine with network run `python -c "
                              f"\"import torchvision; torchvision.models.get_weight('{name}').get_state_dict()\"` "
                              "and copy the file here, or point TORCH_HOME at a copy")
    return f


def weights_file(spec: str | Path) -> Path:
    """The file ``spec`` reads (a name resolved in its cache), or PretrainedError."""
    if is_named(spec):
        kind, _, name = str(spec).partition(":")
        return timm_file(name) if kind == "timm" else torchvision_file(name)
    path = Path(spec)
    if not path.is_file():
        raise PretrainedError(f"no such file: {path}")
    return path


def expected_arch(spec: str) -> str:
    """The arch a named weights' network is in omni (``tsn_resnet50``, ``r2plus1d_18``)."""
    kind, _, name = spec.partition(":")
    if kind == "timm":
        return "tsn_" + _timm_cfg(name).architecture
    from torchvision.models import list_models, get_model_weights

    enum = type(_tv_weights(name))
    for model in list_models():
        if get_model_weights(model) is enum:
            return model
    raise PretrainedError(f"torchvision:{name}: no torchvision model uses {enum.__name__}")


def problem(spec: str | Path, arch: str) -> str:
    """Why ``spec`` cannot be loaded into ``arch`` ('' when it can), without loading it."""
    try:
        if is_named(spec):
            want = expected_arch(str(spec))
            if want != arch:
                return f"{spec} are weights of {want}, not of arch {arch}: set arch: {want}"
        weights_file(spec)
    except PretrainedError as exc:
        return str(exc)
    return ""


# --- what the weights were trained with ---

@dataclass(frozen=True)
class WeightsInput:
    """The input named weights were trained on: a square side and per-channel mean and std of
    [0, 1] pixels."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@lru_cache(maxsize=None)
def weights_input(spec: str) -> WeightsInput:
    """From timm's ``pretrained_cfg`` (``input_size``, ``mean``, ``std``) or the torchvision
    weights' ``transforms()`` (``crop_size``, ``mean``, ``std``). Local files carry none."""
    if not is_named(spec):
        raise PretrainedError(f"{spec}: a local file carries no input size or normalisation: give input_size "
                              "and normalize (clip or dataset), or name timm: / torchvision: weights")
    kind, _, name = spec.partition(":")
    if kind == "timm":
        cfg = _timm_cfg(name)
        return WeightsInput(int(cfg.input_size[-1]), tuple(map(float, cfg.mean)), tuple(map(float, cfg.std)))
    t = _tv_weights(name).transforms()
    crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
    return WeightsInput(int(crop), tuple(map(float, t.mean)), tuple(map(float, t.std)))


# --- loading ---

def classifier_name(model: nn.Module) -> str:
    """The module that maps features to class logits: the model's last ``nn.Linear``."""
    name = ""
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    return name


def build_timm(name: str, num_classes: int) -> nn.Module:
    """A timm network with the cached weights of tag ``name`` and a new classifier, loaded by
    timm (its checkpoint filter, its classifier handling)."""
    import timm

    f = timm_file(name)
    model = timm.create_model(name, pretrained=True, num_classes=num_classes,
                              pretrained_cfg_overlay={"file": str(f)})
    log.info("timm:%s: loaded from %s", name, f)
    return model


def load_torchvision(model: nn.Module, name: str) -> None:
    """Cached torchvision weights into ``model`` (built without weights); its classifier stays new."""
    f = torchvision_file(name)
    state = _read(f)
    head = classifier_name(model)
    state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(head + ".")]
    if missing or unexpected:
        raise PretrainedError(f"torchvision:{name} ({f}) does not fit the network: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    log.info("torchvision:%s: loaded from %s", name, f)


def _read(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:  # training checkpoints of timm and torchvision's references carry their argparse arguments
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or pickled code weights_only refuses
        raise PretrainedError(f"{path}: cannot load: {type(exc).__name__}: {str(exc)[:160]} (save just its "
                              "state dict: torch.save(checkpoint['state_dict'], 'weights.pt'))") from None


def _tensors(obj) -> dict[str, torch.Tensor] | None:
    """The state dict inside a checkpoint: itself, or its ``state_dict`` (timm, MMAction2) or
    ``model`` (torchvision references, omni's model.pt)."""
    if not isinstance(obj, dict):
        return None
    for key in ("state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    return None


_MM_STEM = re.compile(r"^conv1\.(conv|bn)\.")
_MM_BLOCK = re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.(conv|bn)\.")
_MM_DOWN = re.compile(r"^(layer\d+\.\d+)\.downsample\.(conv|bn)\.")


def mmaction_resnet_to_timm(key: str) -> str:
    """An MMAction2 2D ``ResNet`` backbone key (ConvModules: ``conv1.conv``, ``conv1.bn``,
    ``layer1.0.conv2.bn``, ``layer1.0.downsample.conv``) as torchvision / timm name it
    (``conv1``, ``bn1``, ``layer1.0.bn2``, ``layer1.0.downsample.0``)."""
    key = _MM_STEM.sub(lambda m: "conv1." if m[1] == "conv" else "bn1.", key)
    key = _MM_BLOCK.sub(lambda m: f"{m[1]}.conv{m[2]}." if m[3] == "conv" else f"{m[1]}.bn{m[2]}.", key)
    return _MM_DOWN.sub(lambda m: f"{m[1]}.downsample.{0 if m[2] == 'conv' else 1}.", key)


def _layouts(state: dict[str, torch.Tensor]):
    """The ways a file's keys may name a network's tensors: as they are, without a DDP
    ``module.`` prefix, an MMAction2 recognizer's backbone (``backbone.*``, ``cls_head.*``
    dropped) with or without its ResNet renamed to timm's names, each also under omni's TSN
    wrapper (``backbone.``)."""
    plain = {k.removeprefix("module."): v for k, v in state.items()}
    bases = {"as saved": plain}
    if any(k.startswith("backbone.") for k in plain):
        bb = {k[len("backbone."):]: v for k, v in plain.items() if k.startswith("backbone.")}
        bases["MMAction2 backbone"] = bb
        bases["MMAction2 ResNet backbone"] = {mmaction_resnet_to_timm(k): v for k, v in bb.items()}
    for label, s in bases.items():
        yield label, s
        yield label + " in a TSN", {"backbone." + k: v for k, v in s.items()}


def load_file(model: nn.Module, path: Path, arch: str) -> dict:
    """A local file's tensors into ``model``: every tensor but the classifier's must be found,
    by name and shape, in one of the file's layouts (see ``_layouts``); the classifier is loaded
    only when its shape is the new one's. Returns what was loaded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    state = _tensors(_read(path))
    if state is None:
        raise PretrainedError(f"{path}: not a state dict (nor a checkpoint holding one under "
                              "'state_dict' or 'model')")
    own = model.state_dict()
    head = classifier_name(model)
    body = [k for k in own if not k.startswith(head + ".") and not k.endswith("num_batches_tracked")]
    best = max(_layouts(state), key=lambda ls: sum(k in ls[1] and ls[1][k].shape == own[k].shape for k in body))
    label, s = best
    missing = [k for k in body if not (k in s and s[k].shape == own[k].shape)]
    if missing:
        raise PretrainedError(
            f"{path}: only {len(body) - len(missing)} of the {len(body)} tensors of {arch} (its classifier "
            f"{head or 'none'} aside) are in the file by name and shape (best as: {label}); missing e.g. "
            f"{', '.join(missing[:3])}. docs/pretrained.md lists the layouts that map")
    usable = {k: v for k, v in s.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    head_loaded = any(k.startswith(head + ".") for k in usable)
    log.info("%s: loaded %d tensors (%s)%s", path, len(usable), label,
             "" if head_loaded else f"; classifier {head} new")
    return {"layout": label, "tensors": len(usable), "classifier_loaded": head_loaded}
