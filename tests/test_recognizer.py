"""The one-interface contracts: the registry helper, the Recognizer protocol and its registry (a toy
recogniser and a toy detector reach the CLI by one registration each), the protocol table, FAR_GRID."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.cli import main
from maskinv.errors import CheckpointError, ConfigError, UnknownNameError
from maskinv.utils.registry import Registry

from helpers.plugin_toy import PlugRecognizer


# ----------------------------------------------------------------------------- registry helper
def test_registry_names_aliases_suggestions_and_duplicates():
    r: Registry[int] = Registry("widget")
    r.register("alpha", 1, aliases=("a1",))

    @r.register("beta")
    def beta():  # decorator form returns the object
        return 2

    assert r.names() == ["alpha", "beta"] and "A1" in r and r.get("a1") == 1 and r.get(" Beta ") is beta
    with pytest.raises(UnknownNameError, match=r"unknown widget 'alpah' \(did you mean 'alpha'\?\); known: alpha, beta"):
        r.get("alpah")
    with pytest.raises(UnknownNameError, match="known: alpha, beta") as exc:
        r.get("zzz")
    assert "did you mean" not in str(exc.value)
    with pytest.raises(ConfigError, match="already registered"):
        r.register("ALPHA", 3)
    r.register("alpha", 3, replace=True)
    assert r.get("alpha") == 3 and r.suggest("bta") == "beta"
    r.move_to_front("beta")
    assert r.names() == ["beta", "alpha"]
    r.unregister("beta")
    assert r.names() == ["alpha"]


def test_registry_entry_points_register_once_and_broken_plugins_are_named(monkeypatch):
    import importlib.metadata as md

    calls = []

    class EP:
        def __init__(self, name, fn):
            self.name, self.value, self._fn = name, f"pkg:{name}", fn

        def load(self):
            return self._fn

    def good(reg):
        calls.append(1)
        reg.register("plugged", 42)

    monkeypatch.setattr(md, "entry_points", lambda group: [EP("good", good)] if group == "g.ok" else
                        [EP("bad", lambda reg: 1 / 0)])
    r = Registry("thing", entry_points="g.ok")
    assert r.get("plugged") == 42 and r.names() == ["plugged"] and calls == [1]
    bad = Registry("thing", entry_points="g.bad")
    with pytest.raises(ConfigError, match="thing plug-in 'bad' .* failed to register: division by zero"):
        bad.names()


# ----------------------------------------------------------------------------- recogniser registry
class ToyRecognizer(PlugRecognizer):
    """A complete Recognizer in a few lines (the plug-in's: normalised mean colour of 4 quadrants)."""

    backend = "toy"
    fingerprint = "toy:1"


@pytest.fixture
def toy_recognizer():
    from maskinv.models.recognizer import RECOGNIZERS, register_recognizer

    register_recognizer("toy", lambda **kw: ToyRecognizer(), trainable=False, summary="a test recogniser")
    yield
    RECOGNIZERS.unregister("toy")


@pytest.fixture
def crops(tmp_path):
    import cv2

    rng = np.random.default_rng(3)
    paths = []
    for i in range(3):
        p = tmp_path / f"c{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        paths.append(str(p))
    return paths


def test_loaded_models_satisfy_the_protocol():
    from maskinv.models import get_model
    from maskinv.models.loading import load_model
    from maskinv.models.recognizer import Recognizer

    m = load_model(get_model("r18", width_mult=0.125, embedding_size=16, input_size=32, seed=0))
    assert isinstance(m, Recognizer) and isinstance(ToyRecognizer(), Recognizer)
    assert m.needs_photo is False and m.supports_flip and m.max_batch is None and m.module is not None
    assert m.input_convention["channel_order"] == "RGB"


def test_toy_recogniser_reaches_api_and_cli(toy_recognizer, crops, tmp_path, capsys):
    import maskinv
    from maskinv.models.recognizer import is_named_model, is_trainable

    assert is_named_model("toy") and not is_trainable("toy")
    m = maskinv.load_model("toy")
    emb = maskinv.embed(crops, "toy", aligned=True)
    np.testing.assert_allclose(emb, m.embed_aligned(np.stack([__import__("cv2").imread(c)[:, :, ::-1] for c in crops])),
                               atol=1e-6)
    out = tmp_path / "e.npy"
    assert main(["embed", *crops, "--model", "toy", "--aligned", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), emb, atol=1e-6)
    capsys.readouterr()
    assert main(["embed", "--help"]) == 0  # the --model help text is built from the registry
    assert "toy: a test recogniser" in " ".join(capsys.readouterr().out.split())


def test_misspelt_model_name_gets_a_suggestion(tmp_path, capsys, monkeypatch):
    from maskinv.models.loading import load_model

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"dilb: model file not found \(did you mean 'dlib'\?\)"):
        load_model("dilb")
    (tmp_path / "x.png").write_bytes(b"")
    assert main(["embed", "x.png", "--model", "dilb", "--out", "e.npy"]) == 2
    err = capsys.readouterr().err
    assert "did you mean the model 'dlib'" in err and len(err.strip().splitlines()) == 1


