"""Typed pipeline configuration, loaded from YAML; unknown keys and wrong types are rejected."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration file that cannot be used, with a message naming the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TargetConfig(_Strict):
    train: Path
    val: Path


class SourceConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("name")
    @classmethod
    def _not_a_folder_step(cls, v: str) -> str:
        if set(v) == {"."}:  # '.' and '..' would name the stage folder's parent, not a folder of its own
            raise ValueError(f"{v!r} is not a usable source name")
        return v
    kind: Literal["image", "video", "untrimmed"]
    list: Path
    query: str | None = None  # for plain-text URL lists: the query every line was found by
    url_column: str = "url"
    query_column: str = "query"


class IngestConfig(_Strict):
    workers: int = Field(16, ge=1, le=512)
    per_host: int = Field(8, ge=1)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(20.0, gt=0)
    max_bytes: int = Field(200 * 1024 * 1024, gt=0)
    max_redirects: int = Field(5, ge=0)
    tries: int = Field(3, ge=1)
    backoff_s: float = Field(0.5, ge=0)
    user_agent: str = "omni-ingest/0.1 (+https://github.com/omni; research crawler)"
    allow_private_addresses: bool = False
    item_timeout_s: float = Field(120.0, gt=0, description="overall deadline per item (retries and redirects included)")
    min_bytes_per_s: float = Field(1000.0, ge=0, description="minimum average download rate (0: no minimum)")
    rate_grace_s: float = Field(10.0, ge=0, description="seconds of body download before the rate is checked")
    local_roots: list[Path] | None = Field(None, description="folders local files may be read under; "
                                           "default: the folders of the crawl and target lists")
    max_image_pixels: int = Field(50_000_000, gt=0)
    max_video_pixels: int = Field(7680 * 4320, gt=0, description="cap on a video's frame size (default 8K)")
    image_short_side: int | None = Field(None, ge=8, description="re-encode images at this short side")
    leak_threshold: float = Field(0.85, gt=0, le=1)
    leak_check: bool = True


class ExtractConfig(_Strict):
    short_side: Annotated[int, Field(ge=8)] | Literal["auto"] = Field(
        "auto", description="short side of stored frames; auto: what the configured models can use (the "
        "largest input_size of a squashing model, or input_size / 0.7, the smallest training crop, of a cropping "
        "one, rounded up to a multiple of 32)")
    fps: float | None = Field(4.0, gt=0, description="store every clip and window at this frame rate (frames "
                              "at the centres of 1/fps slots), at most max_frames_per_clip frames (a longer clip "
                              "is stored at a lower rate); null: frames_per_clip frames spread over each clip")
    max_frames_per_clip: int = Field(64, ge=1, description="with fps: the most frames stored per clip or window")
    frames_per_clip: int = Field(8, ge=1, description="with fps null: frames stored per clip or window")
    window_s: float | None = Field(None, gt=0, description="untrimmed window; default: median target duration")
    stride_s: float | None = Field(None, gt=0, description="default: window_s (consecutive windows)")
    shot_split: bool = False
    shot_threshold: float = Field(0.5, gt=0, le=1)
    workers: int = Field(2, ge=1)
    shard_items: int = Field(64, ge=1)
    backend: Literal["auto", "pyav", "decord", "ffmpeg"] = "auto"
    max_duration_s: float = Field(1800.0, gt=0, description="seconds of each video considered (the rest is cut)")
    max_windows_per_video: int = Field(100, ge=1, description="untrimmed windows kept per video (evenly spread)")
    frame_codec: Literal["raw", "jpeg"] = Field("raw", description="how the frame store keeps frames: raw "
                                                "uint8 (fastest to read) or JPEG (a fraction of the bytes)")
    jpeg_quality: int = Field(90, ge=50, le=100, description="JPEG quality of the frame store (frame_codec: jpeg)")


class ModelConfig(_Strict):
    """One model, the input it reads and its training recipe. The defaults are the plain
    reference of issue 33 (benchmarks/reference_model.py), which a small 3D CNN reaches 74% with
    on a world where omni's earlier defaults (a SlowOnly-style ``c3d_small`` at 48 px on crops of
    8 frames spread over the whole clip, dataset normalisation, 600 steps) reached 27%: 8
    consecutive frames of the clip as extracted at ``extract.fps`` (about 2 s), each frame squashed
    whole to 64 x 64, each clip standardised by its own statistics, a patch-stem 3D CNN that sees
    time from its first block, AdamW with warm-up and cosine decay over 1,000 steps. The zoo
    measurements behind them are in docs/performance.md (learning quality on the world zoo)."""

    arch: str = "c3d_patch"
    width: int = Field(24, ge=4)
    input_size: int = Field(64, ge=8, description="side of the square input in pixels; ``weights`` (in the "
                            "YAML): the size the named pretrained weights were trained at (timm's "
                            "pretrained_cfg input_size, a torchvision weights' crop_size), resolved when the "
                            "config is read")
    num_frames: int = Field(8, ge=1)
    frame_sampling: Literal["consecutive", "segments"] = Field(
        "consecutive", description="consecutive: num_frames neighbouring stored frames (at extract.fps), from a "
        "random start in training and the centre at evaluation, the last frame repeated when a clip is shorter; "
        "segments: one frame from each of num_frames equal segments of the whole clip (TSN)")
    resize: Literal["squash", "crop"] = Field(
        "squash", description="squash: the whole frame resized to input_size x input_size (nothing cut off); "
        "crop: a square crop (random scale and aspect in training, the centre at evaluation) resized")
    normalize: Literal["clip", "dataset", "weights"] = Field(
        "clip", description="clip: each clip standardised per channel by its own mean and standard deviation "
        "(+0.05); dataset: fixed mean 0.45 / std 0.225; weights: the per-channel mean and std the named "
        "pretrained weights were trained with (timm's pretrained_cfg, a torchvision weights' transforms)")
    epochs: int = Field(30, ge=1, description="passes over the target set, when steps is not set")
    steps: int | None = Field(1000, ge=1, description="optimisation steps in all (overrides epochs)")
    batch_size: int = Field(16, ge=1)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(0.003, gt=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    warmup_frac: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.05, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    pretrained: str | None = Field(None, description="start from these weights, never downloaded: "
                                   "``timm:<model>.<tag>`` (from the Hugging Face cache; arch tsn_<model>), "
                                   "``torchvision:<Weights>.<MEMBER>`` (from $TORCH_HOME/hub/checkpoints; arch the "
                                   "weights' model) or a local file (state dict, timm / torchvision / MMAction2 "
                                   "checkpoint, omni model.pt); the classifier is new for the classes "
                                   "(docs/pretrained.md)")
    backbone_lr_mult: float = Field(1.0, gt=0, le=1, description="the learning rate of every parameter but the "
                                    "classifier's, as a share of lr (fine-tuning pretrained weights: e.g. 0.1, "
                                    "the new classifier learning at lr)")
    freeze_bn: bool = Field(False, description="keep the BatchNorm layers' running statistics as loaded (eval "
                            "mode) while training; their scale and shift still learn. For pretrained "
                            "weights fine-tuned on small batches")

    @model_validator(mode="before")
    @classmethod
    def _size_of_the_weights(cls, data: Any) -> Any:
        """``input_size: weights`` becomes the named weights' input size."""
        if isinstance(data, dict) and data.get("input_size") == "weights":
            from .learning.pretrained import PretrainedError, weights_input

            try:
                return {**data, "input_size": weights_input(str(data.get("pretrained"))).size}
            except PretrainedError as exc:
                raise ValueError(f"input_size: weights: {exc}") from None
        return data

    @model_validator(mode="after")
    def _named_weights_for_weights_input(self) -> "ModelConfig":
        if self.normalize == "weights" and not str(self.pretrained or "").startswith(("timm:", "torchvision:")):
            raise ValueError("normalize: weights needs pretrained to name timm: or torchvision: weights "
                             f"(a local file carries no normalisation; pretrained is {self.pretrained})")
        return self


