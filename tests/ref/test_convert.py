#!/usr/bin/env python3
"""test_convert.py: checks tools/convert_openai_dvae.py on pickles made the way OpenAI's were.

Run by hand (not part of `make test`; needs torch, numpy and dall_e):
    python3 tests/ref/test_convert.py

It builds official dall_e Encoder/Decoder modules, gives some parameters non-contiguous or
offset storage (the released files have such tensors), strips Upsample.recompute_scale_factor
(pickles from torch <= 1.10 lack it), torch.save's the WHOLE modules in both the zip and the
legacy container, runs the converter in a subprocess in which `import dall_e` fails, and checks
every tensor bit for bit against the modules' state_dict, the tensor order and the metadata.
Then it checks that bad input fails with exit status 1 and a message naming the file.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from dall_e import Decoder, Encoder

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONVERTER = os.path.join(ROOT, "tools", "convert_openai_dvae.py")
sys.path.insert(0, HERE)
from gen_dvae_ref import PRESETS, build_dvae  # noqa: E402

failures = []


def check(cond: bool, what: str) -> None:
    print(f"{'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        failures.append(what)


def read_safetensors(path: str):
    """(name -> array in file order, metadata) for an all-F32 file."""
    with open(path, "rb") as f:
        buf = f.read()
    n = int.from_bytes(buf[:8], "little")
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        assert h["dtype"] == "F32", (path, name)
        a, b = h["data_offsets"]
        tensors[name] = np.frombuffer(buf[8 + n + a:8 + n + b], dtype="<f4").reshape(h["shape"])
    return tensors, meta


def run_converter(*args: str) -> subprocess.CompletedProcess:
    """The converter as a program, with dall_e made unimportable to prove it is not needed."""
    code = ("import runpy, sys; sys.modules['dall_e'] = None; "
            f"sys.argv = {[CONVERTER, *args]!r}; runpy.run_path({CONVERTER!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def make_like_released(enc: torch.nn.Module, dec: torch.nn.Module) -> None:
    """Gives a few parameters the storage layouts torch.save keeps as they are."""
    for module in (enc, dec):
        with torch.no_grad():
            w = module.blocks.input.w  # permuted strides
            w.data = w.data.transpose(0, 1).contiguous().transpose(0, 1)
            b = module.blocks.output.conv.b  # every other element of a larger storage, offset 1
            wide = torch.zeros(2 * b.numel() + 1)
            wide[1::2] = b.data
            b.data = wide[1::2]
            w4 = module.blocks.group_2.block_1.res_path.conv_4.w  # contiguous, storage offset 3
            big = torch.zeros(w4.numel() + 3)
            big[3:] = w4.data.flatten()
            w4.data = big[3:].view(w4.shape)
        check(not module.blocks.input.w.is_contiguous() and not module.blocks.output.conv.b.is_contiguous(),
              f"{type(module).__name__}: test parameters are non-contiguous before saving")
    for m in dec.modules():
        if isinstance(m, torch.nn.Upsample):
            m.__dict__.pop("recompute_scale_factor", None)


def check_conversion(tmp: str, tag: str, enc, dec, cfg: dict, legacy: bool) -> None:
    enc_path, dec_path = os.path.join(tmp, f"{tag}_encoder.pkl"), os.path.join(tmp, f"{tag}_decoder.pkl")
    out = os.path.join(tmp, f"{tag}.safetensors")
    torch.save(enc, enc_path, _use_new_zipfile_serialization=not legacy)
    torch.save(dec, dec_path, _use_new_zipfile_serialization=not legacy)
    r = run_converter("--encoder", enc_path, "--decoder", dec_path, "-o", out,
                      "--image-size", str(cfg["image_size"]))
    check(r.returncode == 0, f"{tag}: converter exits 0 ({r.stderr.strip()[-300:]})")
    if r.returncode:
        return
    tensors, meta = read_safetensors(out)
    expected = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    expected.update({f"decoder.{k}": v for k, v in dec.state_dict().items()})
    check(list(tensors) == list(expected), f"{tag}: tensor names and order = the state_dict's")
    same = [k for k in expected if k in tensors and tensors[k].shape == tuple(expected[k].shape)
            and np.array_equal(tensors[k], expected[k].contiguous().numpy())]
    check(len(same) == len(expected), f"{tag}: {len(same)}/{len(expected)} tensors equal bit for bit")
    check(meta.get("dalle.kind") == "dvae" and meta.get("dalle.version") == "1", f"{tag}: kind/version metadata")
    check(json.loads(meta.get("dvae.config", "{}")) == cfg, f"{tag}: config {meta.get('dvae.config')}")
    check(not [f for f in os.listdir(tmp) if ".tmp." in f], f"{tag}: no temp file left")


def check_errors(tmp: str, enc, dec) -> None:
    enc_path, dec_path = os.path.join(tmp, "zip_encoder.pkl"), os.path.join(tmp, "zip_decoder.pkl")
    junk = os.path.join(tmp, "junk.pkl")
    with open(junk, "wb") as f:
        f.write(os.urandom(4096))
    del enc.blocks.output.conv._parameters["b"]
    holed = os.path.join(tmp, "holed_encoder.pkl")
    torch.save(enc, holed)
    out = os.path.join(tmp, "bad.safetensors")
    cases = [
        ("not a pickle", [junk, dec_path], junk),
        ("missing file", [os.path.join(tmp, "absent.pkl"), dec_path], "absent.pkl"),
        ("decoder given as encoder", [dec_path, dec_path], dec_path),
        ("encoder given as decoder", [enc_path, enc_path], enc_path),
        ("missing tensor", [holed, dec_path], holed),
    ]
    for what, (e, d), names in cases:
        r = run_converter("--encoder", e, "--decoder", d, "-o", out)
        check(r.returncode == 1 and names in r.stderr and "Traceback" not in r.stderr,
              f"error '{what}': {r.stderr.strip()[:200]}")
    check(not os.path.exists(out), "no output written on error")
    r = run_converter("--encoder", enc_path, "--decoder", dec_path, "--check")
    check(r.returncode == 0 and "n_blk_per_group" in r.stdout and "tensors" in r.stdout,
          f"--check: {r.stdout.strip()}")


def main() -> int:
    torch.manual_seed(0)
    cfg = dict(n_hid=64, n_blk_per_group=1, vocab_size=512, n_init=32, image_size=256, n_pool=3)
    with tempfile.TemporaryDirectory() as tmp:
        for legacy in (False, True):
            enc = Encoder(n_hid=cfg["n_hid"], n_blk_per_group=cfg["n_blk_per_group"], vocab_size=cfg["vocab_size"])
            dec = Decoder(n_init=cfg["n_init"], n_hid=cfg["n_hid"], n_blk_per_group=cfg["n_blk_per_group"],
                          vocab_size=cfg["vocab_size"])
            make_like_released(enc, dec)
            check_conversion(tmp, "legacy" if legacy else "zip", enc, dec, cfg, legacy)
        # Our n_pool generalisation (Identity in place of some pools/upsamples) round-trips too.
        enc_t, dec_t = build_dvae(PRESETS["tiny"])
        check_conversion(tmp, "tiny", enc_t, dec_t, PRESETS["tiny"], legacy=False)
        check_errors(tmp, enc, dec)
    print(f"{'FAILED: ' + str(len(failures)) if failures else 'all passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
