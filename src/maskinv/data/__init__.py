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

from maskinv.utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "recordio": "IRHeader pack_record unpack_record RecordWriter RecordReader RecordIODataset write_insightface_recordio recordio_info",
    "packing": "pack_image_folder unpack_recordio",
    "bins": "load_bin save_bin decode_bin",
    "folders": "ImageFolderDataset",
    "synth": "generate_dataset render_faces sample_identities",
})
