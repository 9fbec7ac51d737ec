"""The paper-faithful recipe: the public MaskInv step schedule and the heads of the paper configs."""
from __future__ import annotations

from pathlib import Path

import pytest

from maskinv.train.config import load_config
from maskinv.train.schedule import lr_factor, total_steps

ROOT = Path(__file__).resolve().parents[1]
PAPER_MILESTONES = [8, 14, 20, 25]


def _public_rule(epoch: int) -> float:
    # public MaskInv/ElasticFace config: 0.1 ** len([m for m in milestones if m - 1 <= epoch])
    return 0.1 ** sum(1 for m in PAPER_MILESTONES if m - 1 <= epoch)


def test_step_schedule_drops_where_the_public_code_drops():
    s = load_config(None, ["data.path=/d"]).schedule
    assert s.milestones == PAPER_MILESTONES and s.epochs == 26 and s.warmup_epochs == 0
    spe = 37  # odd on purpose: epoch boundaries are not round step numbers
    assert total_steps(s, spe) == 26 * spe
    drops = []
    for epoch in range(26):
        want = _public_rule(epoch)
        for step in (epoch * spe, epoch * spe + spe // 2, (epoch + 1) * spe - 1):  # first, middle, last step
            assert lr_factor(step, s, spe) == pytest.approx(want, rel=1e-12), (epoch, step)
        if epoch and lr_factor(epoch * spe, s, spe) < lr_factor(epoch * spe - 1, s, spe):
            drops.append(epoch)
    # 0-based epochs that run at the lower rate first: after 7, 13, 19 and 24 finished epochs
    assert drops == [7, 13, 19, 24]
    assert lr_factor(0, s, spe) == 1.0
    assert lr_factor(26 * spe - 1, s, spe) == pytest.approx(1e-4)


def test_fractional_milestone_and_milestone_one():
    s = load_config(None, ["data.path=/d", "schedule.epochs=4", "schedule.milestones=[1, 2.5]"]).schedule
    spe = 10
    assert lr_factor(0, s, spe) == pytest.approx(0.1)  # m = 1: in force from the first step
    assert lr_factor(14, s, spe) == pytest.approx(0.1)
    assert lr_factor(15, s, spe) == pytest.approx(0.01)  # m - 1 = 1.5 epochs = step 15


STUDENTS = ["elasticface_arc_aug.yaml", "maskinv_lg.yaml", "maskinv_hg.yaml"]


@pytest.mark.parametrize("name,std", [("elasticface_arc_teacher_ms1mv2.yaml", 0.05)] + [(n, 0.0125) for n in STUDENTS])
def test_paper_config_margin_spread_and_scale(name, std):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.head.name == "elastic_arc"
    assert cfg.head.kwargs["std"] == std, name
    assert cfg.head.kwargs["s"] == 64.0 and cfg.head.kwargs["m"] == 0.5, name
    assert cfg.schedule.milestones == PAPER_MILESTONES and cfg.schedule.gamma == 0.1
    # lr 0.1 per 512 images of global batch: 0.1 at 4 GPUs x 128; HG starts from LG at LG's rate x 0.1 (README)
    assert cfg.optim.lr == (0.01 if name == "maskinv_hg.yaml" else 0.1), name
    assert cfg.optim.lr_reference_batch == 512 and cfg.runtime.batch_size == 128
