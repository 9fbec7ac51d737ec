"""Pieces of `maskinv serve` without a server: upload checks, keys, the threshold policy,
FPIR thresholds from impostor tails, the mask classifier file, metrics text."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskinv.errors import CheckpointError, ConfigError, DataFormatError
from maskinv.serve.errors import ServeError


def _jpeg(h=40, w=60):
    import cv2

    return cv2.imencode(".jpg", np.full((h, w, 3), 128, np.uint8))[1].tobytes()


def _png(h=40, w=60):
    import cv2

    return cv2.imencode(".png", np.full((h, w, 3), 128, np.uint8))[1].tobytes()


def test_header_size_reads_jpeg_and_png_without_decoding():
    from maskinv.serve.images import header_size

    assert header_size(_jpeg(40, 60), "jpg") == (60, 40)
    assert header_size(_png(33, 71), "png") == (71, 33)
    assert header_size(b"\xff\xd8\xff\xe0\x00", "jpg") is None
    assert header_size(b"\x89PNG\r\n\x1a\n" + bytes(4), "png") is None


@pytest.mark.parametrize("data, ctype, status, code", [
    (b"", "image/jpeg", 400, "empty_image"),
    (b"GIF89a" + bytes(40), "image/gif", 415, "not_an_image"),
    (b"plain text, not an image", "image/jpeg", 415, "not_an_image"),
    (None, "text/plain", 415, "wrong_content_type"),
    ("truncated", "image/jpeg", 400, "truncated_image"),
    ("big", "image/jpeg", 413, "too_many_pixels"),
    ("bigpng", "image/png", 413, "too_many_pixels"),
])
def test_decode_upload_refusals(data, ctype, status, code):
    from maskinv.serve.images import decode_upload

    if data is None:
        data = _jpeg()
    elif data == "truncated":
        data = _jpeg()[:-40]
    elif data == "big":
        data = _jpeg(100, 200)
    elif data == "bigpng":  # a 50-megapixel header: refused before anything is allocated
        import struct
        import zlib

        ihdr = struct.pack(">IIBBBBB", 8000, 6250, 8, 2, 0, 0, 0)
        data = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    with pytest.raises(ServeError) as e:
        decode_upload(data, "image", max_pixels=10_000 if code == "too_many_pixels" and ctype == "image/jpeg" else 16_000_000,
                      content_type=ctype)
    assert (e.value.status, e.value.code) == (status, code)
    assert e.value.message.startswith("image: ")


def test_decode_upload_accepts_jpeg_and_png():
    from maskinv.serve.images import decode_upload

    for data in (_jpeg(), _png()):
        img = decode_upload(data, "image", max_pixels=10_000, content_type="image/jpeg")
        assert img.shape == (40, 60, 3) and img.dtype == np.uint8


def test_keys_hashed_scoped_rate_limited(tmp_path):
    from maskinv.serve.keys import KeyStore, add_key

    p = tmp_path / "keys.json"
    k1 = add_key(p, "door", ["verify"], rate_per_minute=2)
    k2 = add_key(p, "desk", ["admin"])
    raw = p.read_text()
    assert k1 not in raw and k2 not in raw and len(json.loads(raw)["keys"]) == 2
    with pytest.raises(ConfigError, match="exists"):
        add_key(p, "door", ["verify"])
    with pytest.raises(ConfigError, match="scopes"):
        add_key(p, "x", ["root"])
    ks = KeyStore(p)
    assert ks.authenticate(k1, "verify").name == "door"
    assert ks.authenticate(k2, "enrol").name == "desk"           # admin covers every scope
    for key, scope, code in ((None, "verify", "missing_key"), ("mk_nope", "verify", "wrong_key"), (k1, "enrol", "out_of_scope")):
        with pytest.raises(ServeError) as e:
            ks.authenticate(key, scope)
        assert e.value.code == code
    ks.authenticate(k1, "verify")
    with pytest.raises(ServeError) as e:
        ks.authenticate(k1, "verify")                             # third within a minute at 2/min
    assert e.value.status == 429 and int(e.value.headers["Retry-After"]) >= 1
    with pytest.raises(DataFormatError, match="not found"):
        KeyStore(tmp_path / "none.json")


def test_threshold_for_fmr_matches_brute_force():
    from maskinv.thresholds import threshold_for_fmr

    rng = np.random.default_rng(0)
    imp = rng.normal(0, 0.1, 50_000)
    tail = np.sort(imp)[::-1][:2000]
    for f in (1e-2, 1e-3, 1e-4, 2e-2):
        t = threshold_for_fmr(tail, len(imp), f)
        assert t is not None
        assert (imp >= t).mean() <= f                             # at most the target
        below = np.sort(imp)[::-1][int(np.floor(f * len(imp)))]
        assert (imp >= below).mean() > f                          # and the smallest such threshold
    assert threshold_for_fmr(tail, len(imp), 1e-5) is None       # 0.5 impostors: not resolvable
    assert threshold_for_fmr(tail, len(imp), 0.05) is None       # beyond the stored tail


def _entries(fp):
    from maskinv.thresholds import calibrate_from_scores

    rng = np.random.default_rng(1)
    out = {}
    for prot, mu in (("uu", 0.0), ("mu", -0.1)):
        s = np.r_[rng.normal(0.6, 0.1, 300), rng.normal(mu, 0.1, 20_000)]
        g = np.r_[np.ones(300, bool), np.zeros(20_000, bool)]
        out[prot] = calibrate_from_scores(s, g, fmr=1e-3, protocol=prot, fingerprint=fp, source={"bench": "synthetic"})
    return out


def test_calibrate_from_scores_and_check_entry():
    from maskinv.thresholds import check_entry

    e = _entries("f" * 64)["uu"]
    assert e["fmr_achieved"] <= 1e-3 and e["bench"]["num_impostor"] == 20_000
    assert len(e["impostor_tail"]) == 2000 and e["impostor_tail"][0] >= e["threshold"]
    rng = np.random.default_rng(2)
    c = check_entry(e, np.r_[rng.normal(0.6, 0.1, 300), rng.normal(0, 0.1, 20_000)],
                    np.r_[np.ones(300, bool), np.zeros(20_000, bool)], what="other")
    assert c["fmr"] < 0.005 and c["fmr_ci95"][0] <= c["fmr"] <= c["fmr_ci95"][1] and c["tar"] > 0.5


def test_policy_chooses_threshold_by_mask_condition(tmp_path):
    from maskinv.serve.policy import Policy
    from maskinv.thresholds import write_entry

    fp = "a" * 64
    ents = _entries(fp)
    f = tmp_path / "t.json"
    for e in ents.values():
        write_entry(f, fp, e)
    p = Policy(f, fp, fmr=1e-3, fpir=1e-2)
    uu, mu = ents["uu"]["threshold"], ents["mu"]["threshold"]
    assert uu > mu
    assert p.verify("unmasked").protocol == "uu" and p.verify("unmasked").threshold == uu
    assert p.verify("masked").protocol == "mu" and p.verify("masked").threshold == mu
    for probe, ref in (("unsure", "unmasked"), ("masked", "masked"), ("unmasked", "unsure")):
        c = p.verify(probe, ref)
        assert c.protocol == "strict" and c.threshold == max(uu, mu)
    c1, info = p.identify("unmasked", 1)
    c10, info10 = p.identify("unmasked", 10)
    assert info10["fmr_per_comparison"] == pytest.approx(1 - 0.99 ** 0.1)
    assert c10.threshold > c1.threshold                            # a larger gallery needs a stricter threshold
    with pytest.raises(ServeError) as e:
        p.identify("masked", 10_000_000)
    assert e.value.code == "fpir_unresolved"
    with pytest.raises(ConfigError, match="no calibrated threshold"):
        Policy(f, fp, fmr=1e-2, fpir=1e-2)


def test_mask_classifier_file_checks(tmp_path):
    from maskinv.masks.detect import DEFAULT_WEIGHTS, MaskClassifier, build_net, load_mask_classifier

    if DEFAULT_WEIGHTS.is_file():
        clf = load_mask_classifier()
        assert 0 < clf.unmasked_below <= clf.masked_at < 1
        p = clf.predict_proba(np.zeros((2, 112, 112, 3), np.uint8))
        assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))
    c = MaskClassifier(build_net(), 0.6, 0.3)
    assert [c.decide(v) for v in (0.7, 0.6, 0.5, 0.29)] == ["masked", "masked", "unsure", "unmasked"]
    path = c.save(tmp_path / "m.pt", {"note": "test"})
    assert load_mask_classifier(path).meta["note"] == "test"
    bad = tmp_path / "b.pt"
    bad.write_bytes(path.read_bytes()[:-10] + bytes(10))
    (tmp_path / "b.json").write_text((tmp_path / "m.json").read_text())
    with pytest.raises(CheckpointError, match="sha256"):
        load_mask_classifier(bad)
    with pytest.raises(CheckpointError, match="sidecar"):
        (tmp_path / "c.pt").write_bytes(b"x")
        load_mask_classifier(tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="cut-offs"):
        MaskClassifier(build_net(), 0.3, 0.6)


def test_metrics_render_prometheus_text():
    from maskinv.serve.metrics import Metrics

    m = Metrics()
    m.request("/v1/verify", "POST", 200, 0.03)
    m.request("/v1/verify", "POST", 422, 0.2)
    m.decision("verify", "accept", "mu")
    m.error("/v1/verify", "no_face")
    t = m.render({"maskinv_uptime_seconds": 1.5})
    assert 'maskinv_requests_total{endpoint="/v1/verify",method="POST",status="200"} 1' in t
    assert 'maskinv_request_seconds_bucket{endpoint="/v1/verify",le="0.05"} 1' in t
    assert 'maskinv_request_seconds_bucket{endpoint="/v1/verify",le="+Inf"} 2' in t
    assert 'maskinv_decisions_total{condition="mu",decision="accept",endpoint="verify"} 1' in t
    assert 'maskinv_errors_total{code="no_face",endpoint="/v1/verify"} 1' in t
    assert "maskinv_uptime_seconds 1.5" in t


def test_micro_batcher_matches_one_by_one_and_batches_concurrent_calls(one_thread):
    import threading

    from maskinv import load_model
    from maskinv.models import get_model
    from maskinv.serve.batching import MicroBatcher

    m = load_model(get_model("r18", width_mult=0.125, input_size=32, embedding_size=16, seed=0))
    crops = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    ref = m.embed_aligned(crops, flip=True, batch_size=2)
    b = MicroBatcher(m, max_batch=8, max_wait_ms=50)
    out = [None] * len(crops)

    def call(i):
        out[i] = b.embed(crops[i])

    ts = [threading.Thread(target=call, args=(i,)) for i in range(len(crops))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    b.close()
    np.testing.assert_allclose(np.stack(out), ref, atol=1e-5)
    assert b.items == 12 and b.batches < 12                  # concurrent calls shared forward passes
    b2 = MicroBatcher(m, max_batch=4, max_wait_ms=1)
    with pytest.raises(Exception):
        b2.embed(np.zeros((32, 32), np.uint8))              # a bad crop: the error reaches its caller
    np.testing.assert_allclose(b2.embed(crops[0]), ref[0], atol=1e-5)   # and the batcher lives on
    b2.close()


def test_serve_key_command(tmp_path, capsys):
    from maskinv.cli import main
    from maskinv.serve.keys import KeyStore

    assert main(["serve-key", str(tmp_path / "k.json"), "door", "--scopes", "verify,enrol", "--rate", "30"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("mk_") and key not in (tmp_path / "k.json").read_text()
    ak = KeyStore(tmp_path / "k.json").authenticate(key, "enrol")
    assert ak.name == "door" and ak.scopes == ("verify", "enrol") and ak.rate_per_minute == 30
    assert main(["serve-key", str(tmp_path / "k.json"), "door"]) == 2          # a second key of that name
    assert "exists" in capsys.readouterr().err


def test_serve_detector_option_defaults_to_mtcnn_then_yunet_and_refuses_unknown(capsys):
    """``--detector`` takes its choices from the DETECTORS registry; the default is MTCNN with YuNet
    where MTCNN finds nothing (docs/serve.md "Which detector")."""
    import argparse

    from maskinv.align.backends import DETECTORS
    from maskinv.cli import main
    from maskinv.cli import serve as serve_cli
    from maskinv.serve import DEFAULT_SERVE_DETECTOR
    from maskinv.serve.service import ServeConfig

    assert DEFAULT_SERVE_DETECTOR == "mtcnn+yunet" and DEFAULT_SERVE_DETECTOR in DETECTORS.names()
    assert ServeConfig(gallery="g.db", model="sface", keys="k.json").detector == DEFAULT_SERVE_DETECTOR
    ap = argparse.ArgumentParser()
    serve_cli.register(ap.add_subparsers(dest="cmd"))
    act = next(a for a in ap._subparsers._group_actions[0].choices["serve"]._actions if a.dest == "detector")
    assert act.default == DEFAULT_SERVE_DETECTOR and list(act.choices) == DETECTORS.names()
    assert main(["serve", "--gallery", "g.db", "--model", "sface", "--keys", __file__, "--detector", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--detector" in err and "nope" in err
