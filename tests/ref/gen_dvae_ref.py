#!/usr/bin/env python3
"""gen_dvae_ref.py: PyTorch reference vectors for the C dVAE tests, from OpenAI's own dall_e
modules filled with the deterministic test fill (tests/ref/testfill.py), written to tests/data/.

    python3 tests/ref/gen_dvae_ref.py        (needs torch, numpy, dall_e; under a minute)

Model: the official Encoder/Decoder at a preset; with n_pool = p < 3 the encoder's pools after
groups p+1..3 and the decoder's upsamples after groups 1..3-p are nn.Identity (state-dict keys
unchanged). Tensor t of the encoder's state_dict() gets fill seed 1000+t, of the decoder 2000+t.
S = image side, G = S >> n_pool, V = vocab; every tensor is float32, NCHW, flat in C order.
A value written "a + b*u (seed s)" is testfill.uniform(s, n, a, a+b) = C fill_uniform(.., s, a, a+b).

dvae_fwd_<cfg>.safetensors, cfg in tiny (B=2), mid, small, paper (B=1):
  input x = testfill.image((B,3,S,S)) (seed 3000); input codes = testfill.codes(B*G*G, V) (4000).
  "enc.logits" (B,V,G,G)      encoder(x)
  "dec.out_codes" (B,6,S,S)   decoder(one_hot(codes) as (B,V,G,G))
  "dec.out_soft" (B,6,S,S)    decoder(softmax(logits, dim=1))            (tiny and mid only)
  "codes" (B,G*G)             argmax of logits over V, raster order, as float
  "codes.margin" (B,G*G)      top-1 minus top-2 logit: the fill's logits are bias-dominated and
                              a few positions are near-ties (paper: min ~3e-6), so a C test
                              should accept either code where the margin is below its tolerance
  "dec.codes" (B,G*G)         the input codes, as float
  small and paper store "<name>.sample" = full.flatten()[::stride] for enc.logits and
  dec.out_codes instead of the full tensor; metadata "<name>.stride", "<name>.shape" (JSON).
  Metadata "<name>.maxabs" = max |value| of every full tensor (to scale the C test's error).

dvae_train_tiny.safetensors: tiny, B=2, tau 0.5, beta 2.0, Gumbel noise testfill.gumbel
  (B,V,G,G) (seed 5000). Loss as in dvae_loss below. "loss", "rec", "kl" (1,);
  "grad.<param>" for every "encoder.*"/"decoder.*" parameter; "step1.<param>" = the parameter
  after one AdamW step (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-4 on ".w" only).
  With the fill, decoder group_4.block_1.res_path.conv_3 (2 channels) is negative everywhere, so
  relu_4 blocks every gradient and 7 tensors of that res_path (conv_1..3, conv_4.w) get exactly 0.

adamw_ref.safetensors: n=1000; "p0" = -1+2u (seed 6000), "g1".."g3" = -1+2u (seeds 6001..6003);
  torch.optim.AdamW lr 1e-2, betas (0.9, 0.999), eps 1e-8: "p1".."p3" with weight decay 0.1
  after steps 1..3 (gradient g_k at step k), "p3_nodecay" with weight decay 0.

dvae_ops_ref.safetensors: the loss pieces alone (inputs included).
  logit-Laplace: "ll.x" = testfill.image((2,3,16,16)), "ll.mu" = -3+6u (seed 7002),
    "ll.lnb" = -1+2u (seed 7003), all (2,3,16,16); "ll.nll_sum" (1,) = sum of the per-value nll;
    "ll.grad_mu", "ll.grad_lnb" = its gradients.
  Gumbel softmax: "gs.logits" (2,32,4,4) = -3+6u (seed 7001), "gs.g" = testfill.gumbel((2,32,4,4)),
    tau 0.5: "gs.y" = softmax((logits+g)/tau, dim=1); "gs.r" = -1+2u (seed 7000), same shape;
    "gs.f" (1,) = sum(r*y); "gs.grad_logits" = d f / d logits.
  KL to the uniform prior on the same logits: "kl.sum" (1,) = sum over the 2*4*4 positions of
    sum_k q_k ln q_k + ln 32, q = softmax(logits, dim=1); "kl.grad_logits" = its gradient.
"""
import json
import math
import os
import sys

