#!/usr/bin/env python3
"""dvae_torch_gpu.py: the PyTorch side of the dVAE's GPU benchmark (docs/cuda.md "Benchmarks").

    python3 bench/gpu/dvae_torch_gpu.py MODE [--preset paper] [--batch 8] [--steps 5] [--seconds 20]

Training images/s of OpenAI's own dall_e Encoder and Decoder (the official architecture; the
`paper` preset: 256x256 images, n_hid 256, 2 blocks per group, 8192 codes on a 32x32 grid), built
by tests/ref/gen_dvae_ref.py's build_dvae with the official random initialisation. One step, as
bench/dvae_torch.py and the C trainer: encoder, Gumbel softmax with fresh noise drawn on the GPU,
decoder on the soft codes, logit-Laplace + KL loss (dvae_loss), backward, AdamW (make_adamw:
decay on ".w" only). The official Conv2d casts its input and weights to fp16 on a GPU, and back
to fp32 otherwise (a cast kernel per convolution under autocast); its forward is replaced by the
plain F.conv2d it wraps, so that MODE alone decides the arithmetic, at PyTorch's best speed:
    fp32   float32, TF32 off
    tf32   float32 storage, TF32 tensor-core convolutions and matmuls
    bf16   autocast to bfloat16, channels-last tensors (fp32 master weights and optimizer)
Untimed warm-up steps (2: cuDNN's algorithm search), then timed steps until STEPS or SECONDS;
best and median reported. --device cpu runs the script on the CPU (a smoke test, tiny preset).
Prints a readable line and ONE line "BENCH {json}" for bench/gpu/report.py; on a failure (out of
memory) the line has "error" and the process exits 1. Needs the dall_e package (device-pack
carries it: docs/cuda.md).
"""
import argparse
import json
import os
import statistics
import sys
import time

import dall_e.utils
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
from gen_dvae_ref import PRESETS, build_dvae, dvae_loss, make_adamw  # noqa: E402

TAU, BETA, LR = 1 / 16, 6.6, 1e-4  # the paper's end-of-schedule values; they do not change the timing


def plain_conv_forward(self, x: torch.Tensor) -> torch.Tensor:
    """dall_e.utils.Conv2d.forward without its dtype casts: same-padded convolution."""
    return F.conv2d(x, self.w, self.b, padding=(self.kw - 1) // 2)


dall_e.utils.Conv2d.forward = plain_conv_forward


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("fp32", "tf32", "bf16"))
    ap.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    a = ap.parse_args()
    dev = a.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("dvae_torch_gpu: no GPU: skipped")
        return 0
    tf32 = a.mode != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    cfg = PRESETS[a.preset]
    S, V, G = cfg["image_size"], cfg["vocab_size"], cfg["image_size"] >> cfg["n_pool"]
    fmt = torch.channels_last if a.mode == "bf16" else torch.contiguous_format
    rec = {"bench": "dvae_train", "mode": a.mode + ("-channels-last" if a.mode == "bf16" else ""),
           "preset": a.preset, "batch": a.batch, "image_size": S, "impl": "pytorch", "torch": torch.__version__}

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    try:
        enc, dec = build_dvae(cfg)
        enc, dec = enc.to(dev, memory_format=fmt), dec.to(dev, memory_format=fmt)
        x = (0.1 + 0.8 * torch.rand(a.batch, 3, S, S, device=dev)).contiguous(memory_format=fmt)  # mapped pixels
        opt = make_adamw(enc, dec, LR)

        def step():
            g = -torch.empty(a.batch, V, G, G, device=dev).exponential_().log()
            if a.mode == "bf16":
                with torch.autocast(dev, dtype=torch.bfloat16):
                    loss, _, _ = dvae_loss(enc, dec, x, g, TAU, BETA)
            else:
                loss, _, _ = dvae_loss(enc, dec, x, g, TAU, BETA)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(2):
            step()
        sync()
        times, start = [], time.perf_counter()
        while len(times) < a.steps and (not times or time.perf_counter() - start < a.seconds):
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
    except Exception as e:  # out of memory: reported, not hidden
        rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        print("BENCH " + json.dumps(rec), flush=True)
        return 1
    best, med = min(times), statistics.median(times)
    print(f"dvae train, PyTorch {rec['mode']}: {a.preset} {S}x{S}, batch {a.batch}: {a.batch / best:.1f} images/s best "
          f"({best * 1e3:.1f} ms/step; median {med * 1e3:.1f} ms over {len(times)} steps)")
    rec.update(steps=len(times), images_per_s=a.batch / best, images_per_s_median=a.batch / med, s_per_step=best)
    if dev == "cuda":
        rec.update(device=torch.cuda.get_device_name(),
                   peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
    print("BENCH " + json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
