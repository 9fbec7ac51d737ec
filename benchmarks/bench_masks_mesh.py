"""Speed of the face mesh and of the mask renderers, in one run on one thread (issue 21's goals).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_masks_mesh.py \
        [--repeats 5] [--drift 64] [--compile] [--json benchmarks/results/masks_mesh.json]

Every figure is the median over ``--repeats`` timed runs after one warm-up, as wall-clock ms and as
CPU ms of this process (``time.process_time``: on a shared machine the wall clock also counts the
time other jobs held the core; with one thread, CPU time is what the wall clock would read on an
idle core). Minor page faults per item are recorded too: with glibc's default allocator the big
activations of a batch are returned to the kernel after each call and faulted in (zeroed) again on
the next; ``--malloc-tuned`` sets glibc's thresholds first (mallopt) to show that cost. Goals: mesh
<= 5 ms per face (batch 32), rendering from cached meshes <= 1 ms per image (batch 128).

* mesh: the 468-point face mesh on 32 real 192 px inputs (LFW aligned crops of validation people
  through the mesh's ROI; random inputs without ../shared/data): the op-by-op torch runner
  (``FaceMeshNet``, before), the fast runner (align/mesh_fast.py) eager (channels_last; also NCHW,
  and in chunks of 8 and 1), traced + frozen
  (``torch.jit.freeze``), ``optimize_for_inference``, bf16, ONNX Runtime on its ONNX export, and
  (``--compile``) ``torch.compile``; the reference LiteRT runtime (XNNPACK, batch 1); the crop warp
  of ``mesh_points``;
* render: 128 real 112 px aligned crops whose meshes sit in a ``MeshCache`` (fp16, SHA-256 keys;
  computed here, saved, reloaded): cache look-ups, ``apply_mask`` v1 (5 points) and mesh (cached
  mesh) per image, ``BatchMasker`` v1 and mesh banks, and ``MeshBatchRenderer`` (each image's own
  cached mesh); and how close MeshBatchRenderer's masks come to the per-image renderer's with the
  same parameters on posed meshes (alpha IoU);
* drift (``--drift N``): landmark movement of bf16 and ONNX Runtime against the fp32 fast runner
  (and fast against plain) on N LFW validation crops and N real masked RMFD photos (rmfd_dev people;
  MTCNN five points), in photo pixels: mean and max over points and photos.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = {"Ben_Affleck", "Floyd_Mayweather", "Imran_Khan", "Joseph_Biden", "Nancy_Pelosi", "Pharrell_Williams",
            "Simon_Cowell", "Liu_Xiaoqing", "Liu_Ye", "Tian_Liang", "Wang_Fei"}


def _shared() -> Path | None:
    env = os.environ.get("MASKINV_SHARED_DATA")
    p = Path(env) if env else REPO.parents[1] / "shared" / "data"
    if not (p / "lfw" / "aligned112").is_dir():
        p = Path("/work/shared/data")
    return p if (p / "lfw" / "aligned112").is_dir() else None


def _time(fn, n_items: int, repeats: int) -> dict:
    import resource

    fn()  # warm-up
    wall, cpu, faults = [], [], []
    for _ in range(repeats):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        c, t = time.process_time(), time.perf_counter()
        fn()
        wall.append((time.perf_counter() - t) * 1e3 / n_items)
        cpu.append((time.process_time() - c) * 1e3 / n_items)
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n_items)
    return {"wall_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu),
            "page_faults_per_item": statistics.median(faults)}


def _tune_malloc() -> dict:
    """glibc: keep freed memory (no trimming, mmap only above 32 MB) so that large activations are
    not handed back to the kernel and faulted in again, zeroed, on every call."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return {"M_TRIM_THRESHOLD": bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)),
            "M_MMAP_THRESHOLD": bool(libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20))}