import attr
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from dall_e import Decoder, Encoder

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import testfill  # noqa: E402
from convert_openai_dvae import config_json, write_safetensors  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data")
BUDGET = 1_500_000  # bytes, all files together

PRESETS = {
    "paper": dict(n_hid=256, n_blk_per_group=2, vocab_size=8192, n_init=128, image_size=256, n_pool=3),
    "small": dict(n_hid=64, n_blk_per_group=1, vocab_size=512, n_init=64, image_size=64, n_pool=2),
    "tiny": dict(n_hid=8, n_blk_per_group=2, vocab_size=32, n_init=8, image_size=16, n_pool=2),
    "mid": dict(n_hid=64, n_blk_per_group=2, vocab_size=512, n_init=128, image_size=32, n_pool=3),
}
SAMPLE_MAX = 8192  # floats per strided sample: small enough to commit, enough to cover the tensor


# ---------------------------------------------------------------------------------------------
# The model and the loss, shared with bench/dvae_torch.py
def build_dvae(cfg: dict):
    """Official Encoder and Decoder for CFG (official init), with our n_pool generalisation."""
    was = attr.get_run_validators()
    attr.set_run_validators(False)  # tiny configs break the official n_hid>=64, vocab>=512
    try:
        enc = Encoder(n_hid=cfg["n_hid"], n_blk_per_group=cfg["n_blk_per_group"], vocab_size=cfg["vocab_size"])
        dec = Decoder(n_init=cfg["n_init"], n_hid=cfg["n_hid"], n_blk_per_group=cfg["n_blk_per_group"],
                      vocab_size=cfg["vocab_size"])
    finally:
        attr.set_run_validators(was)
    p = cfg["n_pool"]
    for g in range(p + 1, 4):
        setattr(getattr(enc.blocks, f"group_{g}"), "pool", nn.Identity())
    for g in range(1, 4 - p):
        setattr(getattr(dec.blocks, f"group_{g}"), "upsample", nn.Identity())
    return enc, dec


def apply_test_fill(enc: nn.Module, dec: nn.Module) -> None:
    with torch.no_grad():
        for module, seed0 in ((enc, testfill.SEED_ENCODER), (dec, testfill.SEED_DECODER)):
            fill = testfill.fill_state_dict(module.state_dict(), seed0)
            for name, p in module.named_parameters():
                p.copy_(torch.from_numpy(fill[name]))


def logit_laplace_nll(x: torch.Tensor, mu: torch.Tensor, lnb: torch.Tensor) -> torch.Tensor:
    """-ln of the logit-Laplace density, per value (SPEC §2); x in (0, 1)."""
    lx, l1x = torch.log(x), torch.log(1 - x)
    return math.log(2.0) + lnb + lx + l1x + torch.abs(lx - l1x - mu) * torch.exp(-lnb)


def kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || uniform) per position, over dim 1: sum_k q ln q + ln V."""
    logq = F.log_softmax(logits, dim=1)
    return (logq.exp() * logq).sum(dim=1) + math.log(logits.shape[1])


def dvae_loss(enc: nn.Module, dec: nn.Module, x: torch.Tensor, g: torch.Tensor, tau: float, beta: float):
    """One dVAE training loss (the paper's normalisation, what the C computes).
    x (B,3,S,S) mapped pixels; g (B,V,G,G) Gumbel noise. Returns (loss, rec, kl) where
    rec = sum(nll)/(B*3*S*S), kl = sum(KL)/(B*G*G) and loss = rec + beta*sum(KL)/(B*3*S*S)."""
    logits = enc(x)
    z = torch.softmax((logits + g) / tau, dim=1)
    stats = dec(z)
    nll = logit_laplace_nll(x, stats[:, :3], stats[:, 3:6])
    kl = kl_uniform(logits)
    n = x.numel()
    rec = nll.sum() / n
    return rec + beta * kl.sum() / n, rec, kl.sum() / kl.numel()


def make_adamw(enc: nn.Module, dec: nn.Module, lr: float, weight_decay: float = 1e-4):
    """AdamW with decay on the conv weights (".w") only."""
    params = list(enc.named_parameters()) + list(dec.named_parameters())
    groups = [{"params": [p for n, p in params if n.endswith(".w")], "weight_decay": weight_decay},
              {"params": [p for n, p in params if n.endswith(".b")], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


# ---------------------------------------------------------------------------------------------
# Reference files
def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def _scalar(t: torch.Tensor) -> np.ndarray:
    return _np(t).reshape(1)


def _meta(**kv) -> dict:
    return {"dalle.kind": "ref", "ref.generator": "tests/ref/gen_dvae_ref.py",
            "ref.torch": torch.__version__, **{k: str(v) for k, v in kv.items()}}


def _sample_stride(numel: int) -> int:
    """The smallest prime >= numel / SAMPLE_MAX: not a power of two, so the samples walk across
    channels and positions instead of repeating one position of every channel."""
    s = max(2, -(-numel // SAMPLE_MAX))
    while any(s % d == 0 for d in range(2, int(s ** 0.5) + 1)):
        s += 1
    return s


def forward_ref(name: str, batch: int):
    cfg = PRESETS[name]
    S, V = cfg["image_size"], cfg["vocab_size"]
    G = S >> cfg["n_pool"]
    enc, dec = build_dvae(cfg)
    apply_test_fill(enc, dec)
    x = torch.from_numpy(testfill.image((batch, 3, S, S)))
    codes_in = torch.from_numpy(testfill.codes(batch * G * G, V)).view(batch, G, G)
    with torch.no_grad():
        logits = enc(x)
        full = {"enc.logits": logits,
                "dec.out_codes": dec(F.one_hot(codes_in, V).permute(0, 3, 1, 2).float())}
        sampled = name in ("small", "paper")
        if not sampled:
            full["dec.out_soft"] = dec(torch.softmax(logits, dim=1))
    meta = _meta(**{"dvae.config": config_json(cfg), "ref.batch": batch})
    tensors = {}
    for key, t in full.items():
        meta[f"{key}.maxabs"] = repr(float(t.abs().max()))
        if sampled:
            stride = _sample_stride(t.numel())
            tensors[f"{key}.sample"] = _np(t).ravel()[::stride]
            meta[f"{key}.stride"] = stride
            meta[f"{key}.shape"] = json.dumps(list(t.shape))
        else:
            tensors[key] = _np(t)
    tensors["codes"] = _np(logits.argmax(dim=1).view(batch, G * G))
    top2 = logits.topk(2, dim=1).values
    tensors["codes.margin"] = _np((top2[:, 0] - top2[:, 1]).reshape(batch, G * G))
    tensors["dec.codes"] = _np(codes_in.view(batch, G * G))
    return tensors, meta


def train_ref():
    cfg, batch, tau, beta, lr, wd = PRESETS["tiny"], 2, 0.5, 2.0, 1e-3, 1e-4
    S, V = cfg["image_size"], cfg["vocab_size"]
    G = S >> cfg["n_pool"]
    enc, dec = build_dvae(cfg)
    apply_test_fill(enc, dec)
    x = torch.from_numpy(testfill.image((batch, 3, S, S)))
    g = torch.from_numpy(testfill.gumbel((batch, V, G, G)))
    loss, rec, kl = dvae_loss(enc, dec, x, g, tau, beta)
    loss.backward()
    params = [(f"encoder.{n}", p) for n, p in enc.named_parameters()] + \
             [(f"decoder.{n}", p) for n, p in dec.named_parameters()]
    tensors = {"loss": _scalar(loss), "rec": _scalar(rec), "kl": _scalar(kl)}
    tensors.update({f"grad.{n}": _np(p.grad) for n, p in params})
    make_adamw(enc, dec, lr, wd).step()
    tensors.update({f"step1.{n}": _np(p) for n, p in params})
    meta = _meta(**{"dvae.config": config_json(cfg), "ref.batch": batch, "ref.tau": tau, "ref.beta": beta,
                    "ref.lr": lr, "ref.weight_decay": wd})
    return tensors, meta


def _adamw_steps(p0: np.ndarray, grads: list, lr: float, wd: float) -> list:
    """The parameter after each AdamW step, gradient grads[k] at step k+1."""
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.AdamW([p], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    out = []
    for g in grads:
        p.grad = torch.from_numpy(g)
        opt.step()
        out.append(_np(p).copy())
    return out


def adamw_ref():
    n, lr, wd = 1000, 1e-2, 0.1
    p0 = testfill.uniform(6000, n, -1, 1)
    grads = [testfill.uniform(6000 + k, n, -1, 1) for k in (1, 2, 3)]
    p1, p2, p3 = _adamw_steps(p0, grads, lr, wd)
    tensors = {"p0": p0, "g1": grads[0], "g2": grads[1], "g3": grads[2], "p1": p1, "p2": p2, "p3": p3,
               "p3_nodecay": _adamw_steps(p0, grads, lr, 0.0)[-1]}
    return tensors, _meta(**{"ref.lr": lr, "ref.weight_decay": wd, "ref.beta1": 0.9, "ref.beta2": 0.999,
                             "ref.eps": 1e-8})


def ops_ref():
    shape_x, shape_l, tau = (2, 3, 16, 16), (2, 32, 4, 4), 0.5
    n_x, n_l = int(np.prod(shape_x)), int(np.prod(shape_l))
    x = torch.from_numpy(testfill.image(shape_x))
    mu = torch.from_numpy(testfill.uniform(7002, n_x, -3, 3).reshape(shape_x)).requires_grad_()
    lnb = torch.from_numpy(testfill.uniform(7003, n_x, -1, 1).reshape(shape_x)).requires_grad_()
    nll = logit_laplace_nll(x, mu, lnb).sum()
    nll.backward()

    logits = torch.from_numpy(testfill.uniform(7001, n_l, -3, 3).reshape(shape_l)).requires_grad_()
    g = torch.from_numpy(testfill.gumbel(shape_l))
    r = torch.from_numpy(testfill.uniform(7000, n_l, -1, 1).reshape(shape_l))
    y = torch.softmax((logits + g) / tau, dim=1)
    f = (r * y).sum()
    (grad_gs,) = torch.autograd.grad(f, logits)
    kl = kl_uniform(logits).sum()
    (grad_kl,) = torch.autograd.grad(kl, logits)
    tensors = {"ll.x": _np(x), "ll.mu": _np(mu), "ll.lnb": _np(lnb), "ll.nll_sum": _scalar(nll),
               "ll.grad_mu": _np(mu.grad), "ll.grad_lnb": _np(lnb.grad),
               "gs.logits": _np(logits), "gs.g": _np(g), "gs.y": _np(y), "gs.r": _np(r),
               "gs.f": _scalar(f), "gs.grad_logits": _np(grad_gs),
               "kl.sum": _scalar(kl), "kl.grad_logits": _np(grad_kl)}
    return tensors, _meta(**{"ref.tau": tau})


def main() -> int:
    os.makedirs(DATA, exist_ok=True)
    jobs = [(f"dvae_fwd_{n}.safetensors", lambda n=n, b=b: forward_ref(n, b))
            for n, b in (("tiny", 2), ("mid", 1), ("small", 1), ("paper", 1))]
    jobs += [("dvae_train_tiny.safetensors", train_ref), ("adamw_ref.safetensors", adamw_ref),
             ("dvae_ops_ref.safetensors", ops_ref)]
    total = 0
    print(f"{'file':36s} {'tensors':>7s} {'floats':>9s} {'bytes':>9s}")
    for fname, job in jobs:
        tensors, meta = job()
        path = os.path.join(DATA, fname)
        write_safetensors(path, tensors, meta)
        size = os.path.getsize(path)
        total += size
        print(f"{fname:36s} {len(tensors):7d} {sum(a.size for a in tensors.values()):9d} {size:9d}")
    print(f"{'total':36s} {'':7s} {'':9s} {total:9d}  (budget {BUDGET})")
    if total >= BUDGET:
        print("gen_dvae_ref: reference files exceed the commit-size budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
