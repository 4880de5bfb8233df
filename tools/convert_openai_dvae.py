#!/usr/bin/env python3
"""convert_openai_dvae.py: OpenAI's released dVAE pickles -> a dalle.c dvae safetensors file.

    python3 tools/convert_openai_dvae.py --encoder encoder.pkl --decoder decoder.pkl -o dvae.safetensors
    python3 tools/convert_openai_dvae.py --encoder encoder.pkl --decoder decoder.pkl --check

encoder.pkl and decoder.pkl (https://cdn.openai.com/dall-e/) are torch.save of whole nn.Module
objects (dall_e.encoder.Encoder, dall_e.decoder.Decoder), pickled by torch <= 1.10, and some of
their parameters are non-contiguous (docs: /work/shared/SPEC.md §1.6). This tool needs neither
the dall_e package nor an old torch: it unpickles with every dall_e class and the few torch.nn
container/activation/resampling classes replaced by an inert stand-in that only keeps the pickled
attributes, walks the `_modules` / `_parameters` tree to recover the official state-dict keys,
infers and verifies the configuration, and writes float32 contiguous tensors named
"encoder.<key>" / "decoder.<key>" with the dvae metadata. The file is written atomically.

This module is also the project's one safetensors writer for Python (tests/ref imports it).
"""
import argparse
import json
import os
import pickle
import sys
import types
import warnings

import numpy as np
import torch


class ConvertError(Exception):
    """Bad input; the message names the file."""


