"""``maskinv serve`` (the verification service) and ``maskinv serve-key`` (create an API key)."""
from __future__ import annotations

import argparse

from maskinv.cli import args as A

SCOPES = ("verify", "enrol", "admin")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the mask-aware verification service (HTTP API + web page) over a gallery",
        description="Serve verify / identify / enrol over HTTP with API keys, mask-aware thresholds (M-U for a "
        "masked probe, U-U otherwise, the stricter when unsure), limits, an audit log and a web page at /. Binds to "
        "127.0.0.1 by default; put a TLS reverse proxy in front for anything else. Needs the serve extra.",
    )
    p.add_argument("--gallery", required=True, type=A.output_file, help="SQLite gallery file (created if missing)")
    p.add_argument("--model", required=True, type=A.model_ref, help="model file or name (dlib, sface)")
    p.add_argument("--keys", required=True, type=A.existing_file,
                   help="API keys file (hashed keys with scopes), made by maskinv serve-key")
    p.add_argument("--thresholds", type=A.existing_file, default=None,
                   help="thresholds file with U-U and M-U entries (default: the one beside the model file)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=A.int_range(1, 65535), default=8000, help="port (default: 8000)")
    p.add_argument("--fmr", type=A.probability, default=1e-3,
                   help="operator false-match rate for verification (a calibrated entry must exist; default: 1e-3)")
    p.add_argument("--fpir", type=A.probability, default=1e-2,
                   help="operator false-positive identification rate for identify (default: 1e-2)")
    p.add_argument("--workers", type=A.positive_int, default=2, help="inference threads (default: 2)")
    p.add_argument("--torch-threads", type=A.positive_int, default=1, help="torch intra-op threads (default: 1)")
    p.add_argument("--max-request-mb", type=A.positive_float, default=10.0, help="request body limit in MB (default: 10)")
    p.add_argument("--max-megapixels", type=A.positive_float, default=16.0,
                   help="largest image accepted, read from its header before decoding (default: 16)")
    p.add_argument("--max-images", type=A.positive_int, default=5, help="images per request (default: 5)")
    p.add_argument("--max-inflight", type=A.positive_int, default=64,
                   help="requests waiting for inference before 503 (default: 64)")
    p.add_argument("--micro-batch", type=A.non_negative_int, default=0,
                   help="compute the templates of up to N concurrent requests in one batch (0/1: off; "
                   "torch/ONNX models only, dlib embeds photo by photo; default: 0)")
    p.add_argument("--batch-wait-ms", type=A.non_negative_float, default=2.0,
                   help="how long the batcher waits for more requests (default: 2)")
    p.add_argument("--keep-crops", type=A.output_dir, default=None,
                   help="keep aligned enrolment crops in this folder (default: no photo is stored, templates only)")
    p.add_argument("--audit-log", type=A.output_file, default=None,
                   help="JSON-lines audit log of decisions, without images (default: GALLERY.audit.jsonl)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser requests from this origin, e.g. https://desk.example.org (repeatable; default: none)")
    from maskinv.align.backends import DETECTORS
    from maskinv.serve import DEFAULT_SERVE_DETECTOR

    p.add_argument("--detector", choices=DETECTORS.names(), default=DEFAULT_SERVE_DETECTOR,
                   help=f"face detector: {', '.join(DETECTORS.names())} (default: {DEFAULT_SERVE_DETECTOR}: MTCNN, "
                   "and YuNet where MTCNN finds no face, e.g. tight masked crops)")
    p.add_argument("--mask-classifier", type=A.existing_file, default=None,
                   help="mask classifier weights (default: the one shipped with maskinv)")
    p.set_defaults(func=_run)

    k = sub.add_parser(
        "serve-key",
        help="create an API key for maskinv serve (printed once; only its hash is stored)",
        description="Add a key with scopes to a keys file (created if missing) and print the key. Scopes: verify "
        "(verify, identify), enrol (enrol, list, remove), admin (everything, and raw scores in answers).",
    )
    k.add_argument("keys", type=A.output_file, help="keys file")
    k.add_argument("name", help="a name for the key (shown in the audit log)")
    k.add_argument("--scopes", type=A.choice_list(SCOPES, "scope"), default="verify",
                   help="comma-separated scopes among verify, enrol, admin (default: verify)")
    k.add_argument("--rate", type=A.positive_float, default=120.0, help="requests per minute (default: 120)")
    k.set_defaults(func=_run_key)


def _check_host(host: str) -> str:
    import ipaddress

    from maskinv.errors import ConfigError

    if host == "localhost":
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"argument --host: {host!r} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)") from None
    return host


def _check_origin(origin: str) -> str:
    from urllib.parse import urlsplit

    from maskinv.errors import ConfigError

    u = urlsplit(origin)
    if u.scheme not in ("http", "https") or not u.netloc or u.path not in ("", "/"):
        raise ConfigError(f"argument --cors-origin: {origin!r} is not an origin like https://desk.example.org")
    return origin.rstrip("/")


def _run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from maskinv.errors import ConfigError

    host = _check_host(args.host)
    origins = tuple(_check_origin(o) for o in args.cors_origin)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("maskinv serve needs the serve extra: pip install 'maskinv[serve]'") from None
    from maskinv.serve.app import run
    from maskinv.serve.service import ServeConfig

    cfg = ServeConfig(gallery=Path(args.gallery), model=args.model, keys=Path(args.keys),
                      thresholds=Path(args.thresholds) if args.thresholds else None, host=host, port=args.port,
                      fmr=args.fmr, fpir=args.fpir, workers=args.workers, torch_threads=args.torch_threads,
                      max_request_bytes=int(args.max_request_mb * (1 << 20)),
                      max_pixels=int(args.max_megapixels * 1e6), max_images=args.max_images,
                      max_inflight=args.max_inflight, micro_batch=args.micro_batch, batch_wait_ms=args.batch_wait_ms,
                      keep_crops=Path(args.keep_crops) if args.keep_crops else None,
                      audit_log=Path(args.audit_log) if args.audit_log else None, cors_origins=origins,
                      detector=args.detector,
                      mask_classifier=Path(args.mask_classifier) if args.mask_classifier else None)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"maskinv: note: serving on {host}: use a TLS reverse proxy; API keys travel in a header", file=sys.stderr)

    def ready(url: str) -> None:
        print(f"maskinv serve: listening on {url}", file=sys.stderr, flush=True)

    return run(cfg, ready=ready)


def _run_key(args: argparse.Namespace) -> int:
    from maskinv.serve.keys import add_key

    key = add_key(args.keys, args.name, args.scopes.split(","), args.rate)
    print(key)
    return 0