# what a model saved before ModelConfig had these fields read its input with
LEGACY_INPUT = {"frame_sampling": "segments", "resize": "crop", "normalize": "dataset"}


class AugmentConfig(_Strict):
    """Training augmentation, for teachers and students alike. Each one is an assumption about
    the classes: a transformation that may not change what a clip shows. Time is never reversed
    (it would swap "opening" and "closing")."""

    flip: bool = Field(False, description="mirror clips left-right at random. Off by default: it makes "
                       "'moving left' and 'moving right', 'turning clockwise' and 'anticlockwise' one class. "
                       "Turn it on only when every class is mirror-symmetric, or name the pairs that swap "
                       "in flip_label_map. Measured (video teacher, seed 0): on dir_c8_t5_n50 (directions) 35.6% "
                       "without, 25.0% with mirroring; on c6_t3_n40 (mirror-symmetric classes) 55.8% either way")
    flip_label_map: list[tuple[str, str]] = Field(
        default_factory=list, description="pairs of class names that swap under mirroring (as MMAction2's "
        "flip_label_map for Something-Something): a mirrored clip of one is learned as the other")
    shift: float = Field(0.1, ge=0, le=0.5, description="random translation of the whole clip by up to this "
                         "share of input_size (replicate padding): assumes a class does not depend on where "
                         "in the frame it happens")
    gain: float = Field(0.125, ge=0, lt=1, description="per-channel gain x(1 +- gain): colour balance is "
                        "not part of a class")
    brightness: float = Field(0.2, ge=0, description="brightness offset +- this (in standardised units)")
    noise: float = Field(0.05, ge=0, description="Gaussian pixel noise of this standard deviation "
                         "(standardised units)")


