"""The verification service's core, independent of the web framework: model, mask classifier,
thresholds, gallery, keys, limits, audit log. :mod:`maskinv.serve.app` puts HTTP around it.

Threads: inference runs in a pool of ``workers`` threads (never on the event loop); every
gallery access runs in one dedicated thread that owns the SQLite connection (WAL journal,
``synchronous=FULL``, ``secure_delete``), so an enrolment is acknowledged only after its
transaction is on disk, and all its photos land in one transaction or none do.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, NoFaceError
from . import DEFAULT_SERVE_DETECTOR
from .errors import ServeError
from .images import decode_upload

__all__ = ["ServeConfig", "Service"]

_log = logging.getLogger("maskinv.serve")


@dataclass
class ServeConfig:
    gallery: Path
    model: str
    keys: Path
    thresholds: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    fmr: float = 1e-3
    fpir: float = 1e-2
    workers: int = 2
    torch_threads: int = 1
    max_request_bytes: int = 10 << 20
    max_pixels: int = 16_000_000
    max_images: int = 5
    max_inflight: int = 64
    micro_batch: int = 0          # > 1: templates of concurrent requests computed together (not for dlib)
    batch_wait_ms: float = 2.0
    keep_crops: Path | None = None
    audit_log: Path | None = None
    cors_origins: tuple[str, ...] = ()
    detector: str = DEFAULT_SERVE_DETECTOR
    mask_classifier: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _crop_data_url(crop: np.ndarray) -> str:
    from ..utils.images import encode_image

    return "data:image/jpeg;base64," + base64.b64encode(encode_image(crop, "jpg", 90)).decode("ascii")


class Service:
    def __init__(self, cfg: ServeConfig):
        import torch

        from ..api import load_model
        from ..masks.detect import load_mask_classifier
        from .keys import KeyStore
        from .metrics import Metrics
        from .pipeline import Pipeline
        from .policy import Policy

        self.cfg = cfg
        torch.set_num_threads(max(1, int(cfg.torch_threads)))
        self.keys = KeyStore(cfg.keys)
        self.model = load_model(cfg.model)
        thr = cfg.thresholds or getattr(self.model, "thresholds_file", None)
        if thr is None:
            raise ConfigError(f"model {cfg.model!r} has no thresholds file of its own; pass --thresholds PATH "
                              "(a file with U-U and M-U entries, e.g. from `python -m benchmarks.serve_rmfd calibrate`)")
        self.policy = Policy(thr, self.model.fingerprint, fmr=cfg.fmr, fpir=cfg.fpir)
        self.classifier = load_mask_classifier(cfg.mask_classifier)
        self.batcher = None
        if cfg.micro_batch > 1 and not self.model.needs_photo:
            from .batching import MicroBatcher

            self.batcher = MicroBatcher(self.model, max_batch=cfg.micro_batch, max_wait_ms=cfg.batch_wait_ms)
        self.pipeline = Pipeline(self.model, cfg.detector, self.classifier, self.batcher)
        self.metrics = Metrics()
        self.pool = ThreadPoolExecutor(max_workers=max(1, int(cfg.workers)), thread_name_prefix="maskinv-infer")
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskinv-gallery")
        self._gallery = self._db.submit(self._open_gallery).result()
        self._inflight = threading.BoundedSemaphore(max(1, int(cfg.max_inflight)))
        self.audit_path = cfg.audit_log or Path(cfg.gallery).with_suffix(".audit.jsonl")
        self._audit_lock = threading.Lock()
        Path(self.audit_path).parent.mkdir(parents=True, exist_ok=True)
        self._audit = open(self.audit_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.started = time.time()

    # ------------------------------------------------------------------ gallery thread
    def _open_gallery(self):
        from ..gallery import Gallery, set_durable

        g = Gallery(self.cfg.gallery, fingerprint=self.model.fingerprint, embedding_size=self.model.embedding_size)
        self.pragmas = set_durable(g)
        return g

    def db(self, fn):
        """Run ``fn(gallery)`` in the gallery thread and return its result."""
        return self._db.submit(fn, self._gallery).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.batcher is not None:
            self.batcher.close()
        self._db.submit(lambda: self._gallery.close()).result()
        self._db.shutdown(wait=True)
        with self._audit_lock:
            self._audit.close()

    # ------------------------------------------------------------------ helpers
    def admit(self):
        """Bound the requests waiting for inference (503 beyond ``max_inflight``)."""
        if not self._inflight.acquire(blocking=False):
            raise ServeError(503, "overloaded", f"more than {self.cfg.max_inflight} requests in flight; retry later",
                             {"Retry-After": "1"})
        return self._inflight

    def audit(self, record: dict) -> None:
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}, sort_keys=True)
        with self._audit_lock:
            self._audit.write(line + "\n")
            self._audit.flush()

    def decode(self, data: bytes, field: str, content_type: str | None) -> np.ndarray:
        return decode_upload(data, field, max_pixels=self.cfg.max_pixels, content_type=content_type)

    def analyse(self, img: np.ndarray, field: str):
        try:
            a = self.pipeline.analyse(img, name=field)
        except NoFaceError:
            raise ServeError(422, "no_face", f"{field}: no face detected") from None
        if a.n_faces > 1:
            raise ServeError(422, "several_faces", f"{field}: {a.n_faces} faces found; send a photo of one person")
        return a

    def condition(self, a) -> str:
        return self.classifier.decide(a.p_masked)

    def _face_info(self, a, *, crop: bool) -> dict:
        d = {"condition": self.condition(a), "p_masked": round(float(a.p_masked), 4), "face": a.face.to_dict(),
             "timings_ms": {k: round(v, 2) for k, v in a.timings.items()}}
        if crop:
            d["crop"] = _crop_data_url(a.crop)
        return d

    # ------------------------------------------------------------------ operations (run in the pool)
    def verify(self, key, probe: tuple, reference: tuple | None, identity: str | None, want_crop: bool) -> dict:
        t0 = time.perf_counter()
        img = self.decode(*probe)
        ref_img = self.decode(*reference) if reference is not None else None
        t_dec = time.perf_counter()
        a = self.analyse(img, probe[1])
        if ref_img is not None:
            b = self.analyse(ref_img, reference[1])
            ref_emb, ref_cond = b.embedding, self.condition(b)
        else:
            tmpl = self.db(lambda g: g.template_of(identity))
            if tmpl is None:
                raise ServeError(404, "unknown_identity", f"identity: no enrolled identity named {identity!r}")
            ref_emb, ref_cond, b = tmpl, "unmasked", None
        score = float(np.dot(a.embedding.astype(np.float64), np.asarray(ref_emb, np.float64)))
        chosen = self.policy.verify(self.condition(a), ref_cond)
        accept = score >= chosen.threshold
        out = {"decision": "accept" if accept else "reject", "verified": bool(accept),
               "identity": identity, "probe": self._face_info(a, crop=want_crop), "threshold": chosen.to_dict()}
        if b is not None:
            out["reference"] = self._face_info(b, crop=want_crop)
        if "admin" in key.scopes:
            out["score"] = round(score, 6)
        out["timings_ms"] = {"decode": round((t_dec - t0) * 1e3, 2), "total": round((time.perf_counter() - t0) * 1e3, 2)}
        self.metrics.decision("verify", out["decision"], chosen.protocol)
        self.audit({"event": "verify", "key": key.name, "identity": identity, "decision": out["decision"],
                    "score": round(score, 6), "threshold": round(chosen.threshold, 6), "protocol": chosen.protocol,
                    "probe_condition": out["probe"]["condition"], "p_masked": out["probe"]["p_masked"]})
        return out

    def identify(self, key, probe: tuple, k: int, want_crop: bool) -> dict:
        t0 = time.perf_counter()
        img = self.decode(*probe)
        a = self.analyse(img, probe[1])
        fp = self.model.fingerprint

        def search(g):
            n = len(g.identities())
            return n, (g.search(a.embedding[None], k=k, fingerprint=fp)[0] if n else [])

        n, hits = self.db(search)
        if n == 0:
            raise ServeError(409, "empty_gallery", "the gallery has no enrolled identity to search")
        chosen, info = self.policy.identify(self.condition(a), n)
        cands = []
        for h in hits:
            c = {"identity": h.name, "decision": "match" if h.score >= chosen.threshold else "no_match"}
            if "admin" in key.scopes:
                c["score"] = round(h.score, 6)
            cands.append(c)
        best = cands[0]["identity"] if cands and cands[0]["decision"] == "match" else None
        out = {"decision": "match" if best else "no_match", "identity": best, "candidates": cands,
               "probe": self._face_info(a, crop=want_crop), "threshold": {**chosen.to_dict(), **info},
               "timings_ms": {"total": round((time.perf_counter() - t0) * 1e3, 2)}}
        self.metrics.decision("identify", out["decision"], chosen.protocol)
        self.audit({"event": "identify", "key": key.name, "identity": best, "decision": out["decision"],
                    "top_score": round(hits[0].score, 6) if hits else None, "threshold": round(chosen.threshold, 6),
                    "protocol": chosen.protocol, "gallery_size": n, "probe_condition": out["probe"]["condition"]})
        return out

    def enrol(self, key, name: str, photos: list[tuple], want_crop: bool) -> dict:
        t0 = time.perf_counter()
        name = (name or "").strip()
        if not name or len(name) > 200 or any(ord(ch) < 32 for ch in name):
            raise ServeError(400, "bad_name", "name: give a non-empty identity name (at most 200 printable characters)")
        if not photos:
            raise ServeError(400, "missing_field", "images: no enrolment photo sent")
        if self.db(lambda g: g.template_of(name)) is not None:   # cheap refusal first (checked again on write)
            raise ServeError(409, "identity_exists", f"name: identity {name!r} is already enrolled "
                             "(DELETE it first to re-enrol)")
        imgs = [self.decode(*p) for p in photos]            # every photo is checked before anything is stored
        analyses = []
        for img, p in zip(imgs, photos):
            a = self.analyse(img, p[1])
            cond = self.condition(a)
            if cond != "unmasked":
                raise ServeError(422, "masked_enrolment", f"{p[1]}: the face looks {cond} (P(masked) = {a.p_masked:.2f}); "
                                 "enrol from unmasked photos")
            analyses.append(a)
        emb = np.stack([a.embedding for a in analyses]).astype(np.float64)
        mean = emb.mean(0)
        mean /= np.linalg.norm(mean)
        dup_t = float(self.policy.uu["threshold"])
        fp = self.model.fingerprint

        def write(g):
            if g.template_of(name) is not None:
                raise ServeError(409, "identity_exists", f"name: identity {name!r} is already enrolled "
                                 "(DELETE it first to re-enrol)")
            if len(g):
                top = g.search(mean[None], k=1, fingerprint=fp)[0]
                if top and top[0].score >= dup_t:
                    raise ServeError(409, "duplicate", f"images: these photos match enrolled identity {top[0].name!r} "
                                     f"at the U-U threshold (FMR {self.policy.fmr:g}); not enrolled twice")
            g.add(name, mean[None].astype(np.float32), sources=[f"mean of {len(analyses)} photo(s)"], fingerprint=fp)

        self.db(write)
        kept = self._keep_crops(name, analyses) if self.cfg.keep_crops else 0
        out = {"identity": name, "photos": len(analyses), "template": "mean of the photos' embeddings",
               "kept_crops": kept, "faces": [self._face_info(a, crop=want_crop) for a in analyses],
               "timings_ms": {"total": round((time.perf_counter() - t0) * 1e3, 2)}}
        self.audit({"event": "enrol", "key": key.name, "identity": name, "photos": len(analyses)})
        return out

    def _keep_crops(self, name: str, analyses) -> int:
        import hashlib

        from ..utils.images import encode_image
        from ..utils.io import atomic_write_bytes

        d = Path(self.cfg.keep_crops) / hashlib.sha256(name.encode()).hexdigest()[:16]
        d.mkdir(parents=True, exist_ok=True)
        (d / "identity.txt").write_text(name + "\n", encoding="utf-8")
        for i, a in enumerate(analyses):
            atomic_write_bytes(d / f"{i}.jpg", encode_image(a.crop, "jpg", 95))
        return len(analyses)

    def remove(self, key, name: str) -> dict:
        def rm(g):
            if g.template_of(name) is None:
                raise ServeError(404, "unknown_identity", f"identity: no enrolled identity named {name!r}")
            return g.remove(name)

        n = self.db(rm)
        if self.cfg.keep_crops:
            import hashlib
            import shutil

            shutil.rmtree(Path(self.cfg.keep_crops) / hashlib.sha256(name.encode()).hexdigest()[:16], ignore_errors=True)
        self.audit({"event": "remove", "key": key.name, "identity": name})
        return {"identity": name, "removed_templates": n}

    def identities(self) -> list[dict]:
        return [{"identity": n, "templates": c} for n, c in self.db(lambda g: g.identities())]
