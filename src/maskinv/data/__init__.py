"""Data layer: MXNet-free RecordIO, safe verification ``.bin`` files, image folders, SynthFaces.

Submodules are imported lazily so ``import maskinv.data`` stays cheap:

- :mod:`maskinv.data.recordio` — ``RecordReader``/``RecordWriter``/``RecordIODataset``,
  ``write_insightface_recordio``, ``recordio_info``.
- :mod:`maskinv.data.packing` — ``pack_image_folder``, ``unpack_recordio``.
- :mod:`maskinv.data.bins` — ``load_bin`` (restricted unpickler), ``save_bin``, ``decode_bin``.
- :mod:`maskinv.data.folders` — ``ImageFolderDataset``.
- :mod:`maskinv.data.synth` — SynthFaces: ``generate_dataset``, ``render_faces``.
"""
from __future__ import annotations

from maskinv.utils.lazy import lazy_getattr

_EXPORTS = {
    "IRHeader": "recordio",
    "pack_record": "recordio",
    "unpack_record": "recordio",
    "RecordWriter": "recordio",
    "RecordReader": "recordio",
    "RecordIODataset": "recordio",
    "write_insightface_recordio": "recordio",
    "recordio_info": "recordio",
    "pack_image_folder": "packing",
    "unpack_recordio": "packing",
    "load_bin": "bins",
    "save_bin": "bins",
    "decode_bin": "bins",
    "ImageFolderDataset": "folders",
    "generate_dataset": "synth",
    "render_faces": "synth",
    "sample_identities": "synth",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