def _lfw_crops(shared: Path | None, n: int, skip: int = 0) -> tuple[np.ndarray, str]:
    from maskinv.utils.images import decode_image

    if shared is None:
        g = np.random.default_rng(0)
        return g.integers(60, 200, (n, 112, 112, 3), dtype=np.uint8), "random pixels (no ../shared/data)"
    people = [p for p in (REPO / "benchmarks" / "splits" / "lfw_val_people.txt").read_text().split() if p not in HELD_OUT]
    out = []
    for person in people:
        files = sorted((shared / "lfw" / "aligned112" / person).glob("*.jpg"))
        if files:
            out.append(decode_image(files[0].read_bytes()))
        if len(out) == n + skip:
            break
    return np.stack(out[skip:]), "LFW aligned112, first photo of each lfw_val_people person (held-out names excluded)"


def _rmfd_masked(shared: Path, n: int):
    """(photo, five points) of the first n masked rmfd_dev photos MTCNN finds a face in (25 % border)."""
    import cv2

    from maskinv.align import detect_faces
    from maskinv.utils.images import decode_image

    dev = set((REPO / "benchmarks" / "splits" / "rmfd_dev.txt").read_text().split())
    out, tried = [], 0
    for line in (shared / "rmfd" / "masked.txt").read_text().split():
        if line.split("/")[0] not in dev:
            continue
        tried += 1
        img = decode_image((shared / "rmfd" / "images" / line).read_bytes())
        b = int(round(0.25 * max(img.shape[:2])))
        img = cv2.copyMakeBorder(img, b, b, b, b, cv2.BORDER_REPLICATE)
        faces = detect_faces(img, "mtcnn")
        if faces:
            out.append((img, faces[0].landmarks.astype(np.float64)))
        if len(out) == n:
            break
    return out, tried


def _crops192(images, five) -> tuple[np.ndarray, np.ndarray]:
    """The mesh's 192 px inputs (float32 NCHW in [0, 1]) and the ROI sides (photo px per 192)."""
    import cv2

    from maskinv.align.mesh import MESH_INPUT, roi_from_five, roi_matrix

    xs, sides = [], []
    for im, p in zip(images, five):
        roi = roi_from_five(p)
        xs.append(cv2.warpAffine(im, roi_matrix(roi), (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_LINEAR))
        sides.append(roi.side / MESH_INPUT)
    x = np.stack(xs).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return np.ascontiguousarray(x), np.asarray(sides)


def _onnx_session(fast, tmp: Path):
    """ONNX Runtime (one thread) on the fast module's ONNX export, or the reason it is unavailable."""
    try:
        import onnxruntime as ort
        import torch
    except ImportError as exc:
        return None, f"unavailable: {exc}"
    path = tmp / "face_mesh.onnx"
    try:
        torch.onnx.export(fast, (torch.rand(1, 3, 192, 192),), str(path), input_names=["x"],
                          output_names=["points", "logit"], dynamic_axes={"x": {0: "b"}, "points": {0: "b"}, "logit": {0: "b"}},
                          dynamo=False, opset_version=17)
    except Exception as exc:  # noqa: BLE001 - reported in the results, never hides a number
        return None, f"export failed: {type(exc).__name__}: {str(exc)[:200]}"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]), f"onnxruntime {ort.__version__}"


def _drift(a: np.ndarray, b: np.ndarray, sides: np.ndarray) -> dict:
    d = np.linalg.norm(a[..., :2] - b[..., :2], axis=-1) * sides[:, None]      # photo pixels
    return {"mean_px": float(d.mean()), "max_px": float(d.max()), "photos": int(len(d))}


