#!/usr/bin/env python3
"""clip_ref.py: PyTorch reference vectors for tests/test_clip.c: the contrastive model of
src/clip/clip.h built in torch (float64) from the deterministic test fill (tests/ref/testfill.py),
written to tests/data/clip_tiny.safetensors.

    python3 tests/ref/clip_ref.py        (needs torch, numpy; a second)

Config (clip_config field order): n_layer 2, n_head 2, d_head 8 (d 16), mlp_mult 4 (f 64),
embed E 16, text_len L 6, text_vocab 40 (ids < 40 + L: the BPE ids and the per-position padding
ids), grid G 4 (N 16), image_vocab Vi 24; batch B = 4.

The model (clip.h): each tower is token + position embedding, n_layer pre-LN blocks (ln_1, qkv
with bias, softmax(q k^T / sqrt(HS)) v, proj; ln_2, mlp.fc, GELU (tanh form), mlp.proj), a final
LayerNorm (eps 1e-5); the text tower is causal and takes position L-1, the image tower attends
all N positions and takes their mean; the feature times `projection` (d, E), L2-normalised.
logits = min(exp(logit_scale), 100) * T I^T; loss = (CE(logits, arange) + CE(logits^T,
arange)) / 2, each the mean over B.

Weights: tensor t (0-based, canonical order: CANONICAL below, the C model's table) gets fill seed
20000 + t, values in C order of its shape:
  ln_1.weight, ln_2.weight, ln_final.weight       uniform(seed, n, 0.9, 1.1)
  every *.bias                                    uniform(seed, n, -0.1, 0.1)
  token_embedding, positional_embedding           uniform(seed, n, -0.5, 0.5)
  projection (d, E)                               uniform(seed, n, -s, s), s = (float)(1/sqrt(d))
  logit_scale (1,)                                uniform(seed, 1, 1.5, 2.5)
  every other weight (Linear (out, in))           testfill.weight: s = (float)(1/sqrt(in))
Inputs: text ids floor(fill_u(21000, i) * (text_vocab + L)), image codes floor(fill_u(21001, i)
* Vi), i < B*L and B*N.

clip_tiny.safetensors, float32 (computed in float64, rounded once):
  "in.text" (B,L), "in.codes" (B,N)   the inputs, as float
  "text_emb", "image_emb" (B,E)      unit embeddings
  "logits" (B,B), "loss" (1,)
  "loss_clamped" (1,)                the loss with logit_scale = 5 (exp 148 clamped at 100;
                                     its gradient is then 0)
  "neg.logits" (NT,B), "neg.loss", "neg.grad.<name>"
                                     the same with NT = 6 captions (text ids of the fill, i <
                                     NT*L: the first B as above, then 2 more) for the B images:
                                     captions B.. are extra negatives (clip_step's NT), the loss
                                     (CE(logits[:B], arange) + CE(logits^T, arange)) / 2
  "grad.<name>"                      d loss / d tensor, every tensor, its shape
Metadata: "clip.config" (JSON), "ref.batch", "ref.torch", "ref.seeds".
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import testfill  # noqa: E402
from convert_openai_dvae import write_safetensors  # noqa: E402
from prior_model import Block  # noqa: E402  (the prior's pre-LN block: the same tensors and ops)

CONFIG = {"n_layer": 2, "n_head": 2, "d_head": 8, "mlp_mult": 4, "embed": 16, "text_len": 6, "text_vocab": 40,
          "grid": 4, "image_vocab": 24}
BATCH = 4
NT_NEG = 6  # captions of the hard-negative case: the B paired ones and 2 extra negatives
SEED_WEIGHTS, SEED_TEXT, SEED_CODES = 20000, 21000, 21001
BUDGET = 300_000  # bytes
BLOCK = ("ln_1.weight", "ln_1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
         "ln_2.weight", "ln_2.bias", "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias")


def canonical(cfg: dict) -> list:
    """The tensor names in the C model's order."""
    names = []
    for tower in ("text", "image"):
        names += [f"{tower}.token_embedding", f"{tower}.positional_embedding"]
        names += [f"{tower}.blocks.{l}.{b}" for l in range(cfg["n_layer"]) for b in BLOCK]
        names += [f"{tower}.ln_final.weight", f"{tower}.ln_final.bias", f"{tower}.projection"]
    return names + ["logit_scale"]


class Tower(nn.Module):
    def __init__(self, cfg: dict, V: int, T: int, causal: bool):
        super().__init__()
        d = cfg["n_head"] * cfg["d_head"]
        self.causal = causal
        self.mask = torch.ones(T, T, dtype=torch.bool)  # True: query (row) may attend key (column)
        if causal:
            self.mask = self.mask.tril()
        self.token_embedding = nn.Parameter(torch.zeros(V, d))
        self.positional_embedding = nn.Parameter(torch.zeros(T, d))
        self.blocks = nn.ModuleList(Block(d, cfg["n_head"], cfg["mlp_mult"] * d) for _ in range(cfg["n_layer"]))
        self.ln_final = nn.LayerNorm(d, eps=1e-5)
        self.projection = nn.Parameter(torch.zeros(d, cfg["embed"]))

    def forward(self, ids):
        x = self.token_embedding[ids] + self.positional_embedding
        for b in self.blocks:
            x = b(x, self.mask, "math")
        x = self.ln_final(x)
        feat = x[:, -1] if self.causal else x.mean(1)
        return F.normalize(feat @ self.projection, dim=-1)


