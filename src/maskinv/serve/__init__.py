"""``maskinv serve``: a mask-aware face verification service (HTTP API + web page).

* :mod:`.pipeline` — photo -> face, aligned crop, P(masked), template (also used by the benchmarks);
* :mod:`.policy` — which threshold applies (U-U / M-U / the stricter; FPIR for identification);
* :mod:`.service` — model, classifier, gallery thread, keys, limits, audit log (no web framework);
* :mod:`.app` — FastAPI + uvicorn around it (the ``serve`` extra); :mod:`.keys`, :mod:`.images`,
  :mod:`.metrics`, :mod:`.batching`, :mod:`.errors`; ``web/`` — the desk page.

Docs: ``docs/serve.md``. Nothing here is imported by ``import maskinv``.
"""

#: The service's face detector unless ``--detector`` names another: MTCNN, and YuNet on photos where
#: MTCNN finds nothing (tight masked crops; docs/serve.md "Which detector"). On photos where MTCNN
#: finds a face it is exactly MTCNN.
DEFAULT_SERVE_DETECTOR = "mtcnn+yunet"
