"""HTTP around :class:`maskinv.serve.service.Service` (FastAPI + uvicorn, the ``serve`` extra).

Every refusal is a JSON body ``{"error": {"code": ..., "message": ...}}`` with a 4xx status
naming the field and the problem; nothing is stored for a refused request. Uploads are parsed
in memory (the multipart parser's spool limit is raised to the request limit, so photos never
touch the disk) and the body size is enforced while it is received.
"""
import asyncio
import logging
import time
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from ..errors import ConfigError, DataFormatError, MaskinvError, ModelMismatchError, NoFaceError
from .errors import ServeError

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations
# (``request: Request``) at run time.

__all__ = ["create_app", "run"]

_log = logging.getLogger("maskinv.serve")

_MULTIPART = {"multipart/form-data": {"schema": {"type": "object"}}}


def _body(props: dict, required: list[str]) -> dict:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": props, "required": required}}}}}


_FILE = {"type": "string", "format": "binary"}


class _BodyLimit:
    """Pure ASGI middleware: 413 when Content-Length or the bytes received exceed the limit."""

    def __init__(self, app, limit: int, on_error):
        self.app, self.limit, self.on_error = app, limit, on_error

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                n = -1
            if n < 0 or n > self.limit:
                return await self._refuse(scope, send, n)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise ServeError(413, "request_too_large", f"request body over the {self.limit} byte limit")
            return msg

        return await self.app(scope, limited, send)

    async def _refuse(self, scope, send, n):
        msg = (f"request body of {n} bytes is over the {self.limit} byte limit" if n >= 0
               else "Content-Length is not a number")
        self.on_error(scope.get("path", ""), "request_too_large")
        resp = JSONResponse({"error": {"code": "request_too_large", "message": msg}}, status_code=413 if n >= 0 else 400,
                            headers={"Connection": "close"})
        await resp(scope, _drain_receive, send)


async def _drain_receive():  # pragma: no cover - the response never reads the body
    return {"type": "http.disconnect"}


