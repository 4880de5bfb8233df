#!/usr/bin/env python3
"""prior_torch.py: the PyTorch side of the prior benchmark.

    python3 bench/prior_torch.py [THREADS [PRESET [BATCH [STEPS]]]]     (defaults 1 small 4 3)

prints ONE line of JSON. The model is tests/ref/prior_model.py's Prior (docs/prior.md: dense
(T, T) boolean masks through torch's scaled_dot_product_attention, CPU, float32) with PyTorch's
default initialisation (the timing does not depend on the values); inputs are uniform random
text ids (< Vt + L) and image codes (< Vi), torch.manual_seed(0).
  train_tok_s   B*T / seconds of one full training step: forward, loss (1/8 text + 7/8 image
                CE), backward, AdamW (lr 1e-4, betas (0.9, 0.96), weight decay 0.045 on every
                parameter); one untimed warm-up step, then STEPS timed ones, the best reported
                ("train_stat": "best"; the median is reported too).
  sample_tok_s  B*N / seconds of the KV-cache sampler generating all N image tokens of B
                captions (text prefix included; temperature 1, top_k 0 = no truncation); one
                untimed warm-up run of N/8 tokens, then one timed run.
  sample_ms_per_token_by_position
                mean milliseconds per generated token (one step for the whole batch) over each
                eighth of the image, in raster order: the dense cache attends all past
                positions, so the cost grows with the position.
"""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "ref"))
from prior_model import PRESETS, Prior  # noqa: E402

LR, BETAS, WEIGHT_DECAY = 1e-4, (0.9, 0.96), 0.045


def main(argv: list) -> int:
    usage = "usage: prior_torch.py [THREADS [PRESET [BATCH [STEPS]]]]  (PRESET: %s)" % ", ".join(sorted(PRESETS))
    try:
        threads = int(argv[0]) if len(argv) > 0 else 1
        preset = argv[1] if len(argv) > 1 else "small"
        batch = int(argv[2]) if len(argv) > 2 else 4
        steps = int(argv[3]) if len(argv) > 3 else 3
    except ValueError:
        print(usage, file=sys.stderr)
        return 2
    if len(argv) > 4 or preset not in PRESETS or min(threads, batch, steps) < 1:
        print(usage, file=sys.stderr)
        return 2

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = PRESETS[preset]
    model = Prior(cfg)
    L, N, T = model.L, model.N, model.T
    text = torch.randint(0, model.Vt_all, (batch, L))
    image = torch.randint(0, model.Vi, (batch, N))

    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)

    def train_step():
        loss, _, _ = model.loss(text, image)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_step()  # warm-up: allocator, AdamW state
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - t0)

    model.eval()
    model.sample(text, max(1, N // 8), 1.0, 0, seed=1)  # warm-up
    per_token = []
    t0 = time.perf_counter()
    codes = model.sample(text, N, 1.0, 0, seed=2, timings=per_token)
    sample_s = time.perf_counter() - t0
    assert codes.shape == (batch, N)
    eighths = [1e3 * statistics.fmean(per_token[e * N // 8:(e + 1) * N // 8]) for e in range(8) if N >= 8]

    best = min(times)
    print(json.dumps({
        "preset": preset, "threads": threads, "batch": batch, "steps": steps, "tokens_per_step": batch * T,
        "train_tok_s": batch * T / best, "train_s_per_step": best, "train_stat": "best",
        "train_tok_s_median": batch * T / statistics.median(times),
        "sample_tok_s": batch * N / sample_s, "sample_s": sample_s,
        "sample_ms_per_token_by_position": [round(v, 3) for v in eighths],
        "params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