IMAGE_TEACHER = {"num_frames": 1, "frame_sampling": "segments"}  # where the image teacher differs from ModelConfig


def _teacher_image_default() -> ModelConfig:
    return ModelConfig(**IMAGE_TEACHER)


class TeacherConfig(_Strict):
    image: ModelConfig = Field(default_factory=_teacher_image_default)
    video: ModelConfig = Field(default_factory=ModelConfig)

    @field_validator("image", mode="before")
    @classmethod
    def _image_teacher_defaults(cls, value: Any) -> Any:
        """A partial ``teacher.image`` (``{steps: 300}``) keeps the image teacher's own defaults
        (one frame at a time, not a clip) for the keys it leaves out, not those of a video model."""
        return {**IMAGE_TEACHER, **value} if isinstance(value, dict) else value


class FilterConfig(_Strict):
    """The default keeps, per source and query, the 80% of the items the teacher scores highest
    for the query class: it drops the crawl's worst-scored fifth. Measured on the world zoo
    (benchmarks/learning_quality.py, seed 0): keeping the best half gave the student 69.2% / 83.8%
    top-1 on c6_t3_n40 / c8_t8_n60, the best 80% 77.5% / 85.6%, no filter 84.2% / 86.2%; on
    c10_t5_n50 and c12_t4_n60 half and no filter were within 1.2 points of each other; on the demo
    world 77.9% (half), 86.7% (80%), 89.2% (none). With teachers
    trained on 3-10 clips per class, a strict rule costs more good data than it removes noise (the
    authors' top-1 rule, ``require_top1: true``, was the worst: 56.7% on c6_t3_n40).

    Then, by default (``refine``), a second round: a first-round student learns from that
    selection and re-scores every web sample, and the OmniSource student learns from every image
    and untrimmed window except those the first-round student confidently gives to another class
    (``refine_rule: contradict``, top class not the query with p >= ``refine_min_contradiction``),
    which it learns as that class (``refine_relabel``); web videos are held to the authors' top-1
    rule with a bar relative to the student's calibration (``refine_kind_rules: {video: top1}``,
    ``refine_min_relative: 0.6``), their confident contradictions relabeled too. Over seven
    world-seeds (benchmarks/results/second_round_variants/) the contradiction rule for every
    source beat the top-1 rule for every source (mean 90.5% against 86.6%), and holding the web
    videos to top-1 with the bar kept that (ten world-seeds, bar 0.5: 89.7% against 88.5%; bar
    0.6: 90.6%; twelve world-seeds: 89.1% with bar 0.6, 88.3% with 0.5, 87.0% unfiltered) while
    raising the web videos' precision from 0.65 to 0.91 (recall 0.81). It costs one more
    student training."""

    min_score: float = Field(0.0, ge=0, le=1)
    require_top1: bool = False
    top_k: int = Field(1, ge=1, description="with require_top1: the query class within the teacher's top k")
    keep_fraction: float | None = Field(0.8, gt=0, le=1, description="keep at most this share of each "
                                        "source's items per query, those the teacher scores highest")
    refine: bool = Field(True, description="a second round: a first-round student learns from the teacher's "
                         "selection, re-scores every web sample, ``refine_rule`` selects again, and the "
                         "OmniSource student trains on that selection")
    refine_rule: Literal["top1", "same", "contradict"] = Field(
        "contradict", description="the second round's rule: ``top1`` keeps a sample when the first-round student's top "
        "class is its query (the authors' rule, with a scorer that has learned from the web data); ``same``: this "
        "section's own rule; ``contradict``: keeps every sample but those the student confidently gives to another "
        "class (top class not the query, with at least refine_min_contradiction of probability)")
    refine_kind_rules: dict[Literal["image", "video", "untrimmed"], Literal["top1", "same", "contradict"]] = Field(
        default_factory=lambda: {"video": "top1"}, description="refine_rule per kind of source where it differs "
        "(the default ``{video: top1}``: the web videos under the top-1 rule, images and windows under "
        "refine_rule; ``{}``: refine_rule for all)")
    refine_min_contradiction: float = Field(0.7, ge=0, le=1, description="the probability at which the first-round "
                                            "student's top class, when it is not the query, contradicts the crawl's "
                                            "label (refine_rule contradict, refine_relabel)")
    refine_relabel: bool = Field(True, description="a sample the second round drops while the first-round student "
                                 "confidently gives it to another class (see refine_min_contradiction) is kept, "
                                 "with that class as its training label (``train_label`` in web_items.parquet)")
    refine_min_score: float = Field(0.0, ge=0, le=1, description="with refine_rule top1: also require the "
                                    "first-round student's probability of the query class to be at least this. "
                                    "0.5 raised web-video precision from 0.85 to 0.92 (recall 0.88 -> 0.79) "
                                    "over seven world-seeds but cost the student 1.7 points on average (-7.5 "
                                    "to +2.6): off by default")
    refine_crossfit: bool = Field(False, description="the first round trains two students, each on the target "
                                  "and one half of the selected web items (halves by item, so an untrimmed "
                                  "video's windows stay together), and each web sample is re-scored by the "
                                  "student that did not train on it; top-1 alone lets noise a single student "
                                  "trained on back in. Costs one more student training. On c8_t8_n60 (two "
                                  "seeds) it raised the second round's web-video precision from 0.76 to 0.85 "
                                  "(windows 0.42 -> 0.84) but cost the student 1.9 points: off by default")
    refine_crossfit_steps: float = Field(1.0, gt=0, le=1, description="with refine_crossfit: each of the two "
                                         "first-round students trains this share of train.model.steps (0.5: the "
                                         "two together cost one student)")
    refine_min_relative: float = Field(0.6, ge=0, le=1, description="where the second round's rule is top1: also "
                                       "require the first-round student's probability of the query class to be "
                                       "at least this fraction of its median over the source's top-1 samples (a "
                                       "threshold that follows the student's calibration per source). With the "
                                       "web videos under top-1 (the default), over twelve world-seeds: 0.5 gave "
                                       "them precision 0.89 at recall 0.84, 0.6 gave 0.91 at 0.81 and the "
                                       "student 0.9 points more on average (-2.9 to +5.8)")


