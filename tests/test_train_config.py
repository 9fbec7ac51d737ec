"""Run configs: typed loading, strict keys, overrides, round trip, schedules, paper recipes."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from maskinv.errors import ConfigError
from maskinv.train.config import (TrainConfig, config_from_dict, config_hash, config_to_dict, load_config,
                                  save_config, validate_config)
from maskinv.train.schedule import lr_factor, total_steps

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny-cpu.yaml"


def test_tiny_cpu_loads_with_typed_overrides():
    cfg = load_config(TINY, ["optim.lr=0.05", "schedule.milestones=[1, 3]", "precision.channels_last=true",
                             "teacher.path=null", "head.kwargs.m=0.45", "runtime.batch_size=8"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.schedule.milestones == [1, 3]
    assert cfg.precision.channels_last is True
    assert cfg.teacher.path is None
    assert cfg.head.kwargs["m"] == 0.45 and cfg.head.kwargs["s"] == 32.0
    assert cfg.runtime.batch_size == 8 and cfg.runtime.log_every == 1


def test_unknown_key_in_file_names_path_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("optim:\n  lr: 0.1\n  lrate: 3\n")
    with pytest.raises(ConfigError, match=r"optim\.lrate.*bad\.yaml"):
        load_config(p)
    p.write_text("data:\n  synth: {identities: 4, imgs: 2}\n")
    with pytest.raises(ConfigError, match=r"data\.synth\.imgs"):
        load_config(p)
    with pytest.raises(ConfigError, match="unknown config key 'runtime.batchsize'"):
        load_config(TINY, ["runtime.batchsize=4"])


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-1", "optim.lr"),
    ("optim.lr=fast", "optim.lr"),
    ("runtime.batch_size=1.5", "runtime.batch_size"),
    ("masks.prob=1.5", "masks.prob"),
    ("precision.mode=fp8", "precision.mode"),
    ("schedule.milestones=[3, 1]", "schedule.milestones"),
    ("kd.weight=100", "teacher.path"),          # KD without a teacher
    ("data.flip=maybe", "data.flip"),
    ("runtime.eval_every=5", "runtime.eval_every"),  # tiny-cpu has val_bins; make it empty below
])
def test_bad_values_name_the_key(override, key):
    extra = ["data.val_bins=[]"] if key == "runtime.eval_every" else []
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(TINY, extra + [override])


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(TINY, ["optim.lr"])
    with pytest.raises(ConfigError) as e:
        load_config(TINY, ["schedule.milestones=[1, 2"])
    # one line: the override quoted, the column inside it, PyYAML's problem
    assert str(e.value).startswith("command-line override 'schedule.milestones=[1, 2': invalid YAML value at column 26: "
                                   "expected ',' or ']'"), str(e.value)
    assert "\n" not in str(e.value)


def test_invalid_yaml_file_keeps_line_and_column_on_one_line(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: x\noptim:\n  lr: a: b\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: invalid YAML at line 3, column 8: mapping values are not allowed here"


def test_numbers_written_as_python_does(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as a string: typed float/int fields convert it, YAML files and overrides alike
    p = tmp_path / "n.yaml"
    p.write_text("optim:\n  lr: 1e-3\n  weight_decay: 5e-4\n  eps: 1.0e30\n  betas: [0.9, 9.99e-1]\n"
                 "schedule:\n  epochs: 2E+1\n  milestones: [8, 1.4e1]\n"
                 "runtime:\n  batch_size: 1_000\n  eval_batch_size: 1e3\n")
    cfg = load_config(p, ["data.path=/d"])
    o = cfg.optim
    assert (o.lr, o.weight_decay, o.eps, o.betas) == (1e-3, 5e-4, 1.0e30, [0.9, 0.999])
    assert isinstance(o.lr, float) and isinstance(o.weight_decay, float)
    assert cfg.schedule.epochs == 20.0 and cfg.schedule.milestones == [8, 14.0]
    assert cfg.runtime.batch_size == 1000 and cfg.runtime.eval_batch_size == 1000
    assert isinstance(cfg.runtime.eval_batch_size, int)
    cfg = load_config(TINY, ["optim.lr=1e-3", "optim.weight_decay=5e-4", "optim.clip_grad_norm=1_000.5",
                             "masks.prob=5E-1", "model.kwargs.width_mult=1.25e-1"])
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.clip_grad_norm, cfg.masks.prob) == (1e-3, 5e-4, 1000.5, 0.5)
    assert cfg.model.kwargs["width_mult"] == 0.125  # converted per get_model's annotation
    # the schedule's typed milestones keep YAML ints as ints: an old run's config hash does not change
    assert load_config(TINY).schedule.milestones == [3, 4]


@pytest.mark.parametrize("override, expected", [
    ("optim.lr=abc", "optim.lr: expected a number, got 'abc'"),
    ("optim.lr=true", "optim.lr: expected a number, got True"),
    ("optim.lr=1e999", "optim.lr: expected a finite number"),
    ("optim.lr=1e-3e2", "optim.lr: expected a number"),
    ("runtime.batch_size=2.5e0", "runtime.batch_size: expected an integer"),
    ("optim.betas=[0.9, fast]", r"optim.betas\[1\]: expected a number"),
    ("optim.lr=-1e-3", "optim.lr: must be > 0"),
])
def test_bad_values_name_the_override_not_the_file(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [override])
    msg = str(e.value)
    assert msg.startswith(expected.replace("\\", "")), msg
    assert msg.endswith(f" in command-line override '{override}'") and "tiny-cpu" not in msg, msg


def test_bad_values_in_a_file_name_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  weight_decay: 5e-4x\n")
    with pytest.raises(ConfigError, match=rf"^optim\.weight_decay: expected a number, got '5e-4x' in {re.escape(str(p))}$"):
        load_config(p)
    # an override replaces the file's value and then owns the error
    p.write_text("data: {source: synth, synth: {identities: 4}}\n")
    with pytest.raises(ConfigError, match=r"data\.synth\.identities: must be >= 2 in command-line override"):
        load_config(p, ["data.synth={identities: 1}"])
    # an override of another key does not take the blame for the file's value
    p.write_text("data: {source: synth, synth: {identities: 1}}\n")
    with pytest.raises(ConfigError, match=rf"data\.synth\.identities: must be >= 2 in {re.escape(str(p))}$"):
        load_config(p, ["data.synth.images_per_identity=2"])


def test_model_kwargs_are_checked_against_get_model():
    with pytest.raises(ConfigError) as e:
        load_config(TINY, ["model.kwargs={width_mul: 0.125}"])
    msg = str(e.value)
    assert msg.startswith("model.kwargs: unknown backbone kwarg 'width_mul' for r18 (accepted: dropout, input_size, "
                          "width_mult)"), msg
    assert "command-line override 'model.kwargs={width_mul: 0.125}'" in msg
    with pytest.raises(ConfigError, match=r"model\.kwargs\.embedding_size: set model\.embedding_size"):
        config_from_dict({"data": {"path": "/d"}, "model": {"kwargs": {"embedding_size": 8}}})
    with pytest.raises(ConfigError, match=r"model\.kwargs\.seed: set runtime\.seed"):
        load_config(TINY, ["model.kwargs.seed=3"])
    with pytest.raises(ConfigError, match=r"model\.name: unknown backbone 'r7'"):
        load_config(TINY, ["model.name=r7"])
    with pytest.raises(ConfigError, match=r"teacher\.kwargs: unknown backbone kwarg 'depth'"):
        load_config(TINY, ["teacher.path=/t.pt", "teacher.kwargs={depth: 3}"])
    cfg = load_config(TINY, ["model.name=iresnet18", "model.kwargs={dropout: 0.1, width_mult: 0.25}"])
    assert cfg.model.kwargs == {"dropout": 0.1, "width_mult": 0.25}


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(TINY, ["kd.weight=3", "teacher.path=/x/t.pt", "masks.prob=0.5"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    assert config_hash(again) == config_hash(cfg)
    # logging knobs do not change the trajectory hash, training knobs do
    assert config_hash(load_config(tmp_path / "config.yaml", ["runtime.log_every=9"])) == config_hash(cfg)
    assert config_hash(load_config(tmp_path / "config.yaml", ["optim.lr=0.3"])) != config_hash(cfg)


def test_programmatic_config():
    cfg = config_from_dict({"data": {"source": "synth", "synth": {"identities": 4, "images_per_identity": 2}},
                            "model": {"name": "r18"}})
    assert cfg.data.synth.identities == 4 and cfg.head.name == "elastic_arc"
    cfg.kd.weight = 1.0  # editing a field by hand: validate_config catches inconsistencies
    with pytest.raises(ConfigError, match="teacher.path"):
        validate_config(cfg)
    with pytest.raises(ConfigError, match="data.path"):
        config_from_dict({"data": {"source": "recordio"}})


def test_step_schedule_matches_reference_milestones():
    s = load_config(None, ["data.path=/d"]).schedule  # defaults = REFERENCE §7
    assert s.milestones == [8, 14, 20, 25] and s.epochs == 26 and s.gamma == 0.1
    spe = 100
    assert total_steps(s, spe) == 2600
    assert lr_factor(0, s, spe) == 1.0
    assert lr_factor(699, s, spe) == 1.0  # public rule: milestone 8 drops after 7 finished epochs
    assert lr_factor(700, s, spe) == pytest.approx(0.1)
    assert lr_factor(1300, s, spe) == pytest.approx(0.01)
    assert lr_factor(2599, s, spe) == pytest.approx(1e-4)


def test_poly_and_warmup():
    s = load_config(None, ["data.path=/d", "schedule.kind=poly", "schedule.epochs=10", "schedule.warmup_epochs=1",
                           "schedule.power=2"]).schedule
    spe = 10
    assert lr_factor(0, s, spe) == pytest.approx(0.1)
    assert lr_factor(9, s, spe) == pytest.approx(1.0)
    assert lr_factor(10, s, spe) == pytest.approx(1.0)
    assert lr_factor(55, s, spe) == pytest.approx((1 - 45 / 90) ** 2)
    assert lr_factor(99, s, spe) == pytest.approx((1 - 89 / 90) ** 2)


def test_paper_recipes_load():
    recipes = {
        "elasticface_arc_teacher_ms1mv2.yaml": (0.0, 0.0),
        "elasticface_arc_aug.yaml": (0.0, 0.5),
        "maskinv_lg.yaml": (100.0, 0.5),
        "maskinv_hg.yaml": (3000.0, 0.5),
    }
    for name, (lam, prob) in recipes.items():
        cfg = load_config(ROOT / "configs" / name)
        assert cfg.kd.weight == lam and cfg.masks.prob == prob, name
        assert cfg.model.name == "r100" and cfg.model.embedding_size == 512
        assert cfg.head.name == "elastic_arc"
        assert cfg.optim.name == "sgd" and cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 5e-4
        # HG starts from LG at LG's rate x 0.1 (README, configs/maskinv_hg.yaml)
        assert cfg.optim.lr == (0.01 if name == "maskinv_hg.yaml" else 0.1), name
        assert cfg.optim.lr_reference_batch == 512 and cfg.optim.clip_grad_norm == 5
        assert cfg.schedule.epochs == 26 and cfg.schedule.milestones == [8, 14, 20, 25]
        assert cfg.runtime.batch_size == 128
    assert load_config(ROOT / "configs" / "maskinv_hg.yaml").model.init


def test_run_folder_paths_are_saved_relative_and_hash_run_relative(tmp_path):
    from maskinv.train.config import config_diff

    run = tmp_path / "runs" / "a"
    ov = ["data.source=recordio", f"data.path={run / 'data'}", "teacher.path=/elsewhere/t.pt", "kd.weight=1",
          "teacher.cache.enabled=true", f"teacher.cache.path={run / 'tc'}"]
    cfg = load_config(TINY, ov)
    save_config(cfg, run / "config.yaml")
    text = (run / "config.yaml").read_text()
    assert str(run) not in text and "/elsewhere/t.pt" in text
    assert "paths_relative_to_this_file: [data.path, teacher.cache.path]" in text
    assert config_to_dict(load_config(run / "config.yaml")) == config_to_dict(cfg)

    moved = tmp_path / "moved" / "b"
    moved.parent.mkdir()
    (tmp_path / "runs" / "a").rename(moved)
    again = load_config(moved / "config.yaml")
    assert again.data.path == str(moved / "data") and again.teacher.cache.path == str(moved / "tc")
    # identity: equal run-relative, different as absolute paths; an override still wins over the file
    assert config_hash(again, run_dir=moved) == config_hash(cfg, run_dir=run)
    assert config_hash(again) != config_hash(cfg)
    assert config_diff(again, cfg, run_dir=moved) == ["data.path"]
    assert config_diff(again, cfg, run_dir=run) == ["data.path"]
    assert config_diff(cfg, cfg, run_dir=run) == []
    assert load_config(moved / "config.yaml", ["data.path=/d"]).data.path == "/d"
    # a path outside the run folder is not relative, so it stays part of the identity
    other = load_config(moved / "config.yaml", ["teacher.path=/other/t.pt"])
    assert config_diff(other, again, run_dir=moved) == ["teacher.path"]
    # no run folder given, or no path inside it: the hash is the plain one
    assert config_hash(cfg, run_dir=tmp_path / "x") == config_hash(cfg)


def test_relative_paths_list_is_checked(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("paths_relative_to_this_file: [optim.lr]\ndata: {path: d}\n")
    with pytest.raises(ConfigError, match="paths_relative_to_this_file: expected a list of path keys"):
        load_config(p)
    p.write_text("paths_relative_to_this_file: [data.path]\ndata: {path: d}\n")
    assert load_config(p).data.path == str(tmp_path / "d")
    # a plain config (no list) keeps relative paths relative to the working directory
    p.write_text("data: {path: d}\n")
    assert load_config(p).data.path == "d"
