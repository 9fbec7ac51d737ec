"""Training throughput where users train: is the step or the loader the bound? (one prepared run)

Generates its own SynthFaces RecordIO set, then measures the training step (iResNet, ElasticFace-
Arc head, masks p = 0.5 rendered on the training device, flips, bf16 autocast + channels_last,
gradient clip, SGD; the step the trainer runs, ``maskinv.train.step.TrainStep``) in three variants

- ``plain``      ElasticFace-Arc-Aug: no teacher, same masked data path;
- ``kd``         MaskInv: + frozen teacher forward (same architecture) + KD loss (λ = 100);
- ``kd_cached``  MaskInv with the teacher-template cache (every lookup hits: the teacher never runs);

each fed (i) by the real loader (RecordIO decode + collate in ``--workers`` processes, pinned
memory) and (ii) by batches already on the device, plus (iii) the loader alone. Peak device memory
per variant on CUDA. Figures -> ``benchmarks/results/bench_gpu_train_<device>.json`` (or ``--out``).

    python -m benchmarks.bench_gpu_train --device cuda              # r100, batch 128, 50k images, 16 workers
    python -m benchmarks.bench_gpu_train --device cpu --arch r18 --width-mult 0.25 --size 48 \\
        --images 2000 --batch 32 --steps 3 --workers 1             # tiny end-to-end check on a CPU
    python -m benchmarks.bench_gpu_train --device cpu --only loader --loader-workers 0,1,2 --images 3000

Without options the preset follows the device (CUDA: the paper-scale figures; CPU: the tiny run).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from benchmarks._common import machine_info, write_result
except ImportError:  # run as a script
    from _common import machine_info, write_result  # type: ignore

PRESETS = {
    "cuda": dict(arch="r100", width_mult=1.0, size=112, images=50_000, batch=128, steps=30, warmup=5, workers=16,
                 loader_batches=100),
    "cpu": dict(arch="r18", width_mult=0.25, size=48, images=2000, batch=32, steps=3, warmup=1, workers=1,
                loader_batches=10),
}
MS1MV2_IMAGES = 5_822_653
VARIANTS = ("plain", "kd", "kd_cached")


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA if available), cuda, cuda:N or cpu")
    ap.add_argument("--arch")
    ap.add_argument("--width-mult", type=float)
    ap.add_argument("--size", type=int, help="image side (SynthFaces are generated at this size)")
    ap.add_argument("--images", type=int, help="training images to generate (>= 50k on a GPU: a real epoch)")
    ap.add_argument("--per-identity", type=int, default=20, help="images per identity (classes = images / this)")
    ap.add_argument("--batch", type=int, help="batch per device")
    ap.add_argument("--steps", type=int, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, help="untimed steps before each measurement")
    ap.add_argument("--loader-steps", type=int, default=None,
                    help="timed loader-fed steps (default max(steps, 2 x workers x prefetch))")
    ap.add_argument("--workers", type=int, help="loader worker processes")
    ap.add_argument("--prefetch-factor", type=int, default=4)
    ap.add_argument("--loader-workers", default=None, help="comma list of worker counts for the loader-alone figure")
    ap.add_argument("--loader-batches", type=int, help="batches timed for the loader-alone figure")
    ap.add_argument("--gen-workers", type=int, default=None, help="SynthFaces generation processes (default: all cores)")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time kd_cached with the backbone compiled (slow start)")
    ap.add_argument("--only", choices=["all", "loader"], default="all")
    ap.add_argument("--data", default=None, help="an existing SynthFaces/RecordIO folder (else generated in a temp dir)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_gpu_train_<device>.json)")
    args = ap.parse_args(argv)
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    preset = PRESETS["cuda" if args.device.startswith("cuda") else "cpu"]
    for k, v in preset.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.loader_workers is None:
        args.loader_workers = str(args.workers)
    return args


def _dataset(args, tmp: Path):
    from maskinv.data.recordio import RecordIODataset
    from maskinv.data.synth import generate_dataset

    gen_s = None
    root = Path(args.data) if args.data else tmp / "synth"
    if not (root / "train.rec").is_file():
        ids = max(2, args.images // args.per_identity)
        t0 = time.perf_counter()
        generate_dataset(root, identities=ids, images_per_identity=args.per_identity, seed=0, size=args.size,
                         workers=args.gen_workers or os.cpu_count() or 1)
        gen_s = time.perf_counter() - t0
    return RecordIODataset(root), root, gen_s


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def loader_alone(ds, *, batch: int, workers: int, batches: int, prefetch: int, pin: bool) -> dict:
    """Images/s of the loader alone (decode + collate + pin), after its first batch (worker start)."""
    from maskinv.train import distributed as D
    from maskinv.train.data import BatchSource

    src = BatchSource(ds, batch_size=batch, seed=0, info=D.DistInfo(), workers=workers, pin_memory=pin,
                      prefetch_factor=prefetch)
    t0 = time.perf_counter()
    n = 0
    t_first = None
    epoch = 0
    while n < batches + 1:
        for _x, _y, _i in src.iterate(epoch):
            n += 1
            if t_first is None:
                t_first = time.perf_counter()
            if n >= batches + 1:
                break
        epoch += 1
    el = time.perf_counter() - t_first
    return {"workers": workers, "batches": batches, "images_per_s": batches * batch / el,
            "first_batch_s": t_first - t0}


def _build(args, dev, num_classes: int, num_records: int, tmp: Path):
    """Student (+ head), optimiser, teacher and a pre-filled teacher cache, and a step factory."""
    import contextlib

    import torch

    from maskinv.train.distill import FrozenTeacher
    from maskinv.train.heads import get_head
    from maskinv.masks import BatchMasker
    from maskinv.models import get_model
    from maskinv.train.step import StudentNet, TrainStep
    from maskinv.train.teacher_cache import TeacherCache

    cl = not args.no_channels_last
    mf = torch.channels_last if cl else torch.contiguous_format
    kw = dict(embedding_size=512, width_mult=args.width_mult, input_size=args.size)
    student = get_model(args.arch, seed=0, **kw).to(dev, memory_format=mf)
    teacher = FrozenTeacher(get_model(args.arch, seed=1, **kw), allow_random=True).to(dev, memory_format=mf)
    head = get_head("elastic_arc", 512, num_classes, s=64.0, m=0.5, std=0.0125, seed=2).to(dev)
    if args.precision == "fp32":
        ac = contextlib.nullcontext
    else:
        dt = torch.bfloat16 if args.precision == "bf16" else torch.float16
        ac = lambda: torch.autocast(dev.type, dtype=dt)  # noqa: E731
    net = StudentNet(student, head, ac)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4,
                          **({"fused": True} if dev.type == "cuda" else {}))
    scaler = torch.amp.GradScaler("cuda") if args.precision == "fp16" else None
    cache = TeacherCache(tmp / "teacher_cache", num_records=num_records, embedding_size=512, teacher_fp="bench",
                         data_fp="bench", image_size=args.size, dtype="float16")
    g = torch.Generator().manual_seed(3)
    for lo in range(0, num_records, 8192):  # every (record, flip) filled: lookups always hit
        idx = np.arange(lo, min(num_records, lo + 8192))
        for fl in (0, 1):
            e = torch.nn.functional.normalize(torch.randn(len(idx), 512, generator=g), dim=1)
            cache.store(idx, np.full(len(idx), fl), e)
    masker = BatchMasker(image_size=args.size, device=dev)

    def make_step(variant: str):
        kd = variant != "plain"
        return TrainStep(model=net, backbone=student, optimizers=[opt], scaler=scaler,
                         teacher=teacher if kd else None, cache=cache if variant == "kd_cached" else None,
                         masker=masker, mask_prob=0.5, kd_weight=100.0 if kd else 0.0, flip=True, clip_grad_norm=5.0,
                         autocast=ac, channels_last=cl, device=dev, seed=0, check_finite=False)

    return make_step, student


def time_step(step, batches, dev, *, warmup: int, steps: int, batch: int) -> dict:
    """Images/s over ``steps`` steps after ``warmup``; ``batches`` yields (x, y, idx)."""
    import torch

    it = iter(batches)
    for s in range(warmup):
        _one(step, next(it), s)
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        _one(step, next(it), s)
    _sync(dev)
    el = time.perf_counter() - t0
    out = {"images_per_s": steps * batch / el, "step_ms": 1000 * el / steps}
    if dev.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def _one(step, b, s):
    x, y, idx = b
    step(x, y, s, idx)


def _loader_batches(src):
    epoch = 0
    while True:
        yield from src.iterate(epoch)
        epoch += 1


def _device_batches(src, dev, k: int = 4):
    """``k`` distinct batches moved to the device once, then cycled (no loader, no copy)."""
    it = _loader_batches(src)
    held = []
    for _ in range(k):
        x, y, idx = next(it)
        held.append((x.to(dev), y.to(dev), idx))
    while True:
        yield from held


def main(argv=None) -> dict:
    args = _parse(argv)
    import torch

    from maskinv.train import distributed as D
    from maskinv.train.data import BatchSource

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    pin = dev.type == "cuda"
    fig: dict = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if pin else "cpu",
                 "arch": args.arch, "width_mult": args.width_mult, "size": args.size, "batch": args.batch,
                 "steps": args.steps, "warmup": args.warmup, "workers": args.workers, "precision": args.precision,
                 "channels_last": not args.no_channels_last, "cpus": os.cpu_count(), "machine": machine_info(),
                 "load_avg_1min_at_start": os.getloadavg()[0]}
    if dev.type == "cpu":
        fig["note"] = ("CPU: the loader workers share the cores with the step, so 'bound' says little here; "
                       "the figures prove the script runs. GPU figures: --device cuda")
    rows: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_train.") as td:
        tmp = Path(td)
        ds, root, gen_s = _dataset(args, tmp)
        fig.update(images=len(ds), classes=int(ds.num_classes), gen_s=gen_s)
        fig["loader_alone"] = [loader_alone(ds, batch=args.batch, workers=int(w), batches=args.loader_batches,
                                            prefetch=args.prefetch_factor, pin=pin)
                               for w in str(args.loader_workers).split(",") if w != ""]
        if args.only == "all":
            make_step, student = _build(args, dev, int(ds.num_classes), len(ds), tmp)
            src = BatchSource(ds, batch_size=args.batch, seed=0, info=D.DistInfo(), workers=args.workers,
                              pin_memory=pin, prefetch_factor=args.prefetch_factor)
            kw = dict(warmup=args.warmup, steps=args.steps, batch=args.batch)
            # the workers hold up to workers x prefetch batches: drain that buffer before timing and
            # time several buffers' worth, so a loader slower than the step shows
            buf = args.workers * args.prefetch_factor
            kw_loader = dict(kw, warmup=max(args.warmup, buf), steps=args.loader_steps or max(args.steps, 2 * buf))
            fig["loader_fed_warmup_steps"], fig["loader_fed_steps"] = kw_loader["warmup"], kw_loader["steps"]
            for v in VARIANTS:
                step = make_step(v)
                rows[v] = {"loader": time_step(step, _loader_batches(src), dev, **kw_loader),
                           "device_data": time_step(step, _device_batches(src, dev), dev, **kw)}
            if args.compile:
                try:
                    student.compile()
                    step = make_step("kd_cached")
                    rows["kd_cached_compiled"] = {"device_data": time_step(step, _device_batches(src, dev), dev,
                                                                           **{**kw, "warmup": kw["warmup"] + 3})}
                except Exception as exc:  # recorded in the result: the other rows stand
                    rows["kd_cached_compiled"] = {"error": f"{type(exc).__name__}: {exc}"}
    fig["steps_by_variant"] = rows
    fig["ratios"] = ratios(rows, fig["loader_alone"])
    print_table(fig)
    out = Path(args.out) if args.out else None
    name = f"bench_gpu_train_{dev.type}" + ("_loader" if args.only == "loader" else "")
    if out is None:
        fig["json"] = str(write_result(name, fig))
    else:
        from maskinv.utils.io import atomic_write_json

        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fig})
        fig["json"] = str(out)
    return fig


def ratios(rows: dict, loader: list) -> dict:
    """KD / plain costs, loader vs device-data (which one bounds), loader alone vs the step's need,
    and the MS1MV2 epoch time per GPU at the measured rate."""
    r: dict = {}
    dd = {v: rows[v]["device_data"]["images_per_s"] for v in VARIANTS if v in rows}
    ld = {v: rows[v]["loader"]["images_per_s"] for v in VARIANTS if v in rows}
    if not dd:
        return r
    r["kd_over_plain"] = dd["kd"] / dd["plain"]
    r["kd_cached_over_plain"] = dd["kd_cached"] / dd["plain"]
    r["kd_cached_over_kd"] = dd["kd_cached"] / dd["kd"]
    best_loader = max(x["images_per_s"] for x in loader) if loader else None
    for v in dd:
        r[f"{v}_loader_over_device_data"] = ld[v] / dd[v]
        # within 5 %: the step is the bound; below: the loader (or host work around it) is. The
        # loader alone counts too: a loader-fed run shorter than the prefetch buffer can hide it.
        fed = min(ld[v], best_loader) if best_loader else ld[v]
        r[f"{v}_bound"] = "step" if fed >= 0.95 * dd[v] else "loader"
        if best_loader:
            r[f"{v}_loader_alone_over_step"] = best_loader / dd[v]
        r[f"{v}_ms1mv2_epoch_h_per_gpu"] = MS1MV2_IMAGES / ld[v] / 3600
    return r


def print_table(fig: dict) -> None:
    gen = f", generated in {fig['gen_s']:.1f} s" if fig.get("gen_s") is not None else ""
    print(f"== bench_gpu_train: {fig['arch']} x{fig['width_mult']} {fig['size']}px batch {fig['batch']} "
          f"{fig['precision']}{'+channels_last' if fig['channels_last'] else ''} on {fig['device_name']} "
          f"({fig['images']} images, {fig['classes']} classes{gen})")
    for la in fig["loader_alone"]:
        print(f"  loader alone, {la['workers']:>2d} workers: {la['images_per_s']:>10,.0f} img/s "
              f"(first batch {la['first_batch_s']:.2f} s)")
    rows = fig["steps_by_variant"]
    if rows:
        print(f"  {'variant':<20s} {'data':<12s} {'img/s':>10s} {'ms/step':>9s} {'peak GiB':>9s}")
    for v, per in rows.items():
        for mode, m in per.items():
            if mode == "error":
                print(f"  {v:<20s} error: {m}")
                continue
            pk = f"{m['peak_gib']:.2f}" if "peak_gib" in m else "-"
            print(f"  {v:<20s} {mode:<12s} {m['images_per_s']:>10,.1f} {m['step_ms']:>9.1f} {pk:>9s}")
    for k, v in fig["ratios"].items():
        print(f"  {k:<44s} {v:.3g}" if isinstance(v, float) else f"  {k:<44s} {v}")


if __name__ == "__main__":
    main()