# ---------------------------------------------------------------------------------------------
# safetensors writer
def write_safetensors(path: str, tensors: dict, metadata: dict) -> None:
    """Writes name -> array (stored as little-endian F32, in dict order) and string metadata to
    PATH atomically (PATH.tmp.<pid>, then rename). The header is padded with spaces to a multiple
    of 8 bytes, as the reference implementation does, so the data is 8-byte aligned."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}} if metadata else {}
    arrays, offset = [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(len(head).to_bytes(8, "little"))
            f.write(head)
            for a in arrays:
                f.write(memoryview(a).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# The official architecture, written out independently of dall_e: key -> shape in state-dict
# order (id_path is registered before res_path; w before b).
def _conv(shapes: dict, key: str, n_in: int, n_out: int, kw: int) -> None:
    shapes[key + ".w"] = (n_out, n_in, kw, kw)
    shapes[key + ".b"] = (n_out,)


def _groups(shapes: dict, widths: list, n_blk: int, kernels: tuple) -> None:
    # Group g maps widths[g-1] -> widths[g]; its first block changes the width (1x1 id_path).
    for g in range(1, 5):
        for i in range(1, n_blk + 1):
            n_in, n_out = (widths[g - 1] if i == 1 else widths[g]), widths[g]
            h, prefix = n_out // 4, f"blocks.group_{g}.block_{i}."
            if n_in != n_out:
                _conv(shapes, prefix + "id_path", n_in, n_out, 1)
            chans = [(n_in, h), (h, h), (h, h), (h, n_out)]
            for j, ((a, b), kw) in enumerate(zip(chans, kernels), 1):
                _conv(shapes, prefix + f"res_path.conv_{j}", a, b, kw)


def encoder_shapes(cfg: dict) -> dict:
    n_hid, shapes = cfg["n_hid"], {}
    _conv(shapes, "blocks.input", 3, n_hid, 7)
    _groups(shapes, [n_hid, n_hid, 2 * n_hid, 4 * n_hid, 8 * n_hid], cfg["n_blk_per_group"], (3, 3, 3, 1))
    _conv(shapes, "blocks.output.conv", 8 * n_hid, cfg["vocab_size"], 1)
    return shapes


def decoder_shapes(cfg: dict) -> dict:
    n_hid, shapes = cfg["n_hid"], {}
    _conv(shapes, "blocks.input", cfg["vocab_size"], cfg["n_init"], 1)
    _groups(shapes, [cfg["n_init"], 8 * n_hid, 4 * n_hid, 2 * n_hid, n_hid], cfg["n_blk_per_group"], (1, 3, 3, 3))
    _conv(shapes, "blocks.output.conv", n_hid, 6, 1)
    return shapes


def config_json(cfg: dict) -> str:
    """The "dvae.config" metadata string, keys in the documented order."""
    keys = ("n_hid", "n_blk_per_group", "vocab_size", "n_init", "image_size", "n_pool")
    return json.dumps({k: cfg[k] for k in keys})


def dvae_metadata(cfg: dict) -> dict:
    return {"dalle.kind": "dvae", "dalle.version": "1", "dvae.config": config_json(cfg)}


# ---------------------------------------------------------------------------------------------
# Unpickling without dall_e
_STAND_INS = {
    "dall_e.encoder": ("Encoder", "EncoderBlock"),
    "dall_e.decoder": ("Decoder", "DecoderBlock"),
    "dall_e.utils": ("Conv2d",),
    "torch.nn.modules.container": ("Sequential",),
    "torch.nn.modules.activation": ("ReLU",),
    "torch.nn.modules.pooling": ("MaxPool2d",),
    "torch.nn.modules.upsampling": ("Upsample",),
    "torch.nn.modules.linear": ("Identity",),
}


class StandIn:
    """A pickled module: no behaviour, just the attributes pickle restores into __dict__
    (_modules, _parameters, _buffers, attrs fields...). `kind` is the original class name."""
    kind = ""


_stand_in_classes = {}


def _stand_in(name: str) -> type:
    if name not in _stand_in_classes:
        _stand_in_classes[name] = type(name, (StandIn,), {"kind": name})
    return _stand_in_classes[name]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name in _STAND_INS.get(module, ()):
            return _stand_in(name)
        if module == "dall_e" or module.startswith("dall_e."):
            raise pickle.UnpicklingError(f"unexpected class {module}.{name}")
        return super().find_class(module, name)


# torch.load subclasses pickle_module.Unpickler (for storages) and calls pickle_module.load for
# the legacy (non-zip) container's header records, so this module object provides both.
_pickle_module = types.ModuleType("dvae_stand_in_pickle")
_pickle_module.Unpickler = _Unpickler
_pickle_module.load = lambda f, **kw: _Unpickler(f, **kw).load()


def load_pickle(path: str, kind: str) -> StandIn:
    """Unpickles PATH (zip or legacy torch.save) and checks that it holds a dall_e KIND."""
    try:
        with warnings.catch_warnings():
            # Legacy containers store each module class's source and torch compares it with the
            # class it loaded, here a stand-in: the resulting warnings say nothing about the file.
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module)
    except OSError as e:
        raise ConvertError(f"{path}: {e.strerror or e}") from None
    except Exception as e:
        raise ConvertError(f"{path}: not a torch.save pickle of a dall_e module "
                           f"({type(e).__name__}: {e})") from None
    if not isinstance(obj, StandIn) or obj.kind != kind:
        got = obj.kind if isinstance(obj, StandIn) else f"{type(obj).__module__}.{type(obj).__qualname__}"
        raise ConvertError(f"{path}: holds {got}, expected dall_e {kind}")
    return obj


def _children(node: StandIn) -> dict:
    return node.__dict__.get("_modules") or {}


def collect_parameters(node, path: str, prefix: str = "") -> dict:
    """key -> float32 contiguous tensor for every parameter under NODE, in registration order
    (the order state_dict() would give)."""
    where = prefix.rstrip(".") or "<root>"
    if not isinstance(node, StandIn):
        raise ConvertError(f"{path}: module {where} is a {type(node).__module__}."
                           f"{type(node).__qualname__}, not a dVAE module class")
    if "_parameters" not in node.__dict__:
        raise ConvertError(f"{path}: {node.kind} {where} has no parameter table (not a torch module)")
    if node.__dict__.get("_buffers"):
        raise ConvertError(f"{path}: {node.kind} {where} has buffers {list(node._buffers)}; the dVAE has none")
    out = {}
    for name, p in node._parameters.items():
        if p is None:
            continue
        if not isinstance(p, torch.Tensor):
            raise ConvertError(f"{path}: parameter {prefix}{name} is a {type(p).__name__}, not a tensor")
        # Stored tensors may be strided views (the released files have some): contiguous() copies
        # them into plain row-major order, float() undoes any half storage.
        out[prefix + name] = p.detach().contiguous().float()
    for name, child in _children(node).items():
        out.update(collect_parameters(child, path, f"{prefix}{name}."))
    return out


def _shape_of(params: dict, key: str, ndim: int, path: str) -> tuple:
    if key not in params:
        raise ConvertError(f"{path}: missing tensor {key}")
    shape = tuple(params[key].shape)
    if len(shape) != ndim:
        raise ConvertError(f"{path}: tensor {key} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def _n_blk(params: dict) -> int:
    return len({k.split(".")[2] for k in params if k.startswith("blocks.group_1.block_")})


def _resamplers(root: StandIn, name: str) -> list:
    """The `pool`/`upsample` module after each of groups 1..3 (None where absent)."""
    groups = _children(_children(root).get("blocks") or StandIn())
    return [_children(groups.get(f"group_{g}") or StandIn()).get(name) for g in (1, 2, 3)]


_RESAMPLER_ATTRS = {"MaxPool2d": {"kernel_size": 2, "stride": 2}, "Upsample": {"scale_factor": 2, "mode": "nearest"}}


def _check_resampler(m, kind: str, path: str, where: str) -> bool:
    """True for a KIND by 2 (the only resampling the C implements), False for an Identity."""
    if isinstance(m, StandIn) and m.kind == "Identity":
        return False
    if not isinstance(m, StandIn) or m.kind != kind:
        raise ConvertError(f"{path}: {where} is not a {kind} or Identity")
    for attr, want in _RESAMPLER_ATTRS[kind].items():
        got = m.__dict__.get(attr)
        # torch stores these as given: 2, 2.0 or a pair.
        if not (got == want or (isinstance(got, (tuple, list)) and list(got) == [want, want])):
            raise ConvertError(f"{path}: {where} has {attr}={got!r}, expected {want!r}")
    return True


def infer_n_pool(enc: StandIn, dec: StandIn, enc_path: str, dec_path: str) -> int:
    """Official: pools after encoder groups 1..3 and upsamples after decoder groups 1..3 (3).
    Our generalisation n_pool=p keeps the encoder's first p and the decoder's last p."""
    pools = [_check_resampler(m, "MaxPool2d", enc_path, f"blocks.group_{g}.pool")
             for g, m in enumerate(_resamplers(enc, "pool"), 1)]
    ups = [_check_resampler(m, "Upsample", dec_path, f"blocks.group_{g}.upsample")
           for g, m in enumerate(_resamplers(dec, "upsample"), 1)]
    p = sum(pools)
    if pools != [True] * p + [False] * (3 - p):
        raise ConvertError(f"{enc_path}: max-pools after groups {[g for g in (1, 2, 3) if pools[g - 1]]}, "
                           f"expected groups 1..p")
    if ups != [False] * (3 - p) + [True] * p:
        raise ConvertError(f"{dec_path}: upsamples after groups {[g for g in (1, 2, 3) if ups[g - 1]]}, "
                           f"expected the last {p} of groups 1..3 (the encoder pools {p} times)")
    return p


def infer_config(enc: dict, dec: dict, enc_path: str, dec_path: str, image_size: int, n_pool: int) -> dict:
    n_hid, c_in = _shape_of(enc, "blocks.input.w", 4, enc_path)[:2]
    vocab = _shape_of(enc, "blocks.output.conv.w", 4, enc_path)[0]
    n_init, dec_vocab = _shape_of(dec, "blocks.input.w", 4, dec_path)[:2]
    dec_hid = _shape_of(dec, "blocks.output.conv.w", 4, dec_path)[1]
    if c_in != 3:
        raise ConvertError(f"{enc_path}: blocks.input.w takes {c_in} channels, expected 3 (RGB)")
    if (dec_vocab, dec_hid, _n_blk(dec)) != (vocab, n_hid, _n_blk(enc)):
        raise ConvertError(f"{dec_path}: decoder (vocab {dec_vocab}, n_hid {dec_hid}, {_n_blk(dec)} blocks/group) "
                           f"does not match encoder {enc_path} (vocab {vocab}, n_hid {n_hid}, {_n_blk(enc)} blocks/group)")
    if image_size % (1 << n_pool):
        raise ConvertError(f"image size {image_size} is not a multiple of 2^{n_pool}")
    cfg = {"n_hid": n_hid, "n_blk_per_group": _n_blk(enc), "vocab_size": vocab, "n_init": n_init,
           "image_size": image_size, "n_pool": n_pool}
    for params, expected, path in ((enc, encoder_shapes(cfg), enc_path), (dec, decoder_shapes(cfg), dec_path)):
        missing = [k for k in expected if k not in params]
        extra = [k for k in params if k not in expected]
        if missing or extra:
            raise ConvertError(f"{path}: for config {config_json(cfg)}: missing tensors {missing}, unexpected {extra}")
        for k, shape in expected.items():
            if tuple(params[k].shape) != shape:
                raise ConvertError(f"{path}: tensor {k} has shape {list(params[k].shape)}, expected {list(shape)}")
    return cfg


def convert(enc_path: str, dec_path: str, image_size: int = 256):
    """Returns (config, tensors) with tensors name -> float32 numpy array in file order."""
    enc_root, dec_root = load_pickle(enc_path, "Encoder"), load_pickle(dec_path, "Decoder")
    enc, dec = collect_parameters(enc_root, enc_path), collect_parameters(dec_root, dec_path)
    n_pool = infer_n_pool(enc_root, dec_root, enc_path, dec_path)
    cfg = infer_config(enc, dec, enc_path, dec_path, image_size, n_pool)
    # Keep the canonical (state-dict) order of the expected architecture.
    tensors = {f"encoder.{k}": enc[k].numpy() for k in encoder_shapes(cfg)}
    tensors.update({f"decoder.{k}": dec[k].numpy() for k in decoder_shapes(cfg)})
    return cfg, tensors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Convert OpenAI's dVAE pickles to dalle.c safetensors.")
    ap.add_argument("--encoder", required=True, help="encoder.pkl")
    ap.add_argument("--decoder", required=True, help="decoder.pkl")
    ap.add_argument("-o", "--output", help="output .safetensors (required unless --check)")
    ap.add_argument("--check", action="store_true", help="validate the pickles, print the config, write nothing")
    ap.add_argument("--image-size", type=int, default=256,
                    help="training resolution recorded in the config (the released model: 256)")
    args = ap.parse_args(argv)
    if not args.check and not args.output:
        ap.error("-o/--output is required unless --check")
    try:
        cfg, tensors = convert(args.encoder, args.decoder, args.image_size)
        n_enc = sum(k.startswith("encoder.") for k in tensors)
        n_params = sum(a.size for a in tensors.values())
        print(f"config {config_json(cfg)}")
        print(f"{len(tensors)} tensors ({n_enc} encoder, {len(tensors) - n_enc} decoder), {n_params:,} parameters")
        if not args.check:
            write_safetensors(args.output, tensors, dvae_metadata(cfg))
            print(f"wrote {args.output} ({os.path.getsize(args.output):,} bytes)")
    except ConvertError as e:
        print(f"convert_openai_dvae: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"convert_openai_dvae: {args.output}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