class TrainConfig(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    aux_batch_size: int | None = Field(None, ge=1, description="per source; default: target batch / sources")
    aux_loss_weight: float = Field(1.0, ge=0)
    resample_power: float | None = Field(0.5, gt=0, le=1)
    cap_per_class: int | None = Field(None, ge=1)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    pseudo_clip: Literal["warp", "replicate"] = "warp"
    warp_strength: float = Field(0.08, ge=0, le=0.5)
    mixup_alpha: float = Field(0.0, ge=0)
    aux_drop: float = Field(0.0, ge=0, lt=1, description="share of each web batch the student leaves out of "
                            "its loss, the samples it fits worst (small-loss rule), once ramped in; with mixup_alpha > 0 "
                            "the mixed target term still sees every web clip")
    aux_drop_ramp: float = Field(0.3, ge=0, le=1, description="share of the training steps over which "
                                 "aux_drop grows from 0 to its value")
    soft_target_weight: float = Field(0.5, ge=0, le=1, description="with filter.refine, the second round's "
                                      "student learns each web sample of soft_target_kinds as (1 - w) x its "
                                      "label + w x the first-round student's probabilities for it; 0: the "
                                      "label alone")
    soft_target_kinds: list[Literal["image", "video", "untrimmed"]] = Field(
        default_factory=lambda: ["image", "untrimmed"], description="the kinds of source whose samples learn "
        "soft targets: by default those the second round keeps without the student's top-1 agreement "
        "(filter.refine_kind_rules holds web videos to it)")
    baseline: bool = True
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1)
    loader_workers: int = Field(0, ge=0, description="DataLoader worker processes (GPU workers want several)")
    nproc_per_node: int = Field(1, ge=1, description="ranks for teacher, score and train: >1 runs them under "
                                "torchrun (one rank per GPU) when omni was not itself started by torchrun")
    amp: bool | Literal["auto"] = Field("auto", description="bf16 autocast: auto = CUDA, or a CPU with "
                                        "native bf16 where it was measured faster")
    checkpoint_every_steps: int = Field(50, ge=1)


