#!/usr/bin/env python3
"""dvae_torch.py: the PyTorch side of the dVAE benchmark. The C benchmark runs

    python3 bench/dvae_torch.py --threads N --mode infer|train --preset paper|small --batch B --iters K

and reads the ONE line of JSON this prints, to report its own speed as a ratio to PyTorch's.
The models are OpenAI's own dall_e Encoder/Decoder (CPU, float32), built as in
tests/ref/gen_dvae_ref.py (n_pool generalisation included); weights are the official random
init, which does not change the timing.
  infer: encode (argmax codes) and decode (one-hot, sigmoid of mu, unmap), as in the official
         usage notebook, under no_grad.
  train: one full step: encoder, Gumbel softmax with torch's own noise, decoder on the soft
         codes, logit-Laplace + KL loss, backward, AdamW (decay on ".w" only).
One untimed warm-up iteration, then K timed ones; the JSON reports the best ("stat": "best").
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from dall_e import map_pixels, unmap_pixels

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "ref"))
from gen_dvae_ref import PRESETS, build_dvae, dvae_loss, make_adamw  # noqa: E402

# Training hyper-parameters: the paper's end-of-schedule values; they do not affect the timing.
TAU, BETA, LR = 1 / 16, 6.6, 1e-4


def infer_step(enc, dec, x: torch.Tensor, vocab: int):
    def step():
        with torch.no_grad():
            z = enc(x).argmax(dim=1)
            z1h = F.one_hot(z, num_classes=vocab).permute(0, 3, 1, 2).float()
            return unmap_pixels(torch.sigmoid(dec(z1h)[:, :3].float()))
    return step


def train_step(enc, dec, x: torch.Tensor, noise_shape: tuple):
    opt = make_adamw(enc, dec, LR)

    def step():
        # Standard Gumbel noise drawn the way F.gumbel_softmax draws it.
        g = -torch.empty(noise_shape).exponential_().log()
        loss, _, _ = dvae_loss(enc, dec, x, g, TAU, BETA)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> int:
    ap = argparse.ArgumentParser(description="PyTorch dVAE benchmark (one JSON line).")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--mode", choices=("infer", "train"), required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    if args.threads < 1 or args.batch < 1 or args.iters < 1:
        ap.error("--threads, --batch and --iters must be >= 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = PRESETS[args.preset]
    S, V = cfg["image_size"], cfg["vocab_size"]
    G = S >> cfg["n_pool"]
    enc, dec = build_dvae(cfg)
    x = map_pixels(torch.rand(args.batch, 3, S, S))
    if args.mode == "infer":
        enc.eval()
        dec.eval()
        step = infer_step(enc, dec, x, V)
    else:
        step = train_step(enc, dec, x, (args.batch, V, G, G))

    step()  # warm-up: allocator, oneDNN primitive caches, AdamW state
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(json.dumps({"mode": args.mode, "preset": args.preset, "batch": args.batch, "threads": args.threads,
                      "images_per_s": args.batch / best, "seconds_per_iter": best, "stat": "best",
                      "iters": args.iters, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