def test_named_trainable_recogniser_is_a_torch_teacher(tmp_path):
    """A named recogniser with a module (what SFace is) runs inside the step as a FrozenTeacher and
    can be copied as a student; one without (dlib) runs only in the cache pre-pass."""
    from maskinv.train.distill import FrozenTeacher, load_teacher
    from maskinv.models import get_model
    from maskinv.models.loading import load_model
    from maskinv.models.recognizer import RECOGNIZERS, register_recognizer, runs_in_prepass_only

    net = get_model("r18", width_mult=0.125, embedding_size=16, input_size=32, seed=2)
    register_recognizer("toynet", lambda: load_model(net), trainable=True, summary="test")
    try:
        assert not runs_in_prepass_only("toynet") and runs_in_prepass_only("dlib") and runs_in_prepass_only("m.onnx")
        t = load_teacher("toynet")
        assert isinstance(t, FrozenTeacher) and "toynet" in t.maskinv_source
        assert not any(p.requires_grad for p in t.parameters())
    finally:
        RECOGNIZERS.unregister("toynet")


# ----------------------------------------------------------------------------- detectors from the registry
def test_registered_detector_reaches_the_cli(crops, tmp_path, capsys):
    import cv2

    from maskinv.align import Face, FaceDetector, register_detector
    from maskinv.align.backends import DETECTORS
    from maskinv.constants import ARCFACE_TEMPLATE_112

    seen = []

    class Toy(FaceDetector):
        name = "toydet"

        def detect(self, image):
            seen.append(image.shape)
            h, w = image.shape[:2]
            pts = np.asarray(ARCFACE_TEMPLATE_112, np.float32) * (w / 112.0)
            return [Face(box=np.array([0, 0, w - 1, h - 1], np.float32), landmarks=pts, score=0.99)]

    register_detector("toydet", lambda **kw: Toy())
    try:
        from maskinv.models import export_backbone, get_model

        mp = tmp_path / "m.pt"
        export_backbone(get_model("r18", width_mult=0.125, embedding_size=16, input_size=32, seed=1), mp)
        out = tmp_path / "e.npy"
        assert main(["embed", *crops, "--model", str(mp), "--detector", "toydet", "--out", str(out)]) == 0
        assert len(seen) == 3 and np.load(out).shape == (3, 16)
        # `align` (one image, then a folder) and `data bin` run the registered detector too
        seen.clear()
        assert main(["align", crops[0], str(tmp_path / "a.png"), "--size", "32", "--detector", "toydet"]) == 0
        assert len(seen) == 1 and cv2.imread(str(tmp_path / "a.png")).shape == (32, 32, 3)
        people = tmp_path / "people"
        for k, name in enumerate(("Ann", "Bob")):
            (people / name).mkdir(parents=True)
            for j in (1, 2):
                img = cv2.imread(crops[k + j - 1])  # four different files (the align cache keys by content)
                cv2.imwrite(str(people / name / f"{name}_000{j}.png"), img[:, ::-1] if k else img)
        (people / "pairs.txt").write_text("Ann 1 2\nAnn 1 Bob 1\nBob 1 2\nBob 2 Ann 2\n")
        seen.clear()
        assert main(["align", str(people), str(tmp_path / "aligned"), "--no-progress", "--detector", "toydet"]) == 0
        assert len(seen) == 4 and len(list((tmp_path / "aligned").rglob("*.png"))) == 4
        seen.clear()
        assert main(["data", "bin", str(people), str(tmp_path / "p.bin"), "--detector", "toydet",
                     "--align-cache", str(tmp_path / "ac")]) == 0
        assert len(seen) == 4  # each of the 4 photos detected once
        from maskinv.data.bins import load_bin

        imgs, issame = load_bin(tmp_path / "p.bin")
        assert len(imgs) == 8 and list(issame) == [True, False, True, False]
        assert cv2.imdecode(np.frombuffer(imgs[0], np.uint8), cv2.IMREAD_COLOR).shape[:2] == (112, 112)
        capsys.readouterr()
        for cmd in (["embed"], ["eval"], ["adapt"], ["data", "bin"], ["align"], ["verify"], ["gallery", "add"]):
            assert main([*cmd, "--help"]) == 0
            assert "toydet" in capsys.readouterr().out, cmd
    finally:
        DETECTORS.unregister("toydet")


