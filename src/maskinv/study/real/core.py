"""Shared machinery of the real study and its ``--select`` mode: the recogniser, its frozen trunk,
the aligned sets, their cached features, trained rows (resumable) and their embeddings."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from maskinv.errors import CheckpointError, ConfigError, DataFormatError
from maskinv.masks.mesh import renderer_revision

from .data import (AlignedSet, Splits, align_photos, aligned_crops, lfw_person_photos, mask_crops,
                   read_splits, rmfd_photos)
from .features import FeatureCache, view_name
from .settings import COSTS_MS, RealSettings
from .tails import RowSpec, TrainSet, embed_features, train_tail

__all__ = ["StudyContext", "HELD_OUT", "Logger", "open_out_dir"]

#: People no training or selection may use (``../shared/data/README.md``).
HELD_OUT = ("Ben_Affleck", "Floyd_Mayweather", "Imran_Khan", "Joseph_Biden", "Nancy_Pelosi", "Pharrell_Williams",
            "Simon_Cowell", "Liu_Xiaoqing", "Liu_Ye", "Tian_Liang", "Wang_Fei")


class Logger:
    """Timestamped lines to stdout and ``log_file``."""

    def __init__(self, log_file: Path | None = None, quiet: bool = False):
        self.log_file = log_file
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - self.t0:6.0f}s] {msg}"
        if not self.quiet:
            print(line, flush=True)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(line + "\n")



def open_out_dir(out_dir: str | Path, settings: RealSettings | None, cache_dir: str | Path | None, *,
                 log_name: str, quiet: bool) -> tuple[RealSettings, Path, Logger, Path]:
    """The start of a run (the study or its ``--select`` mode): ``(settings validated, OUT created,
    a Logger writing OUT/log_name, the cache folder: cache_dir or OUT/cache)``."""
    s = (settings or RealSettings()).validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    return s, out, Logger(out / log_name, quiet=quiet), cache

def _trunk_fingerprint(model: Any, trunk: Any, k: int) -> tuple[str, str]:
    from maskinv.utils.hashing import tensors_sha256

    weights = getattr(model, "fingerprint", None)
    tensors = tensors_sha256(sorted(trunk.state_dict().items()))
    conv = json.dumps(getattr(model, "input_convention", None), sort_keys=True, default=str)
    return str(weights or tensors), f"{weights}|{tensors}|{conv}|{type(model).__name__}|k={k}"


class StudyContext:
    """One study's data, trunk and feature cache. ``model``: an SFaceNet-like module with
    ``split(k)`` (default: :func:`maskinv.models.sface.load_sface`)."""

    def __init__(self, lfw_dir: Path, rmfd_dir: Path | None, settings: RealSettings, *, splits_dir: Path | None,
                 cache_dir: Path, model: Any = None, log: Callable[[str], None] | None = None):
        import torch

        self.s = settings.validate()
        self.log = log or Logger()
        self.lfw_dir = Path(lfw_dir)
        self.rmfd_dir = Path(rmfd_dir) if rmfd_dir is not None else None
        for d, what in ((self.lfw_dir / "images", "LFW images"), (self.lfw_dir / "aligned112", "LFW aligned112")):
            if not d.is_dir():
                raise DataFormatError(f"{d}: {what} folder not found (LFW_DIR must hold images/ and aligned112/)")
        if self.rmfd_dir is not None and not (self.rmfd_dir / "images").is_dir():
            raise DataFormatError(f"{self.rmfd_dir / 'images'}: RMFD images folder not found")
        self.splits: Splits = read_splits(splits_dir)
        bad = sorted(set(self.splits.train_people) & set(HELD_OUT))
        if bad:
            raise DataFormatError(f"{self.splits.root / 'lfw_train_people.txt'}: lists held-out person {bad[0]}")
        self.cache_dir = Path(cache_dir)
        if model is None:
            from maskinv.models.sface import load_sface

            model = load_sface()
        if not hasattr(model, "split"):
            raise ConfigError(f"study-real: the recogniser {type(model).__name__} has no split(k)")
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.trunk, self.tail0 = self.model.split(self.s.split_k)
        self.weights_fingerprint, trunk_id = _trunk_fingerprint(self.model, self.trunk, self.s.split_k)
        self.features = FeatureCache(self.cache_dir / "features", self.trunk, trunk_id, self.s.split_k,
                                     batch_size=self.s.feature_batch, log=self.log)
        self.embedding_size = int(getattr(self.model, "embedding_size", 0) or self._probe_dim())
        self.torch_version = torch.__version__
        self.threads = torch.get_num_threads()
        self.detection: dict[str, Any] = {}
        self.timings: dict[str, float] = {}

    def _probe_dim(self) -> int:
        import torch

        with torch.no_grad():
            return int(self.model(torch.zeros(1, 3, 112, 112)).shape[1])

    # ------------------------------------------------------------------ data
    def train_photos(self) -> tuple[AlignedSet, np.ndarray, list[str]]:
        """Aligned LFW training photos (detected ones only), class labels (people with >= 2
        detected photos; -1 = one-photo person), class names."""
        photos = lfw_person_photos(self.lfw_dir / "images", self.splits.train_people)
        t0 = time.perf_counter()
        aset = align_photos(photos, self.cache_dir / "align", detector=self.s.detector, name="lfw_train",
                            progress=self.log)
        self.timings["align_lfw_train_s"] = time.perf_counter() - t0
        self.detection["lfw_train"] = _rate(aset)
        self.log(f"lfw_train: {aset.info['num_detected']}/{aset.info['num_images']} photos with a face "
                 f"({100 * aset.info['detection_rate']:.1f} %)")
        aset = aset.subset(np.flatnonzero(aset.valid))
        names, counts = np.unique(aset.identities, return_counts=True)
        classes = [str(n) for n, c in zip(names, counts) if c >= 2]
        idx = {n: i for i, n in enumerate(classes)}
        labels = np.array([idx.get(p, -1) for p in aset.identities], np.int64)
        return aset, labels, classes

    def lfw_pairs(self, pairs_file: Path, name: str):
        from maskinv.data.pairs import read_pairs

        pl = read_pairs(pairs_file, self.lfw_dir / "aligned112")
        aset = aligned_crops(self.lfw_dir / "aligned112", pl.images, name=name)
        self.detection[name] = _rate(aset)
        return pl, aset

    def rmfd(self, people: list[str], name: str) -> tuple[AlignedSet, np.ndarray]:
        if self.rmfd_dir is None:
            raise ConfigError("study-real: no RMFD folder given")
        photos, is_probe = rmfd_photos(self.rmfd_dir, people)
        t0 = time.perf_counter()
        aset = align_photos(photos, self.cache_dir / "align", detector=self.s.detector, name=name, progress=self.log)
        self.timings[f"align_{name}_s"] = time.perf_counter() - t0
        self.detection[name] = _rate(aset)
        for flag, part in ((True, "masked"), (False, "unmasked")):
            sub = aset.subset(np.flatnonzero(is_probe == flag))
            self.detection[f"{name}_{part}"] = _rate(sub)
        self.log(f"{name}: {aset.info['num_detected']}/{aset.info['num_images']} photos with a face; masked "
                 f"{self.detection[name + '_masked']['detected']}/{self.detection[name + '_masked']['images']}, "
                 f"unmasked {self.detection[name + '_unmasked']['detected']}/{self.detection[name + '_unmasked']['images']}")
        return aset, is_probe

    # ------------------------------------------------------------------ features
    def feature_keys(self, aset: AlignedSet, masked: bool, what: str, draw: int = 0) -> list[str]:
        """Item keys of ``aset``'s crops (clean or masked by the study's renderer, draw ``draw``), computed if missing."""
        view = view_name(self.s.renderer if masked else None, self.s.seed, draw)
        keys = [self.features.item_key(aset.crops[i], view + "|" + aset.keys[i]) for i in range(len(aset.keys))]
        if masked:
            def crops_of(idx):
                return mask_crops(aset.crops[idx], aset.landmarks[idx], [aset.keys[i] for i in idx],
                                  seed=self.s.seed, draw=draw, renderer=self.s.renderer)
        else:
            def crops_of(idx):
                return aset.crops[idx]
        t0 = time.perf_counter()
        self.features.ensure(len(keys), crops_of, keys, what=f"{what} ({'masked ' + view if masked else 'clean'})")
        self.timings[f"features_{what}_{'masked' if masked else 'clean'}_s"] = time.perf_counter() - t0
        return keys

    def masked_subset_keys(self, aset: AlignedSet, idx: np.ndarray, what: str) -> dict[int, str]:
        """Masked feature keys of only the images ``idx`` (e.g. the probes of M-U): {index: key}."""
        idx = np.unique(np.asarray(idx, np.int64))
        keys = self.feature_keys(aset.subset(idx), True, what)
        return dict(zip(idx.tolist(), keys))

    def embed_keys(self, tail: Any, keys: list[str], chunk: int = 512) -> np.ndarray:
        out = [embed_features(tail, self.features.load(keys[i:i + chunk]).astype(np.float32))
               for i in range(0, len(keys), chunk)]
        return np.concatenate(out) if out else np.zeros((0, self.embedding_size), np.float32)

    def train_set(self, train: AlignedSet, labels: np.ndarray) -> TrainSet:
        """Features of the training photos: the labelled ones, plus the one-photo people's when
        MaskInv-adapt uses them (``adapt_unlabelled``)."""
        if not (self.s.with_adapt and self.s.adapt_unlabelled):
            keep = np.flatnonzero(labels >= 0)
            train, labels = train.subset(keep), labels[keep]
        clean_k = self.feature_keys(train, False, "lfw_train")
        masked_k = self.feature_keys(train, True, "lfw_train")
        t0 = time.perf_counter()
        clean = self.features.load(clean_k)
        masked = self.features.load(masked_k)
        teacher = np.concatenate([embed_features(self.tail0, clean[i:i + 512].astype(np.float32))
                                  for i in range(0, clean.shape[0], 512)])
        self.log(f"train set: {clean.shape[0]} photos ({int((labels >= 0).sum())} labelled, "
                 f"{int(labels.max()) + 1} people), features {clean.shape[1:]} fp16 loaded in "
                 f"{time.perf_counter() - t0:.0f} s")
        return TrainSet(clean=clean, masked=masked, teacher=teacher, labels=labels)

    # ------------------------------------------------------------------ rows
    def row_tail(self, model: Any) -> Any:
        return model.split(self.s.split_k)[1]

    def row_key(self, spec: RowSpec, init_key: str | None) -> dict[str, Any]:
        """Everything a trained row's bytes depend on (not its name): the spec, the training set's
        composition, the trunk and what it starts from. Equal keys -> equal weights (same torch, threads)."""
        sp = {k: v for k, v in spec.to_dict().items() if k != "name"}
        return {"spec": sp, "weights_fingerprint": self.weights_fingerprint, "split_k": self.s.split_k,
                "input_convention": getattr(self.model, "input_convention", None),
                "detector": self.s.detector, "renderer": renderer_revision(self.s.renderer),
                "train_set": "labelled+unlabelled" if (self.s.with_adapt and self.s.adapt_unlabelled) else "labelled",
                "init": init_key or "sface", "torch": self.torch_version, "threads": self.threads}

    def _find_trained(self, key: dict[str, Any], dirs: list[Path]) -> Path | None:
        for d in dirs:
            if not d.is_dir():
                continue
            for rp in sorted(d.glob("*.row.json")):
                try:
                    rec = json.loads(rp.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError):
                    continue
                if rec.get("key") == key and rp.with_name(rp.name[:-len(".row.json")] + ".pt").is_file():
                    return rp
        return None

    def train_row(self, spec: RowSpec, data: TrainSet, models_dir: Path, *, init: Any = None,
                  head_state: dict | None = None, init_key: str | None = None,
                  reuse_dirs: tuple[Path, ...] = ()) -> tuple[Any, dict[str, Any]]:
        """Train (or reload) one row; returns (full model, summary). Saved as ``models_dir/<name>.pt``
        (maskinv backbone + sidecar), ``<name>.row.json`` (its key, spec and training log) and
        ``<name>.head.pt``. A row with the same key in ``models_dir`` or ``reuse_dirs`` (e.g. the
        ``--select`` candidates) is loaded instead of retrained: training is deterministic."""
        import shutil

        import torch

        from maskinv.models import export_backbone
        from maskinv.utils.hashing import file_sha256
        from maskinv.utils.io import atomic_torch_save, atomic_write_json

        model = copy.deepcopy(init if init is not None else self.model)
        tail = self.row_tail(model)
        models_dir.mkdir(parents=True, exist_ok=True)
        wpath, rpath, hpath = models_dir / f"{spec.name}.pt", models_dir / f"{spec.name}.row.json", \
            models_dir / f"{spec.name}.head.pt"
        key = self.row_key(spec, init_key)
        found = self._find_trained(key, [models_dir, *reuse_dirs])
        if found is not None:
            stem = found.name[:-len(".row.json")]
            src_w, src_h = found.with_name(stem + ".pt"), found.with_name(stem + ".head.pt")
            rec = json.loads(found.read_text(encoding="utf-8"))
            if file_sha256(src_w) != rec.get("weights_sha256"):
                raise CheckpointError(f"{src_w}: sha256 differs from {found}; delete both to retrain")
            sd = torch.load(src_w, map_location="cpu", weights_only=True)
            model.load_state_dict(sd, strict=True)
            model.eval()
            if found.parent != models_dir:  # copy it in: the run folder holds every row it reports
                shutil.copyfile(src_w, wpath)
                side = src_w.with_suffix(".json")
                if side.is_file():
                    shutil.copyfile(side, wpath.with_suffix(".json"))
                if src_h.is_file():
                    shutil.copyfile(src_h, hpath)
                atomic_write_json(rpath, {**rec, "reused_from": str(found)})
            self.log(f"row {spec.name}: reusing {src_w} (same key)")
            rec["head_state"] = torch.load(src_h, weights_only=True) if src_h.is_file() else None
            rec["reused"] = True
            rec["reused_from"] = str(found)
            return model, rec
        summary = train_tail(tail, data, spec, head_state=head_state, log=self.log)
        model.eval()
        meta = dict(getattr(self.model, "maskinv_meta", {}) or {})
        meta.update({"study": "maskinv study-real", "row": spec.name, "renderer": self.s.renderer,
                     "lambda": spec.lam, "lambda_per_sample": spec.lam / self.embedding_size})
        export_backbone(model, wpath, extra_meta=meta)
        head_state_ = summary.pop("head_state")
        if head_state_ is not None:
            atomic_torch_save(head_state_, hpath)
        rec = {"key": key, **summary, "weights_sha256": file_sha256(wpath), "torch": self.torch_version,
               "threads": self.threads}
        atomic_write_json(rpath, rec)
        rec["head_state"] = head_state_
        rec["reused"] = False
        return model, rec

    def cost_lines(self, counts: dict[str, int], train_samples: dict[str, int]) -> list[str]:
        """The cost arithmetic (images x views x ms) printed before a run and kept in the report."""
        c = COSTS_MS
        lines = []
        total = 0.0
        for what, n in counts.items():
            if what.startswith("align:"):
                s = n * c["align"] / 1000
                lines.append(f"align {what[6:]}: {n} photos x {c['align']:.0f} ms = {s / 60:.1f} min (cached after the first run)")
            else:
                s = n * c["trunk"] / 1000
                lines.append(f"trunk features {what}: {n} images x {c['trunk']:.0f} ms = {s / 60:.1f} min (cached)")
            total += s
        for row, n in train_samples.items():
            s = n * c["train_sample"] / 1000
            lines.append(f"train {row}: {n} samples x {c['train_sample']:.0f} ms = {s / 60:.1f} min")
            total += s
        lines.append(f"total (estimate from the costs measured on one thread of a 2-core AMD EPYC): {total / 60:.1f} min")
        return lines


def _rate(aset: AlignedSet) -> dict[str, Any]:
    n = len(aset.keys)
    d = int(np.asarray(aset.valid).sum())
    return {"images": n, "detected": d, "rate": d / n if n else None,
            "detector": aset.info.get("detector"), "missed": [aset.keys[i] for i in np.flatnonzero(~aset.valid)]}

