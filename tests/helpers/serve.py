"""A real ``maskinv serve`` process on a free loopback port, and a stdlib HTTP client for it."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "serve"
#: Models the service tests can use, in order of preference, each with its committed RMFD thresholds.
MODELS = ("sface", "dlib")
_PICKED: list = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_data() -> Path | None:
    """``../shared/data`` beside the checkout (a worktree under wt/ looks one level higher), or
    ``$MASKINV_SHARED_DATA``; None when absent."""
    env = os.environ.get("MASKINV_SHARED_DATA")
    cands = [Path(env)] if env else [REPO.parent / "shared" / "data", REPO.parents[1] / "shared" / "data"]
    return next((c for c in cands if c.is_dir()), None)


def pick_model() -> tuple[str | None, Path | None, str | None]:
    """``(model name, thresholds file, None)`` of the first usable model of :data:`MODELS`, or
    ``(None, None, why not)``: the serve extra, the model and its committed thresholds must be there,
    and the thresholds must belong to the installed weights (same fingerprint)."""
    if _PICKED:
        return _PICKED[0]
    import importlib.util

    why = None
    for mod, extra in (("fastapi", "serve"), ("uvicorn", "serve"), ("multipart", "serve")):
        if importlib.util.find_spec(mod) is None:
            why = f"{mod} is not installed (pip install 'maskinv[{extra}]')"
    reasons = []
    if why is None:
        from maskinv import load_model
        from maskinv.errors import MaskinvError
        from maskinv.thresholds import read_thresholds

        for name in MODELS:
            thr = RESULTS / f"{name}_rmfd.thresholds.json"
            if not thr.is_file():
                reasons.append(f"{thr.name} missing")
                continue
            try:
                fp = load_model(name).fingerprint
            except (MaskinvError, ImportError) as exc:
                reasons.append(f"{name}: {exc}")
                continue
            if read_thresholds(thr)["model_fingerprint"] != fp:
                reasons.append(f"{name}: installed weights differ from the calibrated ones")
                continue
            _PICKED.append((name, thr, None))
            return _PICKED[0]
        why = "no model for the service tests: " + "; ".join(reasons)
    _PICKED.append((None, None, why))
    return _PICKED[0]


def skip_reason() -> str | None:
    """Why the service tests cannot run here, or None."""
    return pick_model()[2]


class Server:
    def __init__(self, tmp: Path, *extra: str, gallery: Path | None = None, keys: Path | None = None, port: int | None = None):
        self.tmp = Path(tmp)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gallery = gallery or self.tmp / "staff.db"
        self.keys = keys or self.tmp / "keys.json"
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.log = self.tmp / f"server_{self.port}.log"

    def start(self, timeout: float = 90.0) -> "Server":
        env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS="1")
        model, thresholds, why = pick_model()
        if why:
            raise RuntimeError(why)
        cmd = [sys.executable, "-m", "maskinv", "serve", "--gallery", str(self.gallery), "--model", model,
               "--keys", str(self.keys), "--thresholds", str(thresholds), "--port", str(self.port), *self.extra]
        self._logf = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self._logf, stderr=subprocess.STDOUT, env=env)
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout} s: {self.log.read_text()[-2000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int | None = None) -> int | None:
        if self.proc is None:
            return None
        if sig is None:
            self.proc.terminate()
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._logf.close()
        return self.proc.returncode


def multipart(fields: dict | None = None, files: list[tuple[str, str, bytes, str]] | None = None) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request; files: (field, filename, data, content type)."""
    b = uuid.uuid4().hex
    out = []
    for k, v in (fields or {}).items():
        out.append(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for field, fname, data, ctype in files or []:
        out.append(f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="{fname}"\r\n'
                   f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{b}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={b}"


def request(url: str, method: str = "GET", *, key: str | None = None, fields=None, files=None,
            body: bytes | None = None, ctype: str | None = None, timeout: float = 60.0) -> tuple[int, dict | str]:
    headers = {}
    if key is not None:
        headers["X-API-Key"] = key
    if fields is not None or files is not None:
        body, ctype = multipart(fields, files)
    if ctype:
        headers["Content-Type"] = ctype
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw, rtype = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, raw, rtype = e.code, e.read(), e.headers.get("content-type", "")
    return status, (json.loads(raw) if "json" in rtype else raw.decode("utf-8", "replace"))


def jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    from maskinv.utils.images import encode_image

    return encode_image(img, "jpg", quality)


def faces() -> dict[str, np.ndarray]:
    """Public-domain test photos (scikit-image): the astronaut, a masked astronaut, the cameraman,
    two astronauts side by side, a photo with no face."""
    from skimage import data

    from maskinv.align import get_detector
    from maskinv.masks import mask_photo

    astro = np.ascontiguousarray(data.astronaut()[:, :, :3])
    cam = np.ascontiguousarray(np.repeat(data.camera()[:, :, None], 3, axis=2))
    lm = get_detector().detect(astro)[0].landmarks
    masked = mask_photo(astro, lm, 0, "surgical").image
    two = np.ascontiguousarray(np.concatenate([astro, astro[:, ::-1]], axis=1))
    rng = np.random.default_rng(0)
    noface = np.clip(rng.normal(128, 20, (240, 320, 3)), 0, 255).astype(np.uint8)
    return {"astronaut": astro, "masked": masked, "camera": cam, "two": two, "noface": noface}
