"""Load test of ``maskinv serve`` against the same pipeline without the service.

    python -m benchmarks.bench_serve [--clients 8 --seconds 60 --model sface --detector mtcnn+yunet]

Loopback only, bounded. Requests are verify-against-enrolled: RMFD test people (real masked and
unmasked photos, ``benchmarks/splits/rmfd_test.txt``) enrolled through the API from one unmasked
photo each, probed with their other photos (only photos in which the pipeline finds a face, so
every request has an answer). Both arms run ``--clients`` threads with one torch thread each and the
same face detector (``--detector``, default the service's ``mtcnn+yunet``; round 1 ran MTCNN):

* **service**: ``--clients`` HTTP clients (stdlib ``http.client``, keep-alive) against a
  ``maskinv serve`` process with ``--workers`` = clients and a key whose rate limit is far above the load;
* **baseline**: ``--clients`` threads calling the same pipeline in-process, with the model from
  ``maskinv.api.load_model``: decode (:func:`maskinv.align.read_image`), detect, align, classify
  the mask, embed (:class:`maskinv.serve.pipeline.Pipeline`) and compare (:func:`maskinv.api.compare`)
  with the enrolled template.

The arms alternate in two halves of ``--seconds / 2`` each (a shared machine's load drifts), after a
15 s warm-up of the service. Reported: throughput, p50/p95/p99 latency, errors, the client
process's CPU use during the service arm, the server's RSS at the end of the warm-up and at the end.
Goal (issue 24): the service costs at most 15 % of throughput; zero errors; RSS growth < 5 %.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def _rss_kb(pid: int) -> int:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1])
    return -1


def _multipart(fields: dict, files: list) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    out = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    for field, data in files:
        out.append(f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="p.jpg"\r\n'
                   "Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{b}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={b}"


def _pct(x, q):
    return float(np.percentile(np.asarray(x) * 1e3, q)) if len(x) else float("nan")


def _summary(lat, errors, seconds):
    return {"requests": len(lat), "errors": errors, "throughput_rps": len(lat) / seconds,
            "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99)}


def _run_threads(n: int, seconds: float, work) -> tuple[list[float], int, list[str]]:
    lat, errs, msgs, lock = [], [0], [], threading.Lock()
    stop = time.perf_counter() + seconds

    def loop(i):
        j = i
        state = {}
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                work(j, state)
                with lock:
                    lat.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errs[0] += 1
                    if len(msgs) < 5:
                        msgs.append(f"{type(exc).__name__}: {exc}"[:300])
            j += n

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat, errs[0], msgs


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--model", default="sface", help="sface (default) or dlib; the server gets the same")
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--detector", default=None,
                    help="face detector of both arms (default: the service's, maskinv.serve.DEFAULT_SERVE_DETECTOR)")
    ap.add_argument("--micro-batch", type=int, default=0, help="the server's --micro-batch (0: off)")
    ap.add_argument("--thresholds", default=None, help="default: benchmarks/results/serve/MODEL_rmfd.thresholds.json")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/serve/bench_serve_MODEL.json")
    a = ap.parse_args(argv)
    from maskinv.serve import DEFAULT_SERVE_DETECTOR

    a.detector = a.detector or DEFAULT_SERVE_DETECTOR
    det_tag = "" if a.detector == "mtcnn" else "_" + a.detector.replace("+", "_")  # round 1 files: MTCNN, no tag
    a.out = a.out or str(HERE / "results" / "serve" /
                         f"bench_serve_{a.model}{det_tag}{'_mb' + str(a.micro_batch) if a.micro_batch > 1 else ''}.json")
    a.thresholds = a.thresholds or str(HERE / "results" / "serve" / f"{a.model}_rmfd.thresholds.json")
    os.environ["OMP_NUM_THREADS"] = "1"
    import tempfile

    import torch

    from helpers.serve import Server, free_port
    from maskinv.align import read_image
    from maskinv.api import compare, load_model
    from maskinv.masks.detect import load_mask_classifier
    from maskinv.serve.keys import add_key
    from maskinv.serve.pipeline import Pipeline
    from maskinv.utils.machine import machine_line

    from benchmarks.serve_rmfd import people, shared_data

    torch.set_num_threads(1)
    load0 = os.getloadavg()
    model = load_model(a.model)
    pipe = Pipeline(model, a.detector, load_mask_classifier())  # the same detector as the server's
    root = shared_data() / "rmfd"
    masked = {ln.strip() for ln in (root / "masked.txt").read_text().splitlines() if ln.strip()}
    enrol, probes = {}, []
    for person in people("rmfd_test.txt"):
        fs = sorted((root / "images" / person).iterdir())
        ok = []
        for f in fs:
            data = f.read_bytes()
            if not data.startswith(b"\xff\xd8"):
                continue
            try:
                an = pipe.analyse(read_image(data), name=f.name)
            except Exception:  # noqa: BLE001 - no face: not used as a probe
                continue
            if an.n_faces == 1:
                ok.append((f"{person}/{f.name}", data, an))
        ref = next((x for x in ok if x[0] not in masked and pipe.mask_classifier.decide(x[2].p_masked) == "unmasked"), None)
        rest = [x for x in ok if x is not ref]
        if ref is None or not rest:
            continue
        enrol[person] = ref
        probes += [(person, rel, data) for rel, data, _ in rest]
        if len(enrol) >= a.people:
            break
    print(f"{len(enrol)} people to enrol, {len(probes)} probe photos "
          f"({sum(1 for p in probes if p[1] in masked)} masked)", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    keys = tmp / "keys.json"
    hr = add_key(keys, "hr", ["enrol"], 1e6)
    door = add_key(keys, "door", ["verify"], 1e9)  # rate limit far above the test load
    # (--model / --thresholds given last override the helper's choice)
    srv = Server(tmp, "--workers", str(a.clients), "--torch-threads", "1", "--max-inflight", str(4 * a.clients),
                 "--model", a.model, "--thresholds", a.thresholds, "--micro-batch", str(a.micro_batch),
                 "--detector", a.detector,
                 port=free_port()).start()
    enrolled = {}
    try:
        for person, (rel, data, an) in enrol.items():
            body, ctype = _multipart({"name": person}, [("images", data)])
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            c.request("POST", "/v1/identities", body, {"X-API-Key": hr, "Content-Type": ctype})
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 201:
                enrolled[person] = an.embedding
        probes = [p for p in probes if p[0] in enrolled]
        print(f"enrolled {len(enrolled)} (others refused as duplicates at the U-U threshold); {len(probes)} probes", flush=True)
        bodies = [_multipart({"identity": p[0]}, [("image", p[2])]) for p in probes]

        def serve_work(j, state):
            c = state.get("c")
            if c is None:
                c = state["c"] = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            body, ctype = bodies[j % len(bodies)]
            try:
                c.request("POST", "/v1/verify", body, {"X-API-Key": door, "Content-Type": ctype})
                r = c.getresponse()
                raw = r.read()
            except (ConnectionError, http.client.HTTPException):
                state.pop("c").close()
                raise
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {raw[:200]!r}")
            json.loads(raw)["decision"]

        def base_work(j, state):
            person, rel, data = probes[j % len(probes)]
            img = read_image(data)
            an = pipe.analyse(img, name=rel)
            pipe.mask_classifier.decide(an.p_masked)
            float(compare(an.embedding, enrolled[person]))

        print(f"warm-up {a.warmup:.0f} s", flush=True)
        _run_threads(a.clients, a.warmup, serve_work)
        rss0 = _rss_kb(srv.proc.pid)
        half = a.seconds / 2
        res = {"service": ([], 0, []), "baseline": ([], 0, [])}
        cpu = 0.0
        for rnd in range(2):
            for arm in (("baseline", "service") if rnd == 0 else ("service", "baseline")):
                print(f"round {rnd + 1}: {arm} {half:.0f} s", flush=True)
                if arm == "service":
                    r0 = resource.getrusage(resource.RUSAGE_SELF)
                    out = _run_threads(a.clients, half, serve_work)
                    r1 = resource.getrusage(resource.RUSAGE_SELF)
                    cpu += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                else:
                    out = _run_threads(a.clients, half, base_work)
                lat, err, msg = res[arm]
                res[arm] = (lat + out[0], err + out[1], msg + out[2])
        rss1 = _rss_kb(srv.proc.pid)
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        c.request("GET", "/metrics")
        metrics = c.getresponse().read().decode()
        c.close()
    finally:
        code = srv.stop()
    s, b = _summary(res["service"][0], res["service"][1], a.seconds), _summary(res["baseline"][0], res["baseline"][1], a.seconds)
    st = {"service": s, "baseline": b,
          "service_over_baseline_throughput": s["throughput_rps"] / b["throughput_rps"] if b["throughput_rps"] else None,
          "error_messages": {"service": res["service"][2], "baseline": res["baseline"][2]},
          "client_cpu_seconds_during_service_arm": round(cpu, 2),
          "client_cpu_share_of_wall": round(cpu / a.seconds, 3),
          "server_rss_mb_after_warmup": round(rss0 / 1024, 1), "server_rss_mb_end": round(rss1 / 1024, 1),
          "server_rss_growth": (rss1 - rss0) / rss0 if rss0 > 0 else None,
          "server_exit_code_on_sigterm": code,
          "verify_decisions_in_metrics": [ln for ln in metrics.splitlines() if ln.startswith("maskinv_decisions_total")],
          "micro_batching_in_metrics": [ln for ln in metrics.splitlines() if ln.startswith("maskinv_embed_b")],
          "settings": {"clients": a.clients, "seconds_per_arm": a.seconds, "halves": 2, "warmup_s": a.warmup,
                       "model": a.model, "fingerprint": model.fingerprint[:21], "torch_threads": 1,
                       "detector": a.detector, "mask_classifier_sha256": pipe.mask_classifier.meta.get("sha256"),
                       "machine": machine_line(), "load_average_at_start": load0, "load_average_at_end": os.getloadavg(),
                       "server_workers": a.clients, "micro_batch": a.micro_batch, "enrolled": len(enrolled), "probes": len(probes),
                       "cpu": _cpu_name(), "cores": os.cpu_count()},
          "command": "python -m benchmarks.bench_serve " + " ".join(argv or sys.argv[1:])}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(st, indent=2) + "\n")
    print(json.dumps(st, indent=2))
    return st


def _cpu_name() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main(sys.argv[1:])
