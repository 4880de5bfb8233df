# gen_safetensors_ref.py: writes tests/data/st_python.safetensors with the official
# `safetensors` package, so that tests/test_safetensors.c proves the C reader loads what
# Python writes (header layout, tensor order, padding, BF16 via torch). Every value is
# exactly representable in its dtype, so the C test compares bit for bit.
#   pip install safetensors torch; python3 tests/ref/gen_safetensors_ref.py
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "st_python.safetensors")

tensors = {
    # float32, 2-D, with a subnormal and the largest finite float16
    "enc.w": torch.tensor([[0.0, 1.0, -2.5], [3.140625, 1e-40, -65504.0]], dtype=torch.float32),
    # float16: 65504 (max), 2^-24 (smallest subnormal), -0.0, a 10-bit mantissa
    "enc.h": torch.tensor([1.0, -0.5, 65504.0, 2.0**-24, -0.0, 0.333251953125], dtype=torch.float16),
    # bfloat16, 3-D: large and small exponents that float16 cannot hold
    "dec.b": torch.tensor([[[1.0, -3.0], [2.0**100, 2.0**-100]]], dtype=torch.bfloat16),
    # a 0-D scalar and an empty tensor (zero bytes in the data region)
    "scalar": torch.tensor(42.0, dtype=torch.float32),
    "empty": torch.zeros((0, 4), dtype=torch.float16),
}
metadata = {"format": "pt", "note": "dalle.c test \u00fc"}

os.makedirs(os.path.dirname(OUT), exist_ok=True)
save_file(tensors, OUT, metadata=metadata)
print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")
