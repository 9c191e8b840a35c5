import pytest
import yaml

from omni.config import ConfigError, load_config


def _write(tmp_path, data):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


BASE = {"workdir": "w", "classes": ["a", "b"], "target": {"train": "t.csv", "val": "v.csv"}}


def test_minimal_config_gets_defaults_and_resolves_paths(tmp_path):
    cfg = load_config(_write(tmp_path, BASE))
    assert cfg.workdir == (tmp_path / "w").resolve()
    assert cfg.target.train == (tmp_path / "t.csv").resolve()
    assert cfg.extract.short_side == "auto" and cfg.frame_short_side() == 64  # 64 px models, frames squashed whole
    assert cfg.class_names() == ["a", "b"]


def test_unknown_key_is_rejected_with_its_name(tmp_path):
    with pytest.raises(ConfigError, match=r"ingest\.wokers: unknown key"):
        load_config(_write(tmp_path, {**BASE, "ingest": {"wokers": 3}}))


def test_wrong_type_is_rejected_with_its_name(tmp_path):
    with pytest.raises(ConfigError, match=r"extract\.short_side"):
        load_config(_write(tmp_path, {**BASE, "extract": {"short_side": "big"}}))


def test_bad_source_kind_names_the_source_field(tmp_path):
    data = {**BASE, "sources": [{"name": "x", "kind": "audio", "list": "l.csv"}]}
    with pytest.raises(ConfigError, match=r"sources\.0\.kind"):
        load_config(_write(tmp_path, data))


def test_set_overrides_nested_values(tmp_path):
    cfg = load_config(_write(tmp_path, BASE), ["train.model.epochs=3", "filter.min_score=0.4",
                                               "train.baseline=false"])
    assert cfg.train.model.epochs == 3 and cfg.filter.min_score == 0.4 and cfg.train.baseline is False


def test_set_with_unknown_key_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(_write(tmp_path, BASE), ["train.epochz=3"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("workdir: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_missing_class_list_is_a_config_error(tmp_path):
    cfg = load_config(_write(tmp_path, {**BASE, "classes": "nope.txt"}))
    with pytest.raises(ConfigError, match="classes: cannot read"):
        cfg.class_names()


def test_a_partial_image_teacher_keeps_its_own_defaults(tmp_path):
    # teacher.image.steps alone (a YAML section, or the deployment's teacher_steps parameter) must not
    # turn the 2D image teacher into a video model
    cfg = load_config(_write(tmp_path, {**BASE, "teacher": {"image": {"steps": 300}}}))
    img = cfg.teacher.image
    assert (img.num_frames, img.frame_sampling, img.steps) == (1, "segments", 300)  # single frames, not clips
    assert (cfg.teacher.video.num_frames, cfg.teacher.video.frame_sampling) == (8, "consecutive")
    cfg = load_config(_write(tmp_path, BASE), overrides=["teacher.image.input_size=32"])
    assert (cfg.teacher.image.num_frames, cfg.teacher.image.input_size) == (1, 32)
    cfg = load_config(_write(tmp_path, {**BASE, "teacher": {"image": {"arch": "c3d_small", "num_frames": 8}}}))
    assert (cfg.teacher.image.arch, cfg.teacher.image.num_frames) == ("c3d_small", 8)  # an explicit choice stands