def test_entry_point_plugins_reach_the_cli(monkeypatch, crops, tmp_path, capsys):
    """A third-party package's entry points (groups maskinv.recognizers, maskinv.detectors; nothing
    installed: importlib.metadata.entry_points is replaced) register once and reach --model/--detector."""
    import importlib.metadata as md

    import cv2

    from helpers import plugin_toy
    from maskinv.align.backends import DETECTORS
    from maskinv.models.recognizer import RECOGNIZERS

    eps = {"maskinv.recognizers": [md.EntryPoint("plugrec", "helpers.plugin_toy:register_recognizers",
                                                 "maskinv.recognizers")],
           "maskinv.detectors": [md.EntryPoint("plugdet", "helpers.plugin_toy:register_detectors", "maskinv.detectors")]}
    asked: list[str] = []

    def entry_points(*, group=None, **kw):
        asked.append(group)
        return eps.get(group, [])

    monkeypatch.setattr(md, "entry_points", entry_points)
    for reg in (RECOGNIZERS, DETECTORS):
        monkeypatch.setattr(reg, "_plugins_loaded", False)  # as in a fresh process
    plugin_toy.CALLS.clear()
    plugin_toy.SEEN.clear()
    try:
        out = tmp_path / "e.npy"
        assert main(["embed", *crops, "--model", "plugrec", "--detector", "plugdet", "--out", str(out)]) == 0
        assert sorted(plugin_toy.CALLS) == ["detectors", "recognizers"]
        assert {"maskinv.recognizers", "maskinv.detectors"} <= set(asked)
        assert len(plugin_toy.SEEN) == 3  # the plug-in detector saw every photo
        rgb = np.stack([cv2.imread(c)[:, :, ::-1] for c in crops])
        np.testing.assert_allclose(np.load(out), plugin_toy.PlugRecognizer().embed_aligned(rgb), atol=1e-2)
        capsys.readouterr()
        assert main(["embed", "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "plugrec: a plug-in recogniser" in text and "plugdet" in text
        assert main(["align", "--help"]) == 0 and "plugdet" in capsys.readouterr().out
        assert sorted(plugin_toy.CALLS) == ["detectors", "recognizers"]  # loaded once, not per lookup
    finally:
        for reg, name in ((RECOGNIZERS, "plugrec"), (DETECTORS, "plugdet")):
            if name in reg:
                reg.unregister(name)


def test_cli_choices_and_help_come_from_the_registries(capsys):
    from maskinv.models.registry import list_models

    assert main(["verify", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in list_models()) and "mbf_large" in text  # was missing from --arch help
    assert "mtcnn, dlib" in text


# ----------------------------------------------------------------------------- protocols and FAR grid
def test_protocol_table_drives_masked_sides():
    from maskinv.masks.protocols import (MASKED_PROTOCOLS, PROBE_REF, PROTOCOL_TABLE, PROTOCOLS, masked_indices,
                                         pair_sides)

    assert PROTOCOLS == ("uu", "mu", "mm") and MASKED_PROTOCOLS == ("mu", "mm") and PROBE_REF in PROTOCOL_TABLE
    assert not PROTOCOL_TABLE[PROBE_REF].pair_list
    images, masked = np.arange(8), np.arange(8) + 100
    for name in PROTOCOLS:
        p = PROTOCOL_TABLE[name]
        idx = set(masked_indices(8, name))
        assert idx == {i for i in range(8) if (i % 2 == 0 and p.masks_reference) or (i % 2 == 1 and p.masks_probe)}
        first, second = pair_sides(images, masked, name)
        assert all((v >= 100) == p.masks_reference for v in first) and all((v >= 100) == p.masks_probe for v in second)


def test_far_grid_is_reported_everywhere():
    from maskinv.evaluate.metrics import FAR_GRID, verification_metrics
    from maskinv.evaluate.probe_ref import probe_ref_metrics

    rng = np.random.default_rng(0)
    g = np.r_[np.ones(200, bool), np.zeros(2000, bool)]
    s = rng.normal(size=g.size) + 2 * g
    assert set(FAR_GRID) <= set(verification_metrics(s[:400], g[:400].copy() | (np.arange(400) % 2 == 0))["tar_at_far"])
    assert set(FAR_GRID) <= set(probe_ref_metrics(s, g)["tar_at_far"])
    assert json.dumps(sorted(FAR_GRID)) == json.dumps([1e-4, 5e-4, 1e-3, 1e-2])
