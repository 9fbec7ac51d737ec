"""`maskinv serve` through a real HTTP client against a real server on a free loopback port:
every endpoint, every bad input (a 4xx JSON error naming the problem, nothing stored, the
server still up), keys and scopes, limits, mask-aware thresholds."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.serve import Server, faces, jpeg, request, skip_reason

_why = skip_reason()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")


@pytest.fixture(scope="module")
def photos():
    f = faces()
    return {k: jpeg(v) for k, v in f.items()}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from maskinv.serve.keys import add_key

    tmp = tmp_path_factory.mktemp("serve")
    keys = tmp / "keys.json"
    k = {"admin": add_key(keys, "desk", ["admin"], 100000), "verify": add_key(keys, "door", ["verify"], 100000),
         "enrol": add_key(keys, "hr", ["enrol"], 100000), "slow": add_key(keys, "slow", ["verify"], 2)}
    s = Server(tmp, "--max-request-mb", "4", "--max-images", "3").start()
    s.k = k
    yield s
    if s.alive():  # the last test stops it with SIGTERM itself
        assert s.stop() == 0


def names(srv) -> list[str]:
    st, body = request(srv.url + "/v1/identities", key=srv.k["admin"])
    assert st == 200
    return [i["identity"] for i in body["identities"]]


def assert_error(st, body, status, code, *words):
    assert st == status, (st, body)
    assert isinstance(body, dict) and body["error"]["code"] == code, body
    for w in words:
        assert w in body["error"]["message"], (w, body)


def enrol(srv, name, *imgs, key="enrol", ctype="image/jpeg"):
    return request(srv.url + "/v1/identities", "POST", key=srv.k[key], fields={"name": name},
                   files=[("images", f"p{i}.jpg", d, ctype) for i, d in enumerate(imgs)])


def test_health_openapi_and_page(srv):
    st, h = request(srv.url + "/health")
    assert st == 200 and h["status"] == "ok"
    assert h["detector"] == "mtcnn+yunet"                # the service default: MTCNN, YuNet where it finds nothing
    assert h["thresholds"]["uu"]["threshold"] != h["thresholds"]["mu"]["threshold"]
    st, doc = request(srv.url + "/openapi.json")
    assert st == 200
    for p in ("/v1/verify", "/v1/identify", "/v1/identities", "/v1/identities/{identity}"):
        assert p in doc["paths"], p
    st, page = request(srv.url + "/")
    assert st == 200 and "<script src=\"/static/app.js\">" in page
    st, js = request(srv.url + "/static/app.js")
    assert st == 200 and "/v1/verify" in js


def _mirrored(data: bytes) -> bytes:
    import cv2

    return cv2.imencode(".png", cv2.imdecode(np.frombuffer(data, np.uint8), 1)[:, ::-1])[1].tobytes()


def test_enrol_verify_identify_remove(srv, photos):
    # two photos -> one mean template
    st, body = request(srv.url + "/v1/identities", "POST", key=srv.k["enrol"], fields={"name": "astronaut"},
                       files=[("images", "a.jpg", photos["astronaut"], "image/jpeg"),
                              ("images", "b.png", _mirrored(photos["astronaut"]), "image/png")])
    assert st == 201, body
    assert body["photos"] == 2 and all(f["condition"] == "unmasked" for f in body["faces"])
    assert "astronaut" in names(srv)
    st, one = request(srv.url + "/v1/identities/astronaut", key=srv.k["enrol"])
    assert st == 200 and one["templates"] == 1

    # unmasked probe, verify-scope key: U-U threshold, no raw score
    st, v = request(srv.url + "/v1/verify", "POST", key=srv.k["verify"], fields={"identity": "astronaut"},
                    files=[("image", "probe.jpg", photos["astronaut"], "image/jpeg")])
    assert st == 200, v
    assert v["decision"] == "accept" and v["verified"] is True
    assert v["probe"]["condition"] == "unmasked" and v["threshold"]["protocol"] == "uu"
    assert "score" not in v and "crop" not in v["probe"]
    assert set(v["timings_ms"]) >= {"decode", "total"}
    assert not list(srv.tmp.rglob("*.jpg")) and not list(srv.tmp.rglob("*.png"))   # no photo stored by default

    # masked probe, admin key: the M-U threshold applies and says why; score and crop come back
    st, m = request(srv.url + "/v1/verify", "POST", key=srv.k["admin"],
                    fields={"identity": "astronaut", "return_crop": "true"},
                    files=[("image", "masked.jpg", photos["masked"], "image/jpeg")])
    assert st == 200, m
    assert m["probe"]["condition"] == "masked", m["probe"]
    assert m["threshold"]["protocol"] == "mu" and "M-U" in m["threshold"]["why"]
    assert m["decision"] == ("accept" if m["score"] >= m["threshold"]["value"] else "reject")
    assert m["probe"]["crop"].startswith("data:image/jpeg;base64,")

    # two photos of different people
    st, r = request(srv.url + "/v1/verify", "POST", key=srv.k["admin"],
                    files=[("image", "a.jpg", photos["astronaut"], "image/jpeg"),
                           ("reference", "b.jpg", photos["camera"], "image/jpeg")])
    assert st == 200 and r["decision"] == "reject" and r["score"] < r["threshold"]["value"], r

    # identify: FPIR over the gallery size, shown in the answer
    st, i = request(srv.url + "/v1/identify", "POST", key=srv.k["verify"], fields={"k": "3"},
                    files=[("image", "p.jpg", photos["astronaut"], "image/jpeg")])
    assert st == 200 and i["identity"] == "astronaut" and i["candidates"][0]["decision"] == "match", i
    assert i["threshold"]["gallery_size"] == 1 and i["threshold"]["fpir"] == pytest.approx(0.01)
    st, i2 = request(srv.url + "/v1/identify", "POST", key=srv.k["admin"],
                     files=[("image", "c.jpg", photos["camera"], "image/jpeg")])
    assert st == 200 and i2["decision"] == "no_match" and i2["identity"] is None, i2

    # duplicates are refused before enrolling (the mirrored astronaut is the same person)
    st, d = enrol(srv, "someone else", _mirrored(photos["astronaut"]))
    assert_error(st, d, 409, "duplicate", "astronaut")
    st, d = enrol(srv, "astronaut", photos["camera"])
    assert_error(st, d, 409, "identity_exists", "astronaut")
    assert names(srv) == ["astronaut"]

    st, body = request(srv.url + "/v1/identities/astronaut", "DELETE", key=srv.k["enrol"])
    assert st == 200 and body["removed_templates"] == 1
    st, body = request(srv.url + "/v1/verify", "POST", key=srv.k["verify"], fields={"identity": "astronaut"},
                       files=[("image", "p.jpg", photos["astronaut"], "image/jpeg")])
    assert_error(st, body, 404, "unknown_identity", "astronaut")
    st, body = request(srv.url + "/v1/identities/astronaut", "DELETE", key=srv.k["enrol"])
    assert_error(st, body, 404, "unknown_identity")


def _big_jpeg() -> bytes:
    import cv2

    img = np.zeros((6250, 8000), np.uint8)           # 50 megapixels, a few hundred kB as JPEG
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes()


def test_bad_inputs_4xx_nothing_stored_server_up(srv, photos):
    ok = photos["astronaut"]
    bad_images = [
        ("not an image", b"hello, this is text" * 10, "image/jpeg", 415, "not_an_image", "images[0]"),
        ("truncated JPEG", ok[: len(ok) // 2], "image/jpeg", 400, "truncated_image", "truncated"),
        ("zero bytes", b"", "image/jpeg", 400, "empty_image", "zero bytes"),
        ("50 megapixels", _big_jpeg(), "image/jpeg", 413, "too_many_pixels", "50.0 megapixels"),
        ("wrong content type", ok, "text/plain", 415, "wrong_content_type", "text/plain"),
        ("no face", photos["noface"], "image/jpeg", 422, "no_face", "no face"),
        ("two faces", photos["two"], "image/jpeg", 422, "several_faces", "2 faces"),
        ("masked enrolment", photos["masked"], "image/jpeg", 422, "masked_enrolment", "masked"),
    ]
    for what, data, ctype, status, code, word in bad_images:
        st, body = enrol(srv, "newcomer", ok, data, ctype=ctype) if what != "masked enrolment" else enrol(srv, "newcomer", data)
        word = word if what in ("not an image",) else word
        assert_error(st, body, status, code, word if what != "not an image" else "images[1]")
        assert names(srv) == [], f"{what}: something was stored"
        # the same input as a verify probe
        st, body = request(srv.url + "/v1/verify", "POST", key=srv.k["verify"],
                           files=[("image", "p", data, ctype), ("reference", "r.jpg", ok, "image/jpeg")])
        if what == "masked enrolment":
            assert st == 200
        else:
            assert_error(st, body, status, code)
            assert "image" in body["error"]["message"]
    # whole-request problems
    st, body = request(srv.url + "/v1/verify", "POST", key=srv.k["verify"], body=b'{"image": 1}', ctype="application/json")
    assert_error(st, body, 415, "wrong_content_type", "multipart/form-data")
    st, body = request(srv.url + "/v1/verify", "POST", key=srv.k["verify"], fields={"identity": "x"})
    assert_error(st, body, 400, "missing_field", "image")
    st, body = request(srv.url + "/v1/verify", "POST", key=srv.k["verify"], files=[("image", "p.jpg", ok, "image/jpeg")])
    assert_error(st, body, 400, "missing_field", "reference")
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    c.putrequest("POST", "/v1/identities")
    for h, v in (("X-API-Key", srv.k["enrol"]), ("Content-Type", "multipart/form-data; boundary=zz"),
                 ("Content-Length", str(5 << 20))):
        c.putheader(h, v)
    c.endheaders(b"--zz\r\n")  # the server answers from the header, without reading 5 MB
    r = c.getresponse()
    assert_error(r.status, json.loads(r.read()), 413, "request_too_large", "limit")
    c.close()
    st, body = enrol(srv, "many", ok, ok, ok, ok)
    assert_error(st, body, 413, "too_many_images", "3")
    st, body = request(srv.url + "/v1/identify", "POST", key=srv.k["verify"], fields={"k": "0"},
                       files=[("image", "p.jpg", ok, "image/jpeg")])
    assert_error(st, body, 400, "bad_field", "k")
    st, body = request(srv.url + "/v1/nothing")
    assert_error(st, body, 404, "not_found")
    assert names(srv) == []
    st, h = request(srv.url + "/health")
    assert st == 200 and srv.alive()


def test_keys_scopes_and_rate(srv, photos):
    ok = photos["astronaut"]
    st, body = request(srv.url + "/v1/verify", "POST", files=[("image", "p.jpg", ok, "image/jpeg")])
    assert_error(st, body, 401, "missing_key", "X-API-Key")
    st, body = request(srv.url + "/v1/verify", "POST", key="mk_wrong", files=[("image", "p.jpg", ok, "image/jpeg")])
    assert_error(st, body, 401, "wrong_key")
    st, body = enrol(srv, "x", ok, key="verify")
    assert_error(st, body, 403, "out_of_scope", "enrol")
    st, body = request(srv.url + "/v1/identities", key=srv.k["verify"])
    assert_error(st, body, 403, "out_of_scope")
    st, body = request(srv.url + "/v1/verify", "POST", key=srv.k["enrol"], fields={"identity": "x"},
                       files=[("image", "p.jpg", ok, "image/jpeg")])
    assert_error(st, body, 403, "out_of_scope", "verify")
    assert names(srv) == []
    seen = [request(srv.url + "/v1/verify", "POST", key=srv.k["slow"], fields={"identity": "nobody"},
                    files=[("image", "p.jpg", ok, "image/jpeg")])[0] for _ in range(3)]
    assert seen[:2] == [404, 404] and seen[2] == 429, seen


def test_metrics_and_audit(srv):
    st, text = request(srv.url + "/metrics")
    assert st == 200
    assert 'maskinv_requests_total{endpoint="/v1/verify",method="POST",status="200"}' in text
    assert 'maskinv_errors_total{code="no_face",endpoint="/v1/verify"}' in text
    assert "maskinv_decisions_total{" in text and "maskinv_request_seconds_bucket{" in text
    lines = [json.loads(x) for x in (srv.gallery.with_suffix(".audit.jsonl")).read_text().splitlines()]
    ev = {x["event"] for x in lines}
    assert {"verify", "identify", "enrol", "remove"} <= ev
    raw = srv.gallery.with_suffix(".audit.jsonl").read_text()
    assert "base64" not in raw and "crop" not in raw


def test_gallery_file_is_durable_sqlite(srv):
    import sqlite3

    c = sqlite3.connect(str(srv.gallery))
    try:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        c.close()


def test_sigterm_finishes_the_request_in_flight(srv, photos):
    """Graceful shutdown (last test of the module: it stops the server): a verify request whose
    body is still arriving when SIGTERM comes is answered (200), then the server exits 0."""
    import http.client
    import signal
    import time

    from helpers.serve import multipart

    body, ctype = multipart(None, [("image", "a.jpg", photos["astronaut"], "image/jpeg"),
                                   ("reference", "b.jpg", photos["camera"], "image/jpeg")])
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    c.putrequest("POST", "/v1/verify")
    for h, v in (("X-API-Key", srv.k["verify"]), ("Content-Type", ctype), ("Content-Length", str(len(body)))):
        c.putheader(h, v)
    c.endheaders(body[:1000])
    time.sleep(0.5)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    c.send(body[1000:])
    r = c.getresponse()
    answer = json.loads(r.read())
    assert r.status == 200 and answer["decision"] == "reject", answer
    assert srv.proc.wait(timeout=60) == 0