def _posed_iou() -> dict:
    """Alpha IoU (> 0.5) of MeshBatchRenderer (bank on the frontal fixture mesh) against the
    per-image mesh renderer with the same parameters on posed copies of that mesh (the poses of
    tests/test_mesh.py's coverage test): mean and min over 12 bank entries per pose."""
    from maskinv.masks.mesh import mesh_layers
    from maskinv.masks.mesh_batch import MeshBatchRenderer

    m0 = np.load(REPO / "tests" / "helpers" / "mesh_astronaut.npy").astype(np.float64)
    r = MeshBatchRenderer(180, meshes=m0[None], per_kind=3, seed=0)
    img = np.full((180, 180, 3), 128, np.uint8)
    res = {}
    for yaw, roll in [(0, 0), (25, 0), (-25, 0), (0, 20), (20, -15)]:
        c = m0[[1]]
        a, b = np.deg2rad(yaw), np.deg2rad(roll)
        Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        Rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
        mesh = (m0 - c) @ Ry.T @ Rz.T + c
        ious = []
        for e in range(len(r)):
            ref = mesh_layers(img, mesh, r.entry_params[e])[0]["alpha"] > 0.5
            got = r.render(img, mesh, e, np.random.default_rng(0))[1] > 0.5
            ious.append(float((ref & got).sum() / (ref | got).sum()))
        res[f"yaw{yaw}_roll{roll}"] = {"mean": float(np.mean(ious)), "min": float(np.min(ious))}
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--drift", type=int, default=64, help="photos per set for the landmark drift (0: skip)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (about 80 s to compile here)")
    ap.add_argument("--malloc-tuned", action="store_true",
                    help="call glibc mallopt first (no heap trimming, mmap only above 32 MB): see _tune_malloc")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from maskinv.align.mesh import face_landmark_path, load_face_mesh, mesh_points
    from maskinv.align.mesh_fast import FastFaceMesh, load_fast_face_mesh
    from maskinv.align.mesh import read_tflite
    from maskinv.constants import template_for_size
    from maskinv.masks import apply_mask
    from maskinv.masks.batched import BatchMasker
    from maskinv.masks.mesh import MeshCache
    from maskinv.masks.mesh_batch import MeshBatchRenderer
    from maskinv.utils.machine import machine_line

    cmd = "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_masks_mesh.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    out: dict = {"command": cmd, "machine": machine_line(), "threads": 1, "torch": torch.__version__,
                 "loadavg_start": list(os.getloadavg()), "repeats": a.repeats,
                 "timing": "median of repeats after a warm-up; wall = wall clock, cpu = this process's CPU time"}
    if a.malloc_tuned:
        out["mallopt"] = _tune_malloc()
    shared = _shared()
    tpl = template_for_size((112, 112)).astype(np.float64)

    # ------------------------------------------------------------------ the face mesh, batch 32
    crops32, src = _lfw_crops(shared, 32)
    out["mesh_input"] = src
    x_np, _ = _crops192(crops32, [tpl] * 32)
    x = torch.from_numpy(x_np)
    plain = load_face_mesh()
    fast = load_fast_face_mesh()
    mesh: dict = {}
    with torch.inference_mode():
        mesh["torch_plain_b32"] = _time(lambda: plain(x), 32, a.repeats)
        mesh["torch_fast_b32"] = _time(lambda: fast(x), 32, a.repeats)
        xc = x.contiguous(memory_format=torch.channels_last)
        frozen = torch.jit.freeze(torch.jit.trace(fast, xc, check_trace=False).eval())
        mesh["torch_fast_jit_freeze_b32"] = _time(lambda: frozen(xc), 32, a.repeats)
        opt = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(fast, xc, check_trace=False).eval()))
        mesh["torch_fast_optimize_for_inference_b32"] = _time(lambda: opt(xc), 32, a.repeats)
        nchw = FastFaceMesh(read_tflite(face_landmark_path())).to(memory_format=torch.contiguous_format)
        nchw.channels_last = False
        mesh["torch_fast_nchw_b32"] = _time(lambda: nchw(x), 32, a.repeats)
        mesh["torch_fast_b8_x4"] = _time(lambda: [fast(x[i:i + 8]) for i in range(0, 32, 8)], 32, a.repeats)
        mesh["torch_fast_b1_x32"] = _time(lambda: [fast(x[i:i + 1]) for i in range(32)], 32, a.repeats)
        fast_bf16 = load_fast_face_mesh(bf16=True)
        mesh["torch_fast_bf16_b32"] = _time(lambda: fast_bf16(x), 32, a.repeats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mesh["torch_fast_autocast_bf16_b32"] = _time(lambda: fast(x), 32, a.repeats)
    tmp = Path(tempfile.mkdtemp(prefix="bench_mesh_"))
    sess, ort_note = _onnx_session(FastFaceMesh(read_tflite(face_landmark_path())), tmp)
    out["onnxruntime"] = ort_note
    if sess is not None:
        mesh["onnxruntime_b32"] = _time(lambda: sess.run(None, {"x": x_np}), 32, a.repeats)
        mesh["onnxruntime_b1_x32"] = _time(lambda: [sess.run(None, {"x": x_np[i:i + 1]}) for i in range(32)], 32,
                                           a.repeats)
    if a.compile:
        t0 = time.perf_counter()
        comp = torch.compile(FastFaceMesh(read_tflite(face_landmark_path())))
        with torch.inference_mode():
            comp(xc)
            out["torch_compile_first_call_s"] = time.perf_counter() - t0
            mesh["torch_compile_b32"] = _time(lambda: comp(xc), 32, a.repeats)
    try:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(face_landmark_path()), num_threads=1)
        it.allocate_tensors()
        idx = it.get_input_details()[0]["index"]
        xi = np.ascontiguousarray(x_np.transpose(0, 2, 3, 1))

        def litert():
            for i in range(32):
                it.set_tensor(idx, xi[i:i + 1])
                it.invoke()

        mesh["litert_xnnpack_b1_x32"] = _time(litert, 32, a.repeats)
    except ImportError:
        out["litert"] = "ai-edge-litert not installed"
    mesh["crop_warp_per_face"] = _time(lambda: _crops192(crops32, [tpl] * 32), 32, a.repeats)
    mesh["mesh_points_fast_b32_end_to_end"] = _time(lambda: mesh_points(list(crops32), tpl), 32, a.repeats)
    out["mesh_ms_per_face"] = mesh
    base = mesh["torch_plain_b32"]
    out["mesh_speedup_fast_vs_plain"] = {k: base[k] / mesh["torch_fast_b32"][k] for k in ("wall_ms", "cpu_ms")}
    if "litert_xnnpack_b1_x32" in mesh:
        out["mesh_fast_over_litert"] = {k: mesh["torch_fast_b32"][k] / mesh["litert_xnnpack_b1_x32"][k]
                                        for k in ("wall_ms", "cpu_ms")}

    # ------------------------------------------------------------------ rendering from cached meshes
    crops, rsrc = _lfw_crops(shared, 128, skip=32)
    bank_crops = crops32[:8]
    out["render_input"] = rsrc + " (the 128 after the mesh set; bank meshes: 8 of the mesh set)"
    cache_path = tmp / "mesh_cache.npz"
    cache = MeshCache(cache_path)
    t0 = time.perf_counter()
    for im in list(crops) + list(bank_crops):
        cache.get(im, tpl)
    out["mesh_cache_fill_s_136_images"] = time.perf_counter() - t0
    cache.save()
    cache = MeshCache(cache_path)                    # what a training run loads
    out["mesh_cache"] = {"entries": len(cache), "bytes": cache_path.stat().st_size}
    look = _time(lambda: [cache.get(im, tpl) for im in crops], 128, a.repeats)
    meshes = np.stack([cache.get(im, tpl) for im in crops])
    bank_meshes = np.stack([cache.get(im, tpl) for im in bank_crops])
    assert cache.misses == 0, "the timed renders must read cached meshes"
    render: dict = {"mesh_cache_lookup": look}
    render["apply_mask_v1_per_image"] = _time(lambda: [apply_mask(c, None, i) for i, c in enumerate(crops)], 128,
                                              a.repeats)
    render["apply_mask_mesh_cached_per_image"] = _time(
        lambda: [apply_mask(c, None, i, renderer="mesh", mesh=m) for i, (c, m) in enumerate(zip(crops, meshes))],
        128, a.repeats)
    t = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
    gen = torch.Generator().manual_seed(0)
    bm = BatchMasker(112, seed=0)
    render["batchmasker_v1_bank_b128"] = _time(lambda: bm(t, 1.0, gen), 128, a.repeats)
    t0 = time.perf_counter()
    bmm = BatchMasker(112, renderer="mesh", meshes=bank_meshes, seed=0)
    out["batchmasker_mesh_bank_build_s"] = time.perf_counter() - t0
    render["batchmasker_mesh_bank_b128"] = _time(lambda: bmm(t, 1.0, gen), 128, a.repeats)
    t0 = time.perf_counter()
    mbr = MeshBatchRenderer(112, meshes=bank_meshes, seed=0)
    out["mesh_batch_renderer_bank_build_s"] = time.perf_counter() - t0
    out["mesh_batch_renderer_bank_entries"] = len(mbr)
    render["mesh_batch_renderer_own_mesh_b128"] = _time(lambda: mbr(crops, meshes, 0), 128, a.repeats)
    render["mesh_batch_renderer_own_mesh_b128_with_lookup"] = _time(
        lambda: mbr(crops, np.stack([cache.get(im, tpl) for im in crops]), 0), 128, a.repeats)
    out["render_ms_per_image"] = render
    out["mesh_batch_renderer_vs_per_image_alpha_iou"] = _posed_iou()
    v1 = render["apply_mask_v1_per_image"]
    out["render_ratios_vs_apply_mask_v1"] = {
        k: {q: v1[q] / render[k][q] for q in ("wall_ms", "cpu_ms")} for k in render if k != "apply_mask_v1_per_image"}

    # ------------------------------------------------------------------ landmark drift on real photos
    if a.drift > 0 and shared is not None:
        sets = {}
        lfw, _ = _lfw_crops(shared, a.drift, skip=160)
        sets["lfw_val_aligned112"] = (list(lfw), [tpl] * len(lfw))
        rm, tried = _rmfd_masked(shared, a.drift)
        out["rmfd_masked_tried"] = tried
        sets["rmfd_dev_masked"] = ([r[0] for r in rm], [r[1] for r in rm])
        drift = {}
        for name, (imgs, five) in sets.items():
            xd, sides = _crops192(imgs, five)
            xt = torch.from_numpy(xd)
            with torch.inference_mode():
                p_plain = plain(xt)[0].numpy()
                p_fast = fast(xt)[0].numpy()
                p_bf16 = fast_bf16(xt)[0].numpy()
            drift[name] = {"fast_vs_plain": _drift(p_fast, p_plain, sides),
                           "bf16_vs_fp32": _drift(p_bf16, p_fast, sides)}
            if sess is not None:
                drift[name]["onnxruntime_vs_torch"] = _drift(sess.run(None, {"x": xd})[0], p_fast, sides)
        out["landmark_drift"] = drift
    out["loadavg_end"] = list(os.getloadavg())
    f = mesh["torch_fast_b32"]
    r = render["mesh_batch_renderer_own_mesh_b128_with_lookup"]
    out["goals"] = {
        "mesh_le_5ms_per_face": {"cpu": f["cpu_ms"] <= 5.0, "wall": f["wall_ms"] <= 5.0},
        "render_from_cache_le_1ms_per_image": {"cpu": r["cpu_ms"] <= 1.0, "wall": r["wall_ms"] <= 1.0},
    }
    print(json.dumps(out, indent=1))
    if a.json:
        from maskinv.utils.io import atomic_write_json

        atomic_write_json(a.json, out)
    return out


if __name__ == "__main__":
    main()
