#!/usr/bin/env python3
"""prior_torch_gpu.py: the PyTorch side of the prior's GPU benchmarks (docs/cuda.md "Benchmarks").

    python3 bench/gpu/prior_torch_gpu.py train  CONFIG MODE [--batch 8] [--steps 5] [--seconds 20]
    python3 bench/gpu/prior_torch_gpu.py sample CONFIG MODE [--candidates 32]

CONFIG is a prior config JSON (bench/gpu/prior-350m.json: 353M parameters at the paper's layout,
256 text + 1024 image positions) or a preset of tests/ref/prior_model.py. The model is that
file's Prior: the same parameters, masks and loss as dalle.c, attention through
scaled_dot_product_attention with the dense (T, T) boolean mask of each layer; PyTorch's default
initialisation (timing does not depend on the values); uniform random text ids and image codes.

train: one step = forward, loss (1/8 text + 7/8 image cross-entropy), backward, AdamW (fused,
  lr 1e-4, betas (0.9, 0.96), weight decay 0.045 on every parameter). Untimed warm-up steps (1,
  or 3 under torch.compile), then timed steps until STEPS of them or SECONDS have passed; the
  best step and the median are reported. MODE:
    fp32          float32 throughout, TF32 off (PyTorch's default for matmuls)
    tf32          float32 storage, TF32 tensor-core matmuls and convolutions
    bf16          autocast to bfloat16 (fp32 master weights and optimizer), TF32 on
    bf16-compile  the same loss function under torch.compile (default mode)
sample: CANDIDATES images for one caption with Prior.sample (its dense KV cache, text prefix fed
  once, then one position per step for all candidates; temperature 1, no truncation); one
  untimed warm-up of 8 positions, then all N positions timed. MODE: fp32, tf32, or bf16 (the
  model, its cache and activations cast to bfloat16).

--device cpu runs the same code on the CPU (a smoke test of the script on a machine without a
GPU, tiny preset). Prints a few readable lines, then ONE line "BENCH {json}" for bench/gpu/report.py
("impl": "pytorch"), with "error" set instead of the figures when the run failed (out of memory,
torch.compile failing): the process then exits 1.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
from prior_model import CONFIG_KEYS, PRESETS, Prior  # noqa: E402

LR, BETAS, WEIGHT_DECAY = 1e-4, (0.9, 0.96), 0.045
DEV = "cuda"  # --device


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def load_config(spec: str) -> dict:
    if spec in PRESETS:
        return dict(PRESETS[spec])
    with open(spec) as f:
        cfg = json.load(f)
    return {k: int(cfg[k]) for k in CONFIG_KEYS}


def set_precision(mode: str) -> None:
    tf32 = mode != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def report(rec: dict) -> None:
    rec.update(impl="pytorch", torch=torch.__version__)
    if DEV == "cuda":
        rec.update(device=torch.cuda.get_device_name(),
                   peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
    print("BENCH " + json.dumps(rec), flush=True)


def timed(step, warmup: int, steps: int, seconds: float) -> list:
    for _ in range(warmup):
        step()
    sync()
    times, start = [], time.perf_counter()
    while len(times) < steps and (not times or time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def bench_train(cfg: dict, mode: str, batch: int, steps: int, seconds: float) -> dict:
    with torch.device(DEV):
        model = Prior(cfg)
    text = torch.randint(0, model.Vt_all, (batch, model.L), device=DEV)
    image = torch.randint(0, model.Vi, (batch, model.N), device=DEV)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, fused=DEV == "cuda")

    def loss_fn(t, i):
        if mode.startswith("bf16"):
            with torch.autocast(DEV, dtype=torch.bfloat16):
                return model.loss(t, i)[0]
        return model.loss(t, i)[0]

    compute = torch.compile(loss_fn) if mode.endswith("-compile") else loss_fn

    def step():
        loss = compute(text, image)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    times = timed(step, 3 if mode.endswith("-compile") else 1, steps, seconds)
    best, med = min(times), statistics.median(times)
    tokens = batch * model.T
    print(f"prior train, PyTorch {mode}: batch {batch} x T {model.T}: {tokens / best:.0f} tok/s best "
          f"({best * 1e3:.1f} ms/step; median {med * 1e3:.1f} ms over {len(times)} steps; "
          f"warm-up and all {time.perf_counter() - t0:.0f} s)")
    return {"bench": "prior_train", "mode": mode, "batch": batch, "T": model.T, "steps": len(times),
            "tokens_per_s": tokens / best, "tokens_per_s_median": tokens / med, "s_per_step": best,
            "params": sum(p.numel() for p in model.parameters())}


def bench_sample(cfg: dict, mode: str, cand: int) -> dict:
    with torch.device(DEV):
        model = Prior(cfg)
    if mode == "bf16":
        model = model.to(torch.bfloat16)
    model.eval()
    text = torch.randint(0, model.Vt_all, (1, model.L), device=DEV).repeat(cand, 1)
    model.sample(text, 8, 1.0, 0, seed=1)  # warm-up
    sync()
    t0 = time.perf_counter()
    codes = model.sample(text, model.N, 1.0, 0, seed=2)
    sync()
    s = time.perf_counter() - t0
    assert codes.shape == (cand, model.N)
    print(f"prior sample, PyTorch {mode}: {cand} candidates x {model.N} image tokens in {s:.2f} s: "
          f"{cand * model.N / s:.0f} image tok/s ({1e3 * s / model.N:.2f} ms per position)")
    return {"bench": "prior_sample", "mode": mode, "candidates": cand, "N": model.N, "seconds": s,
            "image_tokens_per_s": cand * model.N / s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("train", "sample"))
    ap.add_argument("config")
    ap.add_argument("mode", choices=("fp32", "tf32", "bf16", "bf16-compile"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    a = ap.parse_args()
    global DEV
    DEV = a.device
    if a.what == "sample" and a.mode == "bf16-compile":
        ap.error("sample: MODE is fp32, tf32 or bf16")
    if DEV == "cuda" and not torch.cuda.is_available():
        print("prior_torch_gpu: no GPU: skipped")
        return 0
    torch.manual_seed(0)
    set_precision(a.mode)
    cfg = load_config(a.config)
    try:
        rec = (bench_train(cfg, a.mode, a.batch, a.steps, a.seconds) if a.what == "train"
               else bench_sample(cfg, a.mode, a.candidates))
    except Exception as e:  # OOM, a torch.compile failure: reported, not hidden
        rec = {"bench": "prior_" + a.what, "mode": a.mode, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        report(rec)
        return 1
    report(rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
