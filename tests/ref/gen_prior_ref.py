#!/usr/bin/env python3
"""gen_prior_ref.py: PyTorch reference vectors for the C prior tests, from the dense-mask
reference model tests/ref/prior_model.py (docs/prior.md) filled with the deterministic test fill
(tests/ref/testfill.py), written to tests/data/.

    python3 tests/ref/gen_prior_ref.py        (needs torch, numpy; a few seconds)

Config `tiny` (n_layer 4, n_head 2, d_head 8 -> d 16, text_len L 6, text_vocab Vt 40,
grid G 4 -> N 16, image_vocab Vi 24, conv_kernel 3, mlp_mult 4), batch B = 2, T = L + N = 22.
Layers (0-based) 0 row, 1 column, 2 row, 3 conv.

Weights: tensor t (0-based, canonical state-dict order of docs/prior.md, 54 tensors for tiny)
gets fill seed 10000 + t, n = its element count, values in C order of its shape:
  | tensor                                          | value                                       |
  |-------------------------------------------------|---------------------------------------------|
  | ln_1.weight, ln_2.weight, ln_f.weight (LN gain) | uniform(seed, n, 0.9, 1.1)                  |
  | every *.bias (Linear biases, LayerNorm biases)  | uniform(seed, n, -0.1, 0.1)                 |
  | text_emb, text_pos_emb, image_emb, row_emb,     | uniform(seed, n, -0.5, 0.5)                 |
  |   col_emb (.weight)                             |                                             |
  | every other .weight (Linear (out, in) matrices, | uniform(seed, n, -s, s), s = (float)(1 /    |
  |   text_head, image_head)                        |   sqrt(in)) computed in double              |
uniform(seed, n, lo, hi) is testfill.uniform == C fill_uniform(x, n, seed, lo, hi) (float lo, hi;
float32(lo + (hi - lo) * u) with u = fill_u(seed, i)); the matrix rule is testfill.weight.

prior_tiny.safetensors, every tensor float32, flat in C order:
  "in.text" (B,L)            text ids floor(fill_u(11000, i) * (Vt + L)), i < B*L, as float
                             (ids >= Vt would be padding ids, taken as ordinary rows; this fill
                             happens to draw none: [[34 35 20 39 5 11] [3 39 18 9 13 2]])
  "in.image" (B,N)           image codes floor(fill_u(11001, i) * Vi), i < B*N, as float
  "mask.row", "mask.column", "mask.conv" (T,T)
                             1 where stream query q (row) may attend key k (column), else 0
  "text_logits" (B,L-1,Vt+L) text_head at stream positions 0 .. L-2 (predicting text 1 .. L-1)
  "image_logits" (B,N,Vi)    image_head at stream positions L .. L+N-1 (predicting codes 0 .. N-1)
  "loss", "loss_text", "loss_image" (1,)
                             loss_text = mean CE over the B*(L-1) text predictions, loss_image =
                             mean CE over the B*N image predictions, loss = loss_text/8 +
                             7*loss_image/8
  "grad.<param>"             d loss / d param for every parameter, its shape (54 tensors)
The model is evaluated in float64 (explicit masked softmax, weights = the float32 fill widened)
and every output rounded to float32 once.
Metadata: "prior.config" (JSON, prior_config field order), "ref.batch", "ref.torch",
"ref.seeds" (JSON), "<name>.maxabs" of the logits and gradients.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import testfill  # noqa: E402
from convert_openai_dvae import write_safetensors  # noqa: E402
from prior_model import CONFIG_KEYS, LAYER_TYPES, PRESETS, Prior, build_masks  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data")
BUDGET = 300_000  # bytes
SEED_WEIGHTS, SEED_TEXT, SEED_IMAGE = 10000, 11000, 11001
EMBEDDINGS = ("text_emb.weight", "text_pos_emb.weight", "image_emb.weight", "row_emb.weight", "col_emb.weight")


def fill_value(name: str, shape: tuple, seed: int) -> np.ndarray:
    """The test fill of one prior tensor (table in the docstring)."""
    n = int(np.prod(shape))
    if name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
        return testfill.uniform(seed, n, 0.9, 1.1).reshape(shape)
    if name.endswith(".bias"):
        return testfill.uniform(seed, n, -0.1, 0.1).reshape(shape)
    if name in EMBEDDINGS:
        return testfill.uniform(seed, n, -0.5, 0.5).reshape(shape)
    assert name.endswith(".weight") and len(shape) == 2, name
    return testfill.weight(seed, shape)


def apply_test_fill(model: Prior) -> None:
    with torch.no_grad():
        for t, (name, p) in enumerate(model.state_dict().items()):
            p.copy_(torch.from_numpy(fill_value(name, tuple(p.shape), SEED_WEIGHTS + t)))


def test_inputs(cfg: dict, batch: int) -> tuple:
    """(text (B,L), image (B,N)) int64."""
    L, N = cfg["text_len"], cfg["grid"] ** 2
    text = np.floor(testfill.fill_u(SEED_TEXT, batch * L) * (cfg["text_vocab"] + L)).astype(np.int64)
    image = np.floor(testfill.fill_u(SEED_IMAGE, batch * N) * cfg["image_vocab"]).astype(np.int64)
    return torch.from_numpy(text).view(batch, L), torch.from_numpy(image).view(batch, N)


def config_json(cfg: dict) -> str:
    return json.dumps({k: cfg[k] for k in CONFIG_KEYS})


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def tiny_ref(batch: int = 2):
    cfg = PRESETS["tiny"]
    model = Prior(cfg, attn="math")
    apply_test_fill(model)  # float32 fill values ...
    model.double()          # ... widened exactly
    text, image = test_inputs(cfg, batch)
    text_logits, image_logits = model(text, image)
    loss, lt, li = model.loss(text, image)
    loss.backward()
    tensors = {"in.text": _np(text.double()), "in.image": _np(image.double())}
    for kind, m in build_masks(cfg).items():
        tensors[f"mask.{kind}"] = _np(m.double())
    tensors.update({"text_logits": _np(text_logits), "image_logits": _np(image_logits),
                    "loss": _np(loss).reshape(1), "loss_text": _np(lt).reshape(1), "loss_image": _np(li).reshape(1)})
    tensors.update({f"grad.{n}": _np(p.grad) for n, p in model.named_parameters()})
    meta = {"dalle.kind": "ref", "ref.generator": "tests/ref/gen_prior_ref.py", "ref.torch": torch.__version__,
            "prior.config": config_json(cfg), "ref.batch": str(batch),
            "ref.seeds": json.dumps({"weights": SEED_WEIGHTS, "text": SEED_TEXT, "image": SEED_IMAGE}),
            "ref.layer_types": json.dumps(model.layer_types)}
    for k, v in tensors.items():
        if k == "text_logits" or k == "image_logits" or k.startswith("grad."):
            meta[f"{k}.maxabs"] = repr(float(np.abs(v).max()))
    assert set(LAYER_TYPES) == {k[5:] for k in tensors if k.startswith("mask.")}
    return tensors, meta


def main() -> int:
    os.makedirs(DATA, exist_ok=True)
    tensors, meta = tiny_ref()
    path = os.path.join(DATA, "prior_tiny.safetensors")
    write_safetensors(path, tensors, meta)
    size = os.path.getsize(path)
    print(f"prior_tiny.safetensors: {len(tensors)} tensors, {sum(a.size for a in tensors.values())} floats, "
          f"{size} bytes (budget {BUDGET}); loss {float(tensors['loss'][0]):.6f} "
          f"(text {float(tensors['loss_text'][0]):.6f}, image {float(tensors['loss_image'][0]):.6f})")
    if size >= BUDGET:
        print("gen_prior_ref: reference file exceeds its size budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
