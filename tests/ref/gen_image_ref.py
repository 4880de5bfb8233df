# gen_image_ref.py: writes the small images and reference results that tests/test_image.c
# checks src/core/image.c against, into tests/data/img/:
#   - PNGs of every colour type / depth the loader handles, written by a tiny encoder here
#     (PIL cannot write 16-bit RGB, 2-bit grey or interlaced files), each with NAME.ppm: the
#     expected 8-bit RGB (16-bit -> high byte, alpha composited on white as
#     (c*a + 255*(255-a) + 127) // 255). PIL decodes every one to the same values (asserted).
#   - JPEGs written by PIL (baseline, progressive, grey, CMYK, EXIF orientations 1..8 in
#     both byte orders) with NAME.ppm = PIL's decoded RGB after ImageOps.exif_transpose.
#   - nb_SRC_S.ppm: the official DALL-E notebook's preprocessing of SRC: shorter side to S
#     with (round(r*h), round(r*w)), r = S/min(w,h) (Python round: half to even), PIL
#     LANCZOS, then torchvision's centre crop (top = int(round((h - S) / 2.0))).
#   - lanczos_WxH.ppm: PIL LANCZOS of png_rgb to WxH; area_WxH.ppm: the exact box average
#     with fractional coverage (TF AREA), rounded half up.
#   pip install pillow numpy; python3 tests/ref/gen_image_ref.py
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "img")
rng = np.random.default_rng(20210224)


# ---------------------------------------------------------------- a small PNG encoder

def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filter_rows(raw, bpp, first_filter):
    """Filters the rows of a (h, rowbytes) uint8 array, cycling through all five filter
    types so that the decoder's unfiltering is exercised; returns the scanline bytes."""
    out = bytearray()
    prev = np.zeros(raw.shape[1], np.int32)
    for y, row in enumerate(raw.astype(np.int32)):
        ft = (first_filter + y) % 5
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        pred = [0, left, prev, (left + prev) // 2, paeth(left, prev, upleft)][ft]
        out.append(ft)
        out += ((row - pred) % 256).astype(np.uint8).tobytes()
        prev = row
    return bytes(out)


def pack_row(samples, depth):
    """One row of samples (1-D) to bytes at the given bit depth (big-endian, MSB first)."""
    if depth == 16:
        return samples.astype(">u2").tobytes()
    if depth == 8:
        return samples.astype(np.uint8).tobytes()
    per = 8 // depth
    padded = np.concatenate([samples, np.zeros(-len(samples) % per, samples.dtype)])
    b = np.zeros(len(padded) // per, np.int32)
    for i in range(per):
        b = (b << depth) | padded[i::per].astype(np.int32)
    return b.astype(np.uint8).tobytes()


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def encode_png(px, color_type, depth, interlace=False, plte=None, trns=None):
    """px: (h, w, channels) array of samples at `depth` bits."""
    h, w, ch = px.shape
    bpp = max(1, ch * depth // 8)

    def scanlines(sub, k):
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            return b""
        rows = np.array([np.frombuffer(pack_row(r.reshape(-1), depth), np.uint8) for r in sub])
        return filter_rows(rows, bpp, k)

    if interlace:
        data = b"".join(scanlines(px[y0::dy, x0::dx], k) for k, (x0, y0, dx, dy) in enumerate(ADAM7))
    else:
        data = scanlines(px, 0)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace)))
    if plte is not None:
        out += chunk(b"PLTE", plte.astype(np.uint8).tobytes())
    if trns is not None:
        out += chunk(b"tRNS", trns)
    out += chunk(b"IDAT", zlib.compress(data, 9))
    return out + chunk(b"IEND", b"")


# ---------------------------------------------------------------- expected pixels

def composite(rgb, a):
    """Alpha over white, the loader's rule."""
    rgb = rgb.astype(np.int64)
    a = a.astype(np.int64)[..., None]
    return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def write_ppm(name, rgb):
    h, w, _ = rgb.shape
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h) + rgb.astype(np.uint8).tobytes())


def pil_rgb_on_white(im):
    """PIL's decoding of a file, as the loader should see it."""
    if im.mode == "I;16":
        return None  # PIL clips rather than scales 16-bit grey; checked against our own rule only
    rgba = np.asarray(im.convert("RGBA"))
    return composite(rgba[..., :3], rgba[..., 3])