class EvaluateConfig(_Strict):
    num_clips: int = Field(2, ge=1)
    batch_size: int = Field(32, ge=1)


class ClusterConfig(_Strict):
    """Where item-parallel work runs: without a scheduler, local processes and threads."""
    scheduler_address: str | None = Field(None, description="a Dask scheduler (tcp://host:8786): ingest, "
                                          "extract and score fan out over its workers, which must see the "
                                          "workdir at the same path")
    shard_items: int = Field(256, ge=1, description="crawl-list rows (ingest) or samples (score) per shard")
    score_resources: dict[str, float] = Field(default_factory=dict, description="Dask worker resources a "
                                              "scoring shard needs, e.g. {GPU: 1}")


MIN_CROP = 0.7  # training crops take 70-100% of a frame's short side (omni/learning/data.py: crop_box)


def needed_short_side(models) -> int:
    """The smallest stored short side from which every model's input is made without upscaling,
    rounded up to a multiple of 32 (so that a small change of input size does not redo
    extraction): a squashing model needs its input size (64 px -> 64), a cropping one its
    smallest training crop (48 px -> 96, 112 px -> 160, 224 px -> 320)."""
    need = max(math.ceil(m.input_size / (MIN_CROP if m.resize == "crop" else 1)) for m in models)
    return -(-need // 32) * 32


class Config(_Strict):
    workdir: Path

    @field_validator("workdir", mode="before")
    @classmethod
    def _workdir_given(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and not v.strip()):
            raise ValueError("must name a folder (it is empty)")
        return v
    classes: Path | list[str]
    target: TargetConfig
    sources: list[SourceConfig] = Field(default_factory=list)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        if "target" in names:
            raise ValueError("'target' is reserved for the target set: give the source another name")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return sources

    def frame_short_side(self) -> int:
        """The short side the frame store keeps (``extract.short_side``, resolved when ``auto``)."""
        if self.extract.short_side != "auto":
            return self.extract.short_side
        return needed_short_side((self.teacher.image, self.teacher.video, self.train.model))

    def class_names(self) -> list[str]:
        if isinstance(self.classes, list):
            names = [c.strip() for c in self.classes]
        else:
            try:
                names = [ln.strip() for ln in _read_utf8(Path(self.classes), "classes").splitlines()]
            except OSError as exc:
                raise ConfigError(f"classes: cannot read {self.classes}: {exc.strerror or exc}") from None
        names = [n for n in names if n]
        if len(set(names)) != len(names):
            raise ConfigError(f"classes: duplicate class names in {self.classes}")
        if not names:
            raise ConfigError(f"classes: no class names in {self.classes}")
        return names


def _list_index(key: str, part: str, node: list) -> int:
    try:
        i = int(part)
    except ValueError:
        raise ConfigError(f"--set {key}: {part!r} is not a list index") from None
    if not -len(node) <= i < len(node):
        raise ConfigError(f"--set {key}: index {i} is out of range (the list has {len(node)} entries)")
    return i


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"--set {key}: not a dotted key such as train.model.lr")
    node = data
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(key, part, node)]
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {part} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(key, last, node)] = value
    else:
        node[last] = value


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``3``, ``true``, ``null``)."""
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key.strip()}: {raw!r} is not a YAML value ({str(exc).splitlines()[0]}); "
                              "quote text values") from None
        out.append((key.strip(), value))
    return out


def _read_utf8(path: Path, what: str) -> str:
    """A text file of the user's (config, classes) as UTF-8, a byte-order mark allowed."""
    if path.exists() and not path.is_file():  # a FIFO or device would block the read
        raise ConfigError(f"{what}: {path} is not a regular file")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {path} is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                          "save it as UTF-8") from None


