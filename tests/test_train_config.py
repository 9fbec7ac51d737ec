"""Run configs: typed loading, strict keys, overrides, round trip, schedules, paper recipes."""
from __future__ import annotations

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
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TINY, ["schedule.milestones=[1, 2"])


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
        assert cfg.optim.lr == 0.1 and cfg.optim.lr_reference_batch == 512 and cfg.optim.clip_grad_norm == 5
        assert cfg.schedule.epochs == 26 and cfg.schedule.milestones == [8, 14, 20, 25]
        assert cfg.runtime.batch_size == 128
    assert load_config(ROOT / "configs" / "maskinv_hg.yaml").model.init
