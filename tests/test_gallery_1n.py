"""1:N that a door needs: enrol a folder tree in one command, duplicates refused, open-set search
with an 'unknown' answer, and rank-k / FNIR at FPIR from probe photos."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.gallery import DuplicateTemplateError, Gallery, identification_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 32


def _cli(*argv):
    from maskinv.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """8 people x 4 crops (crop 0 listed as the 'masked' probe) + 3 strangers x 2 crops."""
    from maskinv.models import export_backbone, get_model
    from maskinv.utils.images import encode_image

    r = tmp_path_factory.mktemp("door")
    export_backbone(get_model("r18", width_mult=0.125, input_size=SIZE, embedding_size=16, seed=0), r / "model.pt")
    rng = np.random.default_rng(1)
    for folder, people, n in (("staff", 8, 4), ("strangers", 3, 2)):
        for p in range(people):
            base = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            name = f"{'S' if folder == 'staff' else 'T'}{p}"
            (r / folder / name).mkdir(parents=True)
            for j in range(n):
                img = np.clip(base.astype(int) + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)
                (r / folder / name / f"{name}_{j}.png").write_bytes(encode_image(img, "png"))
    (r / "masked.txt").write_text("".join(f"S{p}/S{p}_0.png\n" for p in range(8)))
    return r


def test_enrol_a_tree_in_one_command_skipping_the_probes(tree, tmp_path, capsys):
    db = tmp_path / "g.db"
    assert _cli("gallery", "add", db, "--tree", tree / "staff", "--skip-list", tree / "masked.txt",
                "--model", tree / "model.pt", "--aligned") == 0
    assert "added 24 template(s) for 8 people" in capsys.readouterr().out
    with Gallery(db, create=False) as g:
        assert g.identities() == [(f"S{p}", 3) for p in range(8)]
    # the same tree again: every photo is already enrolled -> skipped and listed, exit 1, nothing added
    assert _cli("gallery", "add", db, "--tree", tree / "staff", "--skip-list", tree / "masked.txt",
                "--model", tree / "model.pt", "--aligned") == 1
    cap = capsys.readouterr()
    assert "added 0 template(s)" in cap.out and cap.err.count("already enrolled as") == 24
    # one person, one photo already there: refused with one line, exit 2
    assert _cli("gallery", "add", db, "Someone", tree / "staff" / "S0" / "S0_1.png",
                "--model", tree / "model.pt", "--aligned") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskinv gallery add: error:") and "already enrolled as 'S0'" in err and "\n" not in err
    with Gallery(db, create=False) as g:
        assert len(g) == 24


def test_duplicates_within_one_add_are_refused():
    g = Gallery(":memory:", fingerprint="f" * 64, embedding_size=4)
    v = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], np.float32)
    g.add("a", v, fingerprint="f" * 64)
    with pytest.raises(DuplicateTemplateError, match="already enrolled as 'a'"):
        g.add("b", v[:1], fingerprint="f" * 64)
    with pytest.raises(DuplicateTemplateError):
        g.add("c", np.array([[0, 0, 1.0, 0], [0, 0, 1.0, 0]], np.float32), fingerprint="f" * 64)
    assert len(g) == 2


def test_search_with_a_threshold_answers_unknown(tree, tmp_path, capsys):
    db = tmp_path / "g.db"
    assert _cli("gallery", "add", db, "--tree", tree / "staff", "--model", tree / "model.pt", "--aligned") == 0
    capsys.readouterr()
    probe = tree / "strangers" / "T0" / "T0_0.png"
    member = tree / "staff" / "S3" / "S3_1.png"
    assert _cli("gallery", "search", db, probe, member, "--model", tree / "model.pt", "--aligned",
                "--threshold", "0.9999", "--json", "-k", "1") == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["answer"] == "unknown"  # no stranger reaches that threshold
    assert out[1]["answer"] == "S3"       # an enrolled photo scores 1.0 against itself
    assert _cli("gallery", "search", db, probe, "--model", tree / "model.pt", "--aligned", "--threshold", "-1") == 0
    assert ": S" in capsys.readouterr().out.splitlines()[0]  # everybody passes -1: the best match is named


def test_evaluate_reports_rank_and_fnir_at_fpir_and_stores_thresholds(tree, tmp_path, capsys):
    db = tmp_path / "g.db"
    assert _cli("gallery", "add", db, "--tree", tree / "staff", "--skip-list", tree / "masked.txt",
                "--model", tree / "model.pt", "--aligned") == 0
    capsys.readouterr()
    assert _cli("gallery", "evaluate", db, tree / "staff", "--probe-list", tree / "masked.txt", "--model",
                tree / "model.pt", "--aligned", "--fpir", "0.125", "--fpir", "0.01", "--rank", "1", "--rank", "3",
                "--store", "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["num_probes"] == 8 and res["num_mated"] == 8 and res["num_nonmated_searches"] == 8
    assert set(res["rank"]) == {"1", "3"} and 0 <= res["rank"]["1"] <= res["rank"]["3"] <= 1
    assert res["fnir_at_fpir"]["0.01"] is None and "needs >= 100 non-mated" in res["undefined"]["fnir_at_fpir[0.01]"]
    t = res["threshold_at_fpir"]["0.125"]
    with Gallery(db, create=False) as g:
        assert g.fpir_threshold(0.125) == t
    assert _cli("gallery", "search", db, tree / "staff" / "S0" / "S0_0.png", "--model", tree / "model.pt",
                "--aligned", "--fpir", "0.125") == 0
    assert f"threshold {t:.4f}, FPIR 0.125" in capsys.readouterr().out


def test_identification_metrics_by_hand():
    # 3 identities; probes: a (mated, rank 1), b (mated, rank 2), z (not enrolled)
    S = np.array([[0.9, 0.2, 0.1], [0.5, 0.4, 0.1], [0.3, 0.6, 0.2]])
    m = identification_metrics(S, ["a", "b", "c"], ["a", "b", "z"], ranks=(1, 2), fpirs=(0.5,))
    assert m["rank"] == {1: 0.5, 2: 1.0}
    # non-mated searches: a without a -> 0.2, b without b -> 0.5, z -> 0.6; FPIR <= 0.5 allows 1 of 3
    assert m["threshold_at_fpir"][0.5] == pytest.approx(np.nextafter(0.5, 1))
    assert m["fnir_at_fpir"][0.5] == 0.5  # a passes (0.9 >= t, rank 1); b is not ranked first
