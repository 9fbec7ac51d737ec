"""Overrides as text (`key.sub=value`, the command line) or a typed mapping (code, the study): one
meaning, one conversion (the schema's `coerce`), and errors that carry the key they are about."""
from __future__ import annotations

from pathlib import Path

import pytest

from maskinv.errors import ConfigError
from maskinv.train.config import apply_overrides, config_from_dict, config_to_dict, load_config
from maskinv.train.config_overrides import overrides_dict, parse_override

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml"

TEXT = ["optim.lr=1e-05", "schedule.milestones=[1, 2.5]", "model.kwargs={width_mult: 0.25}", "teacher.path=null",
        "runtime.batch_size=8", "data.path='001: x'", "masks.kinds=[surgical, n95]", "masks.renderer=v1",
        "precision.channels_last=true"]
TYPED = {"optim.lr": 1e-05, "schedule.milestones": [1, 2.5], "model.kwargs": {"width_mult": 0.25},
         "teacher.path": None, "runtime.batch_size": 8, "data.path": "001: x", "masks.kinds": ["surgical", "n95"],
         "masks.renderer": "v1", "precision.channels_last": True}


def test_text_and_typed_overrides_build_the_same_config():
    # YAML 1.1 reads 1e-05 as text: the schema's coercion makes it the number when it is applied
    assert overrides_dict(TEXT) == {**TYPED, "optim.lr": "1e-05"}
    a, b = load_config(TINY, TEXT), load_config(TINY, TYPED)
    assert config_to_dict(a) == config_to_dict(b)
    assert b.data.path == "001: x" and b.optim.lr == 1e-05 and b.schedule.milestones == [1, 2.5]


def test_typed_values_go_through_the_schema_coercion():
    d = apply_overrides({}, {"optim.lr": "1e-3", "runtime.batch_size": 16.0, "schedule.milestones": ["2e0", 5],
                             "model.kwargs.width_mult": "0.5"})
    assert d["optim"]["lr"] == 0.001 and isinstance(d["optim"]["lr"], float)
    assert d["runtime"]["batch_size"] == 16 and isinstance(d["runtime"]["batch_size"], int)
    assert d["schedule"]["milestones"] == [2.0, 5] and isinstance(d["schedule"]["milestones"][1], int)
    assert d["model"]["kwargs"] == {"width_mult": "0.5"}  # free-form: checked against get_model when built
    with pytest.raises(ConfigError, match=r"^kd.weight: expected a number, got 'heavy' in override kd.weight='heavy'$") \
            as e:
        apply_overrides({}, {"kd.weight": "heavy"})
    assert e.value.key == "kd.weight"
    with pytest.raises(ConfigError, match=r"^runtime.batch_size: expected an integer, got 2.5 in command-line "
                                          r"override 'runtime.batch_size=2.5'$"):
        apply_overrides({}, ["runtime.batch_size=2.5"])


def test_a_mapping_is_not_changed_and_sections_stay_mappings():
    typed = {"model.kwargs": {"width_mult": 0.25}, "data.synth": {"identities": 4}}
    d = apply_overrides({}, typed)
    d["model"]["kwargs"]["width_mult"] = 1.0
    assert typed["model.kwargs"] == {"width_mult": 0.25}  # copied, not shared
    assert d["data"]["synth"] == {"identities": 4}  # a whole section is checked when the config is built


def test_errors_carry_the_key():
    cases = [
        (lambda: apply_overrides({}, {"optim.lrr": 1}), "optim.lrr"),
        (lambda: apply_overrides({}, ["optim.lr=[1"]), "optim.lr"),
        (lambda: config_from_dict({"data": {"path": "d"}, "optim": {"momentum": 2.0}}), "optim.momentum"),
        (lambda: config_from_dict({"optim": {"nope": 1}}), "optim.nope"),
        (lambda: config_from_dict({"data": {"path": "d"}, "model": {"kwargs": {"depth": 3}}}), "model.kwargs.depth"),
        (lambda: config_from_dict({"data": {"path": "d"}, "model": {"name": "r19"}}), "model.name"),
        (lambda: config_from_dict({"data": {"path": "d"}, "kd": {"weight": 1.0}}), "teacher.path"),
        (lambda: config_from_dict({"data": {"path": "d"}, "runtime": {"seed": "x"}}), "runtime.seed"),
        (lambda: config_from_dict({"data": {"path": "d"}, "masks": {"kinds": ["surgical", 3]}}), "masks.kinds"),
    ]
    for build, key in cases:
        with pytest.raises(ConfigError) as e:
            build()
        assert e.value.key == key, (str(e.value), key)
    with pytest.raises(ConfigError) as e:
        config_from_dict([1])
    assert e.value.key is None  # not about one key


@pytest.mark.parametrize("items", [
    ["model.kwargs={b: 2}", "model.kwargs.a=1", "model.kwargs={c: 3}"],
    ["model.kwargs.a=1", "model.kwargs={c: 3}", "model.kwargs.a=2"],
    ["optim.lr=0.1", "optim={lr: 0.2, momentum: 0.5}", "optim.lr=0.3", "optim.momentum=0.7"],
])
def test_merged_mapping_has_the_effect_of_the_sequence(items):
    merged = overrides_dict(items[:1], {}, items[1:])
    assert apply_overrides({}, merged) == apply_overrides({}, items)


def test_bad_override_items():
    for bad in ("optim.lr", "=1", "optim..lr=1"):
        with pytest.raises(ConfigError, match="key.sub=value|bad key"):
            parse_override(bad)
    with pytest.raises(ConfigError, match="key.sub=value items or a mapping"):
        apply_overrides({}, "optim.lr=1")  # one string, not a list of them