class Clip(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        L, N = cfg["text_len"], cfg["grid"] ** 2
        self.text = Tower(cfg, cfg["text_vocab"] + L, L, causal=True)
        self.image = Tower(cfg, cfg["image_vocab"], N, causal=False)
        self.logit_scale = nn.Parameter(torch.zeros(1))

    def forward(self, text, codes):
        """text (NT, L), codes (B, N), NT >= B: captions B.. are extra negatives (NegCLIP)."""
        t, i = self.text(text), self.image(codes)
        logits = self.logit_scale.exp().clamp(max=100) * t @ i.T  # (NT, B)
        B = len(codes)
        y = torch.arange(B)
        return t, i, logits, (F.cross_entropy(logits[:B], y) + F.cross_entropy(logits.T, y)) / 2


def fill_value(name: str, shape: tuple, seed: int) -> np.ndarray:
    """The test fill of one tensor (table in the docstring)."""
    n = int(np.prod(shape))
    if name.endswith(("ln_1.weight", "ln_2.weight", "ln_final.weight")):
        return testfill.uniform(seed, n, 0.9, 1.1).reshape(shape)
    if name.endswith(".bias"):
        return testfill.uniform(seed, n, -0.1, 0.1).reshape(shape)
    if name.endswith("embedding"):
        return testfill.uniform(seed, n, -0.5, 0.5).reshape(shape)
    if name.endswith("projection"):
        s = float(np.float32(1.0 / np.sqrt(float(shape[0]))))
        return testfill.uniform(seed, n, -s, s).reshape(shape)
    if name == "logit_scale":
        return testfill.uniform(seed, n, 1.5, 2.5).reshape(shape)
    return testfill.weight(seed, shape)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def main() -> int:
    cfg, B = CONFIG, BATCH
    L, N = cfg["text_len"], cfg["grid"] ** 2
    model = Clip(cfg)
    params = dict(model.named_parameters())
    names = canonical(cfg)
    assert sorted(names) == sorted(params), set(names) ^ set(params)
    with torch.no_grad():
        for t, name in enumerate(names):
            params[name].copy_(torch.from_numpy(fill_value(name, tuple(params[name].shape), SEED_WEIGHTS + t)))
    model.double()
    text = torch.from_numpy(np.floor(testfill.fill_u(SEED_TEXT, B * L) * (cfg["text_vocab"] + L)).astype(np.int64))
    codes = torch.from_numpy(np.floor(testfill.fill_u(SEED_CODES, B * N) * cfg["image_vocab"]).astype(np.int64))
    text, codes = text.view(B, L), codes.view(B, N)
    t, i, logits, loss = model(text, codes)
    loss.backward()
    tensors = {"in.text": _np(text.double()), "in.codes": _np(codes.double()), "text_emb": _np(t),
               "image_emb": _np(i), "logits": _np(logits), "loss": _np(loss).reshape(1)}
    tensors.update({f"grad.{n}": _np(params[n].grad) for n in names})
    # Hard negatives: NT_NEG captions (the first B as above, then more of the fill) with the B images.
    model.zero_grad()
    text_neg = np.floor(testfill.fill_u(SEED_TEXT, NT_NEG * L) * (cfg["text_vocab"] + L)).astype(np.int64)
    _, _, logits_neg, loss_neg = model(torch.from_numpy(text_neg).view(NT_NEG, L), codes)
    loss_neg.backward()
    tensors.update({"neg.logits": _np(logits_neg), "neg.loss": _np(loss_neg).reshape(1)})
    tensors.update({f"neg.grad.{n}": _np(params[n].grad) for n in names})
    with torch.no_grad():
        model.logit_scale.fill_(5.0)
        tensors["loss_clamped"] = _np(model(text, codes)[3]).reshape(1)
    meta = {"dalle.kind": "ref", "ref.generator": "tests/ref/clip_ref.py", "ref.torch": torch.__version__,
            "clip.config": json.dumps(cfg), "ref.batch": str(B),
            "ref.seeds": json.dumps({"weights": SEED_WEIGHTS, "text": SEED_TEXT, "codes": SEED_CODES})}
    path = os.path.join(ROOT, "tests", "data", "clip_tiny.safetensors")
    write_safetensors(path, tensors, meta)
    size = os.path.getsize(path)
    pad = int((text >= cfg["text_vocab"]).sum())
    print(f"clip_tiny.safetensors: {len(tensors)} tensors, {size} bytes (budget {BUDGET}); loss "
          f"{float(loss.detach()):.6f}, clamped {float(tensors['loss_clamped'][0]):.6f}; {pad} padding ids in the text")
    return 0 if size < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
