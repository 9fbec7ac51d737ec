"""CUDA-only code paths of the trainer, checked on one GPU in a couple of minutes (PASS/FAIL lines + JSON).

    python -m benchmarks.gpu_check                 # -> benchmarks/results/gpu_check.json; exit 1 on any FAIL
    python -m benchmarks.gpu_check --no-compile    # skip the torch.compile check (the slowest, ~1 min)

Checks: pinned-memory batches and non-blocking copies; the mask bank (BatchMasker) and the teacher
cache on the device; an fp16 GradScaler step with the fused optimiser; fused vs default SGD; a bf16
step without host syncs (``torch.cuda.set_sync_debug_mode``: the sites that still synchronise are
listed, as information); NCCL: a one-process group with a DDP-wrapped step and the deferred stop-flag
all-reduce; ``torchrun --nproc_per_node 1 -m maskinv train`` on CUDA; a NaN caught by
``runtime.nan_check: log``; ``runtime.compile``. On a machine without CUDA every check is reported
as SKIP (nothing here can run there).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKS: list = []


def check(fn):
    CHECKS.append(fn)
    return fn


class _Toy:
    """A sized uint8 dataset (random images, 10 classes) with the RecordIODataset item contract."""

    def __init__(self, n=64, size=32):
        import numpy as np

        rng = np.random.default_rng(0)
        self.x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        self.labels = np.arange(n) % 10
        self.num_classes = 10
        self.image_size = (size, size)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.labels[i])


def _tiny_step(dev, *, precision="bf16", teacher=False, cache=None, size=32, fused=True, check_finite=False, seed=0):
    import torch

    from maskinv.train.distill import FrozenTeacher
    from maskinv.train.heads import get_head
    from maskinv.masks import BatchMasker
    from maskinv.models import get_model
    from maskinv.train.step import StudentNet, TrainStep

    bb = get_model("r18", embedding_size=32, width_mult=0.125, input_size=size, seed=seed).to(dev)
    head = get_head("elastic_arc", 32, 10, s=16.0, seed=1).to(dev)
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    ac = (lambda: torch.autocast("cuda", dtype=dt)) if dt else (lambda: torch.autocast("cuda", enabled=False))
    net = StudentNet(bb, head, ac)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, fused=fused)
    t = None
    if teacher:
        t = FrozenTeacher(get_model("r18", embedding_size=32, width_mult=0.125, input_size=size, seed=7),
                          allow_random=True).to(dev)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    step = TrainStep(model=net, backbone=bb, optimizers=[opt], scaler=scaler, teacher=t, cache=cache,
                     masker=BatchMasker(image_size=size, device=dev), mask_prob=0.5, kd_weight=10.0 if teacher else 0.0,
                     clip_grad_norm=5.0, autocast=ac, device=dev, seed=0, check_finite=check_finite)
    return step, net, opt, scaler


def _batch(n=16, size=32, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), torch.arange(n) % 10


@check
def pinned_copies(dev, tmp):
    import torch

    from maskinv.train import distributed as D
    from maskinv.train.data import BatchSource

    out = {}
    for label, kw in (("workers", dict(workers=2)), ("in_memory", dict(in_memory=True))):
        src = BatchSource(_Toy(), batch_size=16, seed=0, info=D.DistInfo(), pin_memory=True, **kw)
        x, y, _ = next(iter(src.iterate(0)))
        assert x.is_pinned() and y.is_pinned(), f"{label}: batch not pinned"
        xd = x.to(dev, non_blocking=True)
        torch.cuda.synchronize(dev)
        assert torch.equal(xd.cpu(), x), f"{label}: non-blocking copy differs"
        out[label] = "pinned, copy equal"
    return out


@check
def masker_on_device(dev, tmp):
    import torch

    from maskinv.masks import BatchMasker

    x, _ = _batch()
    cpu, gpu = BatchMasker(image_size=32), BatchMasker(image_size=32, device=dev)
    a, fa = cpu(x, prob=0.5, generator=torch.Generator().manual_seed(3))
    b, fb = gpu(x.to(dev), prob=0.5, generator=torch.Generator().manual_seed(3))
    assert b.device.type == "cuda" and fb.device.type == "cuda", "masker output not on the device"
    assert all(t.device.type == "cuda" for t in gpu._bank(dev)), "mask bank not on the device"
    assert torch.equal(fa, fb.cpu()), "different samples masked on CPU and GPU"
    diff = int((a.int() - b.cpu().int()).abs().max())
    assert diff <= 1, f"CPU and GPU masks differ by {diff} grey levels"
    return {"max_abs_diff_vs_cpu": diff, "masked": int(fb.sum())}


@check
def teacher_cache_on_device(dev, tmp):
    import numpy as np
    import torch

    from maskinv.train.teacher_cache import TeacherCache

    cache = TeacherCache(tmp / "tc", num_records=16, embedding_size=32, teacher_fp="t", data_fp="d", image_size=32)
    step, *_ = _tiny_step(dev, teacher=True, cache=cache)
    x, _ = _batch()
    idx, flips = torch.arange(16), torch.zeros(16, dtype=torch.bool, device=dev)
    first = step.teacher_embeddings(x.to(dev), idx, flips)   # all misses: teacher runs, cache filled
    again = step.teacher_embeddings(x.to(dev), idx, flips)   # all hits
    assert first.device.type == "cuda" and again.device.type == "cuda", "cache output not on the device"
    assert cache.lookup(np.arange(16), np.zeros(16, np.int64))[1].all(), "cache not filled"
    err = float((first - again).abs().max())
    assert err < 1e-5, f"cached embeddings differ from the teacher's by {err}"
    return {"max_abs_diff": err}


@check
def fp16_gradscaler_fused_step(dev, tmp):
    import torch

    step, net, opt, scaler = _tiny_step(dev, precision="fp16", teacher=True, check_finite=True)
    w0 = [p.detach().clone() for p in net.parameters()]
    losses = []
    for s in range(4):
        x, y = _batch(seed=s)
        r = step(x, y, s)
        assert r.finite, f"step {s}: non-finite loss {r.loss}"
        losses.append(r.loss)
    moved = sum(int(not torch.equal(a, p.detach())) for a, p in zip(w0, net.parameters()))
    assert moved > 0, "fp16 steps did not update the weights"
    assert opt.param_groups[0]["fused"], "optimizer not fused"
    return {"losses": losses, "scale": float(scaler.get_scale()), "params_moved": moved}


@check
def fused_sgd_matches_default(dev, tmp):
    import torch

    outs = []
    for fused in (False, True):
        step, net, *_ = _tiny_step(dev, precision="fp32", fused=fused, check_finite=True)
        for s in range(3):
            x, y = _batch(seed=s)
            step(x, y, s)
        outs.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    err = float((outs[0] - outs[1]).abs().max())
    assert err < 1e-4, f"fused and default SGD differ by {err} after 3 steps"
    return {"max_abs_diff": err}


@check
def step_host_syncs(dev, tmp):
    """Information: the synchronising operations left in one bf16 KD step (no per-step loss reads)."""
    import torch

    step, *_ = _tiny_step(dev, teacher=True)
    x, y = _batch()
    x, y = x.pin_memory(), y.pin_memory()
    step(x, y, 0)
    torch.cuda.synchronize(dev)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(x, y, 1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sites = sorted({f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)})
    return {"syncs": len([w for w in caught if "synchroniz" in str(w.message)]), "sites": sites}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@check
def nccl_ddp_and_deferred_stop_flag(dev, tmp):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from maskinv.train.signals import StopFlag

    env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=dev)
    try:
        step, net, *_ = _tiny_step(dev)
        step.model = DDP(net, device_ids=[dev.index or 0])
        for s in range(3):
            x, y = _batch(seed=s)
            step(x, y, s)
        torch.cuda.synchronize(dev)
        flag = StopFlag()
        answers = [flag.requested(distributed=True, deferred=True)]
        flag.signum = 15  # a signal arrives: the next call still answers the previous step's flag
        answers.append(flag.requested(distributed=True, deferred=True))
        answers.append(flag.requested(distributed=True, deferred=True))
        assert answers == [False, False, True], f"deferred stop flag answered {answers}"
        assert flag.requested(distributed=True) is True, "blocking all_reduce_flag"
    finally:
        dist.destroy_process_group()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return {"backend": "nccl", "deferred_answers": answers}


def _tiny_data(tmp: Path) -> Path:
    d = tmp / "toy"
    if not (d / "train.rec").is_file():
        from maskinv.data.synth import generate_dataset

        generate_dataset(d, identities=16, images_per_identity=8, seed=0, size=32, workers=4)
    return d


@check
def torchrun_cli_on_cuda(dev, tmp):
    data = _tiny_data(tmp)
    out = tmp / "run_torchrun"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "maskinv",
           "train", str(ROOT / "configs" / "tiny-cpu.yaml"), "--out", str(out), "--max-steps", "6",
           f"data.path={data}", "runtime.device=cuda", "runtime.workers=2", "data.in_memory=false", "masks.prob=0.5",
           "runtime.log_every=2", "runtime.threads=null"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr[-1500:]}"
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "max_steps" and s["step"] == 6 and s["ranks_in_sync"], f"summary {s}"
    return {"precision": s["precision"], "world_size": s["world_size"], "loss": s["loss"]}


@check
def nan_check_log_on_cuda(dev, tmp):
    import torch
    from torch import nn

    from maskinv.train.config import load_config
    from maskinv.train.trainer import TrainingDivergedError, run_training

    class NaNTeacher(nn.Module):
        embedding_size = 32

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            e = x.float().mean(dim=(2, 3)).repeat(1, 11)[:, :32]
            return e * float("nan") if self.calls > 3 else e

    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml", [
        f"data.path={_tiny_data(tmp)}", "runtime.device=cuda", "kd.weight=1", "teacher.path=unused.pt",
        "runtime.log_every=3", "runtime.checkpoint_every=100", "runtime.threads=null"])
    try:
        run_training(cfg, tmp / "run_nan", teacher_module=NaNTeacher().to(dev))
    except TrainingDivergedError as exc:
        assert "4..6" in str(exc), f"unexpected message: {exc}"
        return {"message": str(exc)[:200]}
    raise AssertionError("the NaN loss was not detected")


@check
def compile_backbone(dev, tmp):
    if ARGS.no_compile:
        return "SKIP: --no-compile"
    import torch

    step, net, *_ = _tiny_step(dev)
    net.backbone.compile()
    t0 = time.perf_counter()
    for s in range(3):
        x, y = _batch(seed=s)
        r = step(x, y, s)
    torch.cuda.synchronize(dev)
    loss = float(r.loss)
    assert loss == loss, "compiled step gave NaN"
    keys = list(net.backbone.state_dict())
    assert not any(k.startswith("_orig_mod") for k in keys), "state-dict keys changed by compile"
    return {"seconds_first_3_steps": time.perf_counter() - t0, "loss": loss}


ARGS = argparse.Namespace(no_compile=False)


def main(argv=None) -> int:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu_check.json)")
    ARGS = ap.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as td:
        for fn in CHECKS:
            name = fn.__name__
            if not cuda:
                results[name] = {"status": "SKIP", "detail": "no CUDA device"}
            else:
                t0 = time.perf_counter()
                try:
                    detail = fn(torch.device(ARGS.device), Path(td))
                    status = "SKIP" if isinstance(detail, str) and detail.startswith("SKIP") else "PASS"
                except Exception as exc:  # reported as FAIL with its traceback; the other checks still run
                    status, detail = "FAIL", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
                results[name] = {"status": status, "detail": detail, "seconds": round(time.perf_counter() - t0, 2)}
            r = results[name]
            print(f"{r['status']:<4s}  {name:<34s} {json.dumps(r['detail'], default=str)[:160]}", flush=True)
    doc = {"benchmark": "gpu_check", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "cuda": cuda,
           "device_name": torch.cuda.get_device_name(0) if cuda else None, "torch": torch.__version__,
           "checks": results}
    from maskinv.utils.io import atomic_write_json

    out = Path(ARGS.out) if ARGS.out else ROOT / "benchmarks" / "results" / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, doc)
    n_fail = sum(r["status"] == "FAIL" for r in results.values())
    n_skip = sum(r["status"] == "SKIP" for r in results.values())
    print(f"{len(results) - n_fail - n_skip} passed, {n_fail} failed, {n_skip} skipped"
          + ("" if cuda else " (no CUDA device: nothing here can run on this machine)") + f" -> {out}")
    return 1 if n_fail else 0


if __name__ == "__main__":
    raise SystemExit(main())