def _resolve(path: Path, base: Path, what: str = "path") -> Path:
    if "\0" in str(path):
        raise ConfigError(f"{what}: {str(path)!r} contains a NUL byte")
    try:
        path = Path(path).expanduser()
    except RuntimeError as exc:  # ~nosuchuser/...
        raise ConfigError(f"{what}: {path}: {exc}") from None
    return path if path.is_absolute() else (base / path).resolve()


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config; relative paths are resolved against the config file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(_read_utf8(path, "config")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    pairs = parse_overrides(overrides or [])
    for key, value in pairs:
        _set_dotted(data, key, value)
    return config_from_dict(data, base=path.parent.resolve(), origin=str(path), overridden=[k for k, _ in pairs])


def config_from_dict(data: dict[str, Any], base: Path, origin: str = "config",
                     overridden: list[str] | None = None) -> Config:
    """Validate a config mapping; ``overridden`` names the keys that came from ``--set``, so
    that an error in one of them is blamed on the override, not on the file."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            # pydantic's own steps through a union ('lax-or-strict[...]', 'function-after[...]') are not keys
            loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            from_set = any(loc == k or loc.startswith(k + ".") or k.startswith(loc + ".") for k in overridden or [])
            lines.append(f"  {'--set ' if from_set else ''}{loc}: {msg}")
        raise ConfigError(f"{origin}: invalid configuration\n" + "\n".join(lines)) from None
    cfg.workdir = _resolve(cfg.workdir, base, "workdir")
    if not isinstance(cfg.classes, list):
        cfg.classes = _resolve(cfg.classes, base, "classes")
    cfg.target.train = _resolve(cfg.target.train, base, "target.train")
    cfg.target.val = _resolve(cfg.target.val, base, "target.val")
    for i, src in enumerate(cfg.sources):
        src.list = _resolve(src.list, base, f"sources.{i}.list")
    if cfg.ingest.local_roots is not None:
        cfg.ingest.local_roots = [_resolve(p, base, "ingest.local_roots") for p in cfg.ingest.local_roots]
    for name, model in (("teacher.image", cfg.teacher.image), ("teacher.video", cfg.teacher.video),
                        ("train.model", cfg.train.model)):
        if model.pretrained is not None and not model.pretrained.startswith(("timm:", "torchvision:")):
            model.pretrained = str(_resolve(Path(model.pretrained), base, f"{name}.pretrained"))
    return cfg