def photo(h, w):
    """Smooth gradients, two hard-edged boxes and a little noise: something Lanczos rings on."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / (w - 1), 255 * y / (h - 1), 128 + 100 * np.sin((x + 2 * y) / 4)], -1)
    img[h // 5: h // 2, w // 6: w // 2] = [250, 20, 30]
    img[h // 2: 4 * h // 5, w // 2: 5 * w // 6] = [10, 10, 240]
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def save_png(name, data, expected):
    with open(os.path.join(OUT, name + ".png"), "wb") as f:
        f.write(data)
    pil = pil_rgb_on_white(Image.open(io.BytesIO(data)))
    assert pil is None or np.array_equal(pil, expected), name
    write_ppm(name + ".ppm", expected)


def make_pngs():
    h, w = 30, 40
    rgb = photo(h, w)
    gray = rgb[..., 1].copy()
    alpha = rng.integers(0, 256, (h, w)).astype(np.uint8)
    alpha[:, :4], alpha[:, -4:] = 0, 255  # fully transparent and fully opaque columns

    save_png("png_rgb", encode_png(rgb, 2, 8), rgb)
    save_png("png_gray", encode_png(gray[..., None], 0, 8), np.repeat(gray[..., None], 3, -1))
    g2 = (gray >> 6).astype(np.uint8)
    save_png("png_gray2", encode_png(g2[..., None], 0, 2), np.repeat((g2 * 85)[..., None], 3, -1))
    save_png("png_graya", encode_png(np.stack([gray, alpha], -1), 4, 8),
             composite(np.repeat(gray[..., None], 3, -1), alpha))
    # grey with tRNS: one grey level (at 16 bits, so the match is on the full value) is transparent
    g16 = gray.astype(np.uint16) * 257
    g16[::3, ::5] = 0x1234
    exp = np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, -1)
    exp[g16 == 0x1234] = 255
    save_png("png_gray16_trns", encode_png(g16[..., None], 0, 16, trns=struct.pack(">H", 0x1234)), exp)
    # palette with partial tRNS (the last entries have no alpha: opaque)
    pal = rng.integers(0, 256, (16, 3)).astype(np.uint8)
    pal_a = np.array([0, 64, 128, 200, 255, 10, 250, 90], np.uint8)
    idx = (rgb[..., 0].astype(np.int32) * 16 // 256).astype(np.uint8)
    a = np.concatenate([pal_a, np.full(8, 255, np.uint8)])[idx]
    save_png("png_pal_trns", encode_png(idx[..., None], 3, 8, plte=pal, trns=pal_a.tobytes()),
             composite(pal[idx], a))
    save_png("png_pal4", encode_png(idx[..., None], 3, 4, plte=pal), pal[idx])
    rgb16 = rgb.astype(np.uint16) * 256 + rng.integers(0, 256, rgb.shape).astype(np.uint16)
    save_png("png_rgb16", encode_png(rgb16, 2, 16), (rgb16 >> 8).astype(np.uint8))
    rgba = np.concatenate([rgb, alpha[..., None]], -1)
    save_png("png_rgba", encode_png(rgba, 6, 8), composite(rgb, alpha))
    rgba16 = rgba.astype(np.uint16) * 257
    save_png("png_rgba16", encode_png(rgba16, 6, 16), composite(rgb, alpha))
    # interlaced, with an odd size so that some Adam7 passes are partial
    rgba_i = np.concatenate([rgb[:29, :37], alpha[:29, :37, None]], -1)
    save_png("png_rgba_interlaced", encode_png(rgba_i, 6, 8, interlace=True),
             composite(rgb[:29, :37], alpha[:29, :37]))
    save_png("png_rgb_interlaced", encode_png(rgb, 2, 8, interlace=True), rgb)
    # the source of the resize references, and a portrait one
    tall = photo(37, 22)
    save_png("png_tall", encode_png(tall, 2, 8), tall)
    return rgb, tall


# ---------------------------------------------------------------- JPEG

def exif_bytes(orientation, big_endian):
    """A minimal EXIF APP1 payload: IFD0 with Make (stored out of line) and Orientation."""
    e = ">" if big_endian else "<"
    make = b"dalle\x00"
    n = 2
    ifd_end = 8 + 2 + 12 * n + 4
    entries = struct.pack(e + "HHII", 0x010F, 2, len(make), ifd_end)
    entries += struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    tiff += struct.pack(e + "H", n) + entries + struct.pack(e + "I", 0) + make
    return b"Exif\x00\x00" + tiff


def save_jpeg(name, im, **kw):
    path = os.path.join(OUT, name + ".jpg")
    im.save(path, "JPEG", **kw)
    ref = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    write_ppm(name + ".ppm", np.asarray(ref))


def make_jpegs(rgb):
    im = Image.fromarray(rgb)
    save_jpeg("jpg_baseline", im, quality=90)
    save_jpeg("jpg_progressive", im, quality=85, progressive=True)
    save_jpeg("jpg_gray", im.convert("L"), quality=90)
    save_jpeg("jpg_cmyk", im.convert("CMYK"), quality=90)
    small = Image.fromarray(rgb[5:21, 8:32])  # 24 x 16: the rotations change the shape
    for o in range(1, 9):
        save_jpeg(f"jpg_exif{o}", small, quality=90, subsampling=0, exif=exif_bytes(o, o % 2 == 0))


# ---------------------------------------------------------------- resize references

def notebook_preprocess(img, size):
    """preprocess() of the DALL-E usage notebook, minus its upscale guard and ToTensor."""
    w, h = img.size
    r = size / min(w, h)
    nh, nw = round(r * h), round(r * w)
    if (nh, nw) != (h, w):  # torchvision returns the image untouched then
        img = img.resize((nw, nh), Image.LANCZOS)
    top = int(round((nh - size) / 2.0))
    left = int(round((nw - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def area_matrix(n_in, n_out):
    s = n_in / n_out
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = i * s, (i + 1) * s
        for j in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
            m[i, j] = max(0.0, min(j + 1, hi) - max(j, lo)) / s
    return m


def make_resizes(rgb, tall):
    for name, src in [("rgb", rgb), ("tall", tall)]:
        for s in ([16, 24, 29, 30, 48] if name == "rgb" else [11, 16]):
            out = notebook_preprocess(Image.fromarray(src), s)
            write_ppm(f"nb_{name}_{s}.ppm", np.asarray(out))
    for w, h in [(17, 23), (64, 11)]:
        write_ppm(f"lanczos_{w}x{h}.ppm", np.asarray(Image.fromarray(rgb).resize((w, h), Image.LANCZOS)))
    for w, h in [(17, 23), (13, 10), (80, 45)]:
        my, mx = area_matrix(rgb.shape[0], h), area_matrix(rgb.shape[1], w)
        out = np.einsum("yi,ijc,xj->yxc", my, rgb.astype(np.float64), mx)
        write_ppm(f"area_{w}x{h}.ppm", np.floor(out + 0.5))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    rgb, tall = make_pngs()
    make_jpegs(rgb)
    make_resizes(rgb, tall)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files to {os.path.normpath(OUT)} ({total} bytes)")
