"""A third-party plug-in as an installed package would ship it: two entry-point callables,
``register_recognizers(registry)`` (group ``maskinv.recognizers``) and
``register_detectors(registry)`` (group ``maskinv.detectors``). tests/test_recognizer.py points
fake entry points at them (nothing is installed)."""
from __future__ import annotations

import numpy as np

CALLS: list[str] = []  # which register function ran, in order (each must run once)
SEEN: list[tuple[int, ...]] = []  # image shapes the plug-in detector was given


class PlugRecognizer:
    """Templates: the L2-normalised mean colour of the 4 quadrants of each crop (12-d)."""

    backend = "plugrec"
    fingerprint = "plugrec:1"
    embedding_size = 12
    input_size = 32
    input_convention = {"channel_order": "RGB", "normalization": "none"}
    needs_photo = False
    supports_flip = False
    max_batch = None
    module = None
    path = None
    thresholds_file = None
    meta: dict = {}

    def embed_aligned(self, crops, *, flip=True, batch_size=64):
        from maskinv.models.embedding import l2_normalize

        c = np.asarray(crops, np.float64)
        h = c.shape[1] // 2
        q = [c[:, :h, :h], c[:, :h, h:], c[:, h:, :h], c[:, h:, h:]]
        return l2_normalize(np.concatenate([x.mean(axis=(1, 2)) for x in q], axis=1) + 1.0)

    def embed_photos(self, images, *, aligned=False, detector=None):
        from maskinv.models.loading import FaceModel

        return FaceModel.embed_photos(self, images, aligned=aligned, detector=detector)


def register_recognizers(registry) -> None:
    from maskinv.models.recognizer import NamedRecognizer

    CALLS.append("recognizers")
    registry.register("plugrec", NamedRecognizer("plugrec", lambda **kw: PlugRecognizer(), trainable=False,
                                                 summary="a plug-in recogniser"))


def _detector(**kw):
    from maskinv.align import Face, FaceDetector
    from maskinv.constants import ARCFACE_TEMPLATE_112

    class PlugDetector(FaceDetector):
        name = "plugdet"

        def detect(self, image):
            SEEN.append(tuple(image.shape))
            h, w = image.shape[:2]
            pts = np.asarray(ARCFACE_TEMPLATE_112, np.float32) * (w / 112.0)
            return [Face(box=np.array([0, 0, w - 1, h - 1], np.float32), landmarks=pts, score=0.99)]

    return PlugDetector()


def register_detectors(registry) -> None:
    CALLS.append("detectors")
    registry.register("plugdet", _detector)