def create_app(service) -> tuple:
    """The FastAPI application of ``service``."""
    from starlette import formparsers

    cfg = service.cfg
    # keep uploads in memory: the parser spools parts larger than this to a temporary file
    formparsers.MultiPartParser.spool_max_size = cfg.max_request_bytes + 1
    app = FastAPI(title="maskinv serve", version=_version(), docs_url=None, redoc_url=None,
                  description="Mask-aware face verification: verify, identify, enrol. Send the API key in X-API-Key.")
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-API-Key", "Content-Type"])

    def endpoint_of(request: Request) -> str:
        route = request.scope.get("route")
        return getattr(route, "path", None) or "other"

    @app.middleware("http")
    async def timing(request: Request, call_next):
        t0 = time.perf_counter()
        try:
            resp = await call_next(request)
        except ServeError as exc:  # raised by the body limit while the form was read
            resp = _error(exc)
            service.metrics.error(endpoint_of(request), exc.code)
        service.metrics.request(endpoint_of(request), request.method, resp.status_code, time.perf_counter() - t0)
        return resp

    def _error(exc: ServeError):
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(ServeError)
    async def on_serve_error(request: Request, exc: ServeError):
        service.metrics.error(endpoint_of(request), exc.code)
        return _error(exc)

    @app.exception_handler(MaskinvError)
    async def on_maskinv_error(request: Request, exc: MaskinvError):
        if isinstance(exc, NoFaceError):
            e = ServeError(422, "no_face", str(exc))
        elif isinstance(exc, (DataFormatError, ConfigError)):
            e = ServeError(400, "bad_request", str(exc))
        elif isinstance(exc, ModelMismatchError):
            e = ServeError(500, "model_mismatch", str(exc))
        else:
            e = ServeError(400, "bad_request", str(exc))
        service.metrics.error(endpoint_of(request), e.code)
        return _error(e)

    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception):
        _log.exception("internal error on %s", request.url.path)
        service.metrics.error(endpoint_of(request), "internal")
        return JSONResponse({"error": {"code": "internal", "message": f"internal error ({type(exc).__name__})"}},
                            status_code=500)

    async def form_of(request: Request, scope: str):
        key = service.keys.authenticate(request.headers.get("x-api-key"), scope)
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ServeError(415, "wrong_content_type", f"send multipart/form-data, got {ctype or 'no content type'!r}")
        try:
            form = await request.form(max_files=cfg.max_images, max_fields=20, max_part_size=cfg.max_request_bytes)
        except ServeError:
            raise
        except Exception as exc:  # noqa: BLE001 - starlette's MultiPartException / HTTPException
            msg = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
            if "Too many files" in str(msg):
                raise ServeError(413, "too_many_images", f"more than {cfg.max_images} images in one request") from None
            raise ServeError(400, "bad_form", f"could not parse the multipart form: {msg}") from None
        return key, form

    async def file_of(form, field: str, required: bool = True):
        v = form.get(field)
        if v is None or isinstance(v, str):
            if required:
                raise ServeError(400, "missing_field", f"{field}: missing (an image file upload)")
            return None
        return (await v.read(), field, v.content_type)

    def flag(form, field: str) -> bool:
        v = form.get(field)
        return isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on")

    async def run_in_pool(fn, *args):
        sem = service.admit()
        try:
            return await asyncio.get_running_loop().run_in_executor(service.pool, fn, *args)
        finally:
            sem.release()

    @app.post("/v1/verify", openapi_extra=_body(
        {"image": _FILE, "reference": _FILE, "identity": {"type": "string"}, "return_crop": {"type": "boolean"}}, ["image"]))
    async def verify(request: Request):
        """1:1: the probe ``image`` against a ``reference`` photo or an enrolled ``identity``."""
        key, form = await form_of(request, "verify")
        probe = await file_of(form, "image")
        ref = await file_of(form, "reference", required=False)
        ident = form.get("identity")
        ident = ident.strip() if isinstance(ident, str) and ident.strip() else None
        if (ref is None) == (ident is None):
            raise ServeError(400, "missing_field", "give exactly one of reference (an image) or identity (an enrolled name)")
        return await run_in_pool(service.verify, key, probe, ref, ident, flag(form, "return_crop"))

    @app.post("/v1/identify", openapi_extra=_body(
        {"image": _FILE, "k": {"type": "integer", "default": 5}, "return_crop": {"type": "boolean"}}, ["image"]))
    async def identify(request: Request):
        """1:N: the top-``k`` enrolled identities, each with its decision at the operator's FPIR."""
        key, form = await form_of(request, "verify")
        probe = await file_of(form, "image")
        k_raw = form.get("k", "5")
        try:
            k = int(k_raw)
            if not 1 <= k <= 100:
                raise ValueError
        except (TypeError, ValueError):
            raise ServeError(400, "bad_field", f"k: must be an integer in 1..100, got {k_raw!r}") from None
        return await run_in_pool(service.identify, key, probe, k, flag(form, "return_crop"))

    @app.post("/v1/identities", status_code=201, openapi_extra=_body(
        {"name": {"type": "string"}, "images": {"type": "array", "items": _FILE}}, ["name", "images"]))
    async def enrol(request: Request):
        """Enrol ``name`` from one or more unmasked photos (all or none are stored)."""
        key, form = await form_of(request, "enrol")
        files = [v for v in form.getlist("images") if not isinstance(v, str)]
        photos = [(await f.read(), f"images[{i}]" + (f" ({f.filename[:80]})" if f.filename else ""), f.content_type)
                  for i, f in enumerate(files)]
        name = form.get("name")
        return await run_in_pool(service.enrol, key, name if isinstance(name, str) else "", photos, flag(form, "return_crop"))

    @app.get("/v1/identities")
    async def list_identities(request: Request):
        service.keys.authenticate(request.headers.get("x-api-key"), "enrol")
        ids = await asyncio.get_running_loop().run_in_executor(None, service.identities)
        return {"identities": ids, "count": len(ids)}

    @app.get("/v1/identities/{identity}")
    async def get_identity(identity: str, request: Request):
        service.keys.authenticate(request.headers.get("x-api-key"), "enrol")
        ids = await asyncio.get_running_loop().run_in_executor(None, service.identities)
        for i in ids:
            if i["identity"] == identity:
                return i
        raise ServeError(404, "unknown_identity", f"identity: no enrolled identity named {identity!r}")

    @app.delete("/v1/identities/{identity}")
    async def delete_identity(identity: str, request: Request):
        key = service.keys.authenticate(request.headers.get("x-api-key"), "enrol")
        return await asyncio.get_running_loop().run_in_executor(None, service.remove, key, identity)

    @app.get("/health")
    async def health():
        n = await asyncio.get_running_loop().run_in_executor(None, lambda: len(service.identities()))
        return {"status": "ok", "model": service.model.fingerprint[:21], "detector": service.pipeline.detector.name,
                "identities": n,
                "uptime_s": round(time.time() - service.started, 1), "thresholds": service.policy.describe(),
                "mask_classifier": {"masked_at": service.classifier.masked_at,
                                    "unmasked_below": service.classifier.unmasked_below}}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        extra = {"maskinv_uptime_seconds": round(time.time() - service.started, 1)}
        if service.batcher is not None:
            extra.update({"maskinv_embed_batches_total": service.batcher.batches,
                          "maskinv_embed_batched_items_total": service.batcher.items})
        return PlainTextResponse(service.metrics.render(extra),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(_asset("index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        types = {"app.js": "application/javascript", "style.css": "text/css"}
        if name not in types:
            raise ServeError(404, "not_found", f"no static file {name!r}")
        return Response(_asset(name), media_type=types[name])

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def not_found(path: str):
        raise ServeError(404, "not_found", f"/{path}: no such endpoint (see /openapi.json)")

    app.state.service = service
    return _BodyLimit(app, cfg.max_request_bytes, service.metrics.error), app


def _asset(name: str) -> str:
    return resources.files("maskinv.serve").joinpath("web", name).read_text(encoding="utf-8")


def _version() -> str:
    from .. import __version__

    return __version__


def run(cfg, *, ready=None) -> int:
    """Load everything, then serve until SIGINT/SIGTERM; in-flight requests finish (up to 30 s)."""
    import uvicorn

    from .service import Service

    service = Service(cfg)
    asgi, _ = create_app(service)
    config = uvicorn.Config(asgi, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=30, limit_concurrency=cfg.max_inflight * 2, lifespan="off")
    server = uvicorn.Server(config)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with these handlers in place
    # that is a no-op, so the service is closed below and the process exits 0
    import signal

    stopped = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: stopped.append(s))
    if ready is not None:
        import threading

        def announce():
            while not server.started and not server.should_exit:
                time.sleep(0.05)
            if server.started:
                ready(f"http://{cfg.host}:{cfg.port}")

        threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    finally:
        service.close()
    return 0
