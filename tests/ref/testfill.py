# testfill.py: the deterministic "test fill" of docs/CONVENTIONS.md, bit-identical to
# tests/testfill.h, so that the reference scripts and the C tests build the same weights,
# images, codes and noise from a seed instead of committing them.
#
# Every value is computed in float64 from u (exact: 24 random bits plus one half) and
# rounded to float32 once, after the affine map, as the C helpers do:
#   uniform(seed, n, lo, hi)  == C fill_uniform(x, n, seed, lo, hi): lo and hi are `float`
#                                parameters there, so lo and (hi - lo) are float32 values
#                                (hi - lo is a float subtraction) before the double math.
#   weight: uniform(seed, n, -s, s), s = (float)(1/sqrt(fan_in)) computed in double;
#           this equals (2u-1)*s rounded once, since 2u-1 and 2s*u are exact in double.
#   bias:   uniform(seed, n, -0.1, 0.1).
#   image:  uniform(3000, n, 0.1, 0.9)              (already map_pixels'd)
#   codes:  floor(u*V)                               (seed 4000)
#   gumbel: (float)(-log(-log(u))) in double         (seed 5000)
import numpy as np

SEED_ENCODER, SEED_DECODER = 1000, 2000
SEED_IMAGE, SEED_CODES, SEED_GUMBEL = 3000, 4000, 5000

_U64 = np.uint64


def splitmix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 on a uint64 array; numpy array arithmetic wraps mod 2^64."""
    z = z + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def fill_u(seed: int, n: int) -> np.ndarray:
    """u_i = ((splitmix64((seed << 32) + i) >> 40) + 0.5) * 2^-24 for i < n, float64 in (0, 1)."""
    z = (np.arange(n, dtype=np.uint64) + _U64(seed << 32))
    return ((splitmix64(z) >> _U64(40)).astype(np.float64) + 0.5) * (1.0 / 16777216.0)


def uniform(seed: int, n: int, lo: float, hi: float) -> np.ndarray:
    """The C fill_uniform: float32(lo + (hi - lo) * u), lo and hi - lo float32, the rest double.
    (So uniform(3000, n, 0.1, 0.9) is NOT float32(0.1 + 0.8*u): 0.9f - 0.1f != 0.8.)"""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    return (float(lo32) + float(hi32 - lo32) * fill_u(seed, n)).astype(np.float32)


def weight(seed: int, shape: tuple) -> np.ndarray:
    """A conv weight (Co, Ci, k, k) or a bias (Co,) of the canonical test model."""
    n = int(np.prod(shape))
    if len(shape) == 1:
        return uniform(seed, n, -0.1, 0.1)
    s = float(np.float32(1.0 / np.sqrt(float(np.prod(shape[1:])))))
    return uniform(seed, n, -s, s).reshape(shape)


def image(shape: tuple) -> np.ndarray:
    """Mapped pixels in [0.1, 0.9], NCHW."""
    return uniform(SEED_IMAGE, int(np.prod(shape)), 0.1, 0.9).reshape(shape)


def codes(n: int, vocab: int) -> np.ndarray:
    """Decoder input codes, int64 in [0, vocab)."""
    return np.floor(fill_u(SEED_CODES, n) * vocab).astype(np.int64)


def gumbel(shape: tuple) -> np.ndarray:
    """Standard Gumbel noise g = -ln(-ln u), NCHW."""
    u = fill_u(SEED_GUMBEL, int(np.prod(shape)))
    return (-np.log(-np.log(u))).astype(np.float32).reshape(shape)


def fill_state_dict(state_dict: dict, seed0: int) -> dict:
    """Test-fill values for every tensor of a state dict, in its (canonical) order: tensor t
    gets seed seed0 + t. Returns name -> float32 array of the same shape."""
    return {name: weight(seed0 + t, tuple(v.shape)) for t, (name, v) in enumerate(state_dict.items())}
