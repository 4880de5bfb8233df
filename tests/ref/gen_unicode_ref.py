#!/usr/bin/env python3
"""gen_unicode_ref.py: writes tests/data/unicode_ref.txt, the reference answers that
tests/test_unicode.c checks src/text/unicode.c against, straight from the engines (one code
point or string at a time, independently of the batched derivation in
tools/gen_unicode_tables.py):

  H in out      html.unescape(in) (Python 3.11): hand-picked edge cases and random strings of
                '&', '#', 'x', digits, letters, ';', entity names and non-ASCII
  P in out      in.lower() (CPython, final sigma included): Greek words, sigma next to
                case-ignorable and cased code points
  C e e ...     code point entries GAP[:CCK] (hex): the code point is the previous entry's + GAP
                (the first entry of the file counts from 0); CC the class byte (bits 0-3 CLIP,
                4-7 HF: 1 \\p{L}, 2 \\p{N}, 4 skipped by the pattern (\\s, and CLIP's U+0345),
                8 white space of strip()), K the case bits (1 Cased, 2 Case_Ignorable as the
                final-sigma rule sees them); without ':' the values of the previous entry
  M cp clip hf  the lowercase (code points, '.'-separated hex) of the sampled code points that
                change in some flavour; every other sampled code point lowercases to itself
  D bytes cps   bytes.decode('utf-8', 'surrogateescape'): hex bytes, then the code points
                ('.'-separated hex, a rejected byte b as 110000 + b, the C side's pseudo code point)
  T in n tok..  the pre-tokeniser's matches on a probe string: n of CLIP (regex.findall with
                IGNORECASE), then those of HF (Split(..., "removed", invert=True))

Strings are UTF-8, percent-escaped: bytes 0x21-0x7E except '%' as themselves, others %XX; a
lone '%' is the empty string.

    pip install regex tokenizers; python3 tests/ref/gen_unicode_ref.py
"""
import html
import html.entities
import os
import random
import sys
import unicodedata

import regex
import tokenizers
from tokenizers import Regex
from tokenizers import normalizers as hfn
from tokenizers import pre_tokenizers as hfp

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "unicode_ref.txt")
PAT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CLIP_PAT = regex.compile(PAT, regex.IGNORECASE)
HF_SPLIT = hfp.Split(Regex(PAT), behavior="removed", invert=True)
rng = random.Random(20210105)


def esc(s):
    b = s.encode("utf-8", "surrogateescape")
    if not b:
        return "%"
    return "".join(chr(x) if 0x21 <= x <= 0x7E and x != 0x25 else "%%%02X" % x for x in b)


# ---------------------------------------------------------------- code points

def clip_bits(ch):
    p = lambda pat: bool(regex.match(pat, ch, regex.IGNORECASE))
    return (p(r"[\p{L}]") * 1 | p(r"[\p{N}]") * 2 | (not CLIP_PAT.findall(ch)) * 4
            | ch.isspace() * 8)


HF_L = hfp.Split(Regex(r"[\p{L}]"), behavior="removed", invert=True)
HF_N = hfp.Split(Regex(r"[\p{N}]"), behavior="removed", invert=True)
HF_STRIP, HF_LOWER = hfn.Strip(), hfn.Lowercase()


def hf_bits(ch):
    return (bool(HF_L.pre_tokenize_str(ch)) * 1 | bool(HF_N.pre_tokenize_str(ch)) * 2
            | (not HF_SPLIT.pre_tokenize_str(ch)) * 4 | (HF_STRIP.normalize_str(ch) == "") * 8)


def case_bits(ch):
    t1 = (ch + "Σ").lower()[-1] == "ς"
    t2 = ("A" + ch + "Σ").lower()[-1] == "ς"
    return (1 if t1 else 0) | (2 if t2 and not t1 else 0)


def sample_cps():
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    lower = [c for c in cps if chr(c).lower() != chr(c) or HF_LOWER.normalize_str(chr(c)) != chr(c)]
    space = [c for c in cps if chr(c).isspace() or regex.match(r"\s", chr(c))]
    letters = [c for c in cps if regex.match(r"\p{L}", chr(c))]
    numbers = [c for c in cps if regex.match(r"\p{N}", chr(c))]
    marks = [c for c in cps if unicodedata.category(chr(c)) in ("Mn", "Me", "Lm", "Sk", "Cf")]
    pick = set(range(0x250)) | set(lower) | set(space) | {0x345, 0x17F, 0x212A, 0x130, 0x3A3}
    pick |= set(rng.sample(letters, 2500)) | set(rng.sample(numbers, 500)) | set(rng.sample(marks, 1000))
    # code points new in the Unicode of one engine only
    pick |= set(rng.sample(range(0x10900, 0x10A00), 200)) | set(range(0x11DE0, 0x11DF0)) | set(range(0xA7C0, 0xA800))
    while len(pick) < 20000:
        c = rng.randrange(0x10000) if rng.random() < 0.6 else rng.randrange(0x110000)
        if not 0xD800 <= c <= 0xDFFF:
            pick.add(c)
    return sorted(pick)


def code_point_lines(cps):
    lines, entries, prev, prev_val = [], [], 0, None
    mlines, by_class = [], {}
    for c in cps:
        ch = chr(c)
        cls = clip_bits(ch) | hf_bits(ch) << 4
        val = "%02X%X" % (cls, case_bits(ch))
        entries.append("%X" % (c - prev) + ("" if val == prev_val else ":" + val))
        prev, prev_val = c, val
        if len(entries) == 24:
            lines.append("C " + " ".join(entries))
            entries = []
        lo_c, lo_h = ch.lower(), HF_LOWER.normalize_str(ch)
        if lo_c != ch or lo_h != ch:
            mlines.append("M %X %s %s" % (c, ".".join("%X" % ord(x) for x in lo_c),
                                          ".".join("%X" % ord(x) for x in lo_h)))
        by_class.setdefault(cls, []).append(c)
    if entries:
        lines.append("C " + " ".join(entries))
    return lines + mlines, by_class


def probe_lines(cps, by_class):
    """Pre-tokeniser matches on probes around one representative per class byte, the IGNORECASE
    letters and some others."""
    pick = {v[0] for v in by_class.values()} | {v[-1] for v in by_class.values()}
    pick |= {0x345, 0x17F, 0x212A, 0x130, ord("S"), ord("s"), ord("'"), ord(" "), 0x1C, 0x85, 0xA0, 0x3000}
    pick |= set(rng.sample(cps, 40))
    probes = ["a%sb1%s2!%s?'%se'%sl" % ((chr(c),) * 5) for c in sorted(pick)]
    probes += ["I'M here, y'all'd've it's 'S 'ſ 'RE 'Re 'LL 'Ll 'ſt x'ſs", "''s '''t 's's '", "don't ſſ'ſ"]
    lines = []
    for probe in probes:
        clip = CLIP_PAT.findall(probe)
        hf = [t for t, _ in HF_SPLIT.pre_tokenize_str(probe)]
        lines.append("T %s %d %s" % (esc(probe), len(clip), " ".join(esc(t) for t in clip + hf)))
    return lines


# ---------------------------------------------------------------- html.unescape

def html_cases():
    names = sorted(html.entities.html5)
    hand = [
        "", "&", "&&", "&;", "& ", "&#", "&#;", "&#x", "&#x;", "&#X41;", "&#xg", "&#12a", "&#65", "&#65;",
        "&#x41", "&#x41;", "&#0;", "&#0", "&#x0", "&#13;", "&#128;", "&#129;", "&#x80", "&#x9f;", "&#159;",
        "&#160;", "&#1;", "&#8;", "&#11;", "&#x7f;", "&#xfdd0;", "&#xFDEF;", "&#xfffe;", "&#x10fffe;",
        "&#x10ffff;", "&#x110000;", "&#1114111;", "&#1114112;", "&#xD800;", "&#55296;", "&#xdfff;",
        "&#99999999999999999999999;", "&#x" + "f" * 40 + ";", "&#" + "0" * 50 + "65;", "&#x" + "0" * 50 + "41",
        "&amp", "&amp;", "&AMP;", "&Amp;", "&amp;amp;", "&ampx", "&ampx;", "&amx;", "&am", "&notit;",
        "&notin;", "&notin", "&not", "&noti", "&notit", "&nGt;", "&nGt", "&lt", "&lt;", "&ltx", "&lt;x",
        "&gt&lt", "&#62&#60", "&quot&quot;", "&copy2023", "&copy;2023", "&COPY", "&fjlig;", "&NotEqualTilde;",
        "&CounterClockwiseContourIntegral;", "&CounterClockwiseContourIntegralX;",
        "&CounterClockwiseContourIntegral", "&" + "a" * 31 + ";", "&" + "a" * 32 + ";", "&" + "a" * 33 + ";",
        "&amp" + "x" * 40 + ";", "&lt" + "é" * 40, "&é;", "&éamp;", "&amé;", "&ampé;", "&amp中", "&中文;",
        "&\U0001F600;", "&amp\U0001F600", "&\r;", "&amp\r", "&\v;", "&\x00;", "&\x0bamp;", "&a\tb;",
        "&a\nb", "&a b", "&a<b", "&a&b", "&a#b;", "&amp#;", "&#&#;", "&&amp;", "&&&", "&#38;amp;",
        "&amp;lt;", "&lt;&gt;&amp;&quot;&apos;", "&apos", "&nbsp", "&nbsp;", "&NBSP;", "x&amp;y&lt;z",
        "&Aacute&aacute;", "&acE;", "&acE", "&ThickSpace;", "&bne;", "&nvlt;", "&#x20AC;", "&euro;",
        "&euro", "&eu", "&e", "&", "a & b", "AT&T", "&#x;", "&#xx41;", "&##65;", "&#-1;", "&#+1;",
        "&#\u0661\u0662;", "&#x\uff11;", "&#１;", "&ａｍｐ;", "&amp;;", "&amp;;;", ";&amp", "&ampamp",
    ]
    rows = [s for s in hand]
    for k in rng.sample(names, 300):  # names alone, or followed by text
        rows.append("&" + k + rng.choice(["", "", "x", ";", "1", "é", " ", "&amp;", k]))
    alphabet = list("&&&&##xX;;;0123456789abfAF lt gt amp not") + ["é", "中", "\U0001F600", "\t", "\n", "<"]
    for _ in range(900):
        parts = []
        for _ in range(rng.randrange(1, 8)):
            r = rng.random()
            if r < 0.3:
                parts.append("&" + rng.choice(names))
            elif r < 0.4:
                k = rng.choice(names).rstrip(";")
                parts.append("&" + k[: rng.randrange(1, len(k) + 1)])
            elif r < 0.55:
                parts.append("&#" + rng.choice(["", "x", "X"]) + "%d" % rng.choice([0, 1, 9, 13, 65, 128, 150, 255, 0xD800, 1114111, 1114112, 10 ** 12]))
            else:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 6))))
        rows.append("".join(parts))
    # bytes that are not UTF-8 stay themselves (surrogateescape) inside and around references
    bad = [b"&amp\xff", b"&\xff;", b"&\xffamp;", b"&am\xff", b"&#65\xff", b"&#x41\xc3", b"&lt\xc3\xa9",
           b"&" + b"\xff" * 33 + b";", b"&" + b"a" * 31 + b"\xff;", b"&" + b"a" * 31 + b"\xe2\x82;",
           b"&not\xed\xa0\x80", b"&\xc0\x80amp;", b"&amp;\x80", b"\xf4\x90\x80\x80&gt", b"&notin\xf0\x9f\x98"]
    for _ in range(100):
        bad.append(b"".join(rng.choice([b"&", b"amp", b"#", b"x", b"41", b";", b"\xff", b"\xc3", b"\xa9", b"\xe2\x82",
                                        b"\xc3\xa9", b" ", b"not", b"lt"]) for _ in range(rng.randrange(1, 8))))
    rows += [b.decode("utf-8", "surrogateescape") for b in bad]
    return ["H %s %s" % (esc(s), esc(html.unescape(s))) for s in rows]


# ---------------------------------------------------------------- UTF-8 decoding

def decode_cases():
    rows = [bytes([b]) for b in range(256)]
    rows += [bytes.fromhex(h) for h in (
        "c080 c1bf c280 dfbf e08080 e09fbf e0a080 efbfbf ed9fbf eda080 edbfbf ee8080 f08080 f08f bfbf "
        "f0908080 f48fbfbf f4908080 f5808080 f8888080 ff fe e282 e2 f09f98 f09f9880 f09f9841 e28241 "
        "c3 c3c3a9 80bf 61e282ac62").split()]
    lead = [0x41, 0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF]
    cont = [0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0x41]
    for _ in range(400):
        n = rng.randrange(1, 7)
        rows.append(bytes(rng.choice(lead) if rng.random() < 0.4 else rng.choice(cont) for _ in range(n)))
    out = []
    for b in rows:
        cps = [ord(c) if not 0xDC80 <= ord(c) <= 0xDCFF else 0x110000 + ord(c) - 0xDC00 for c in
               b.decode("utf-8", "surrogateescape")]
        out.append("D %s %s" % (b.hex(), ".".join("%X" % c for c in cps)))
    return out


# ---------------------------------------------------------------- str.lower()

def lower_cases(cps):
    hand = [
        "Σ", "ΣΣ", "AΣ", "AΣB", "AΣ B", "ΣA", "A Σ", "ΟΔΥΣΣΕΥΣ", "ΟΔΥΣΣΕΥΣ.", "ΌΣΟΣ ΣΟΦΟΣ", "Σ'Σ", "A'Σ",
        "A'Σ'", "A'Σ'B", "A·Σ", "A''Σ''", "1Σ", "'Σ", "Σ'", "ΑΣ1", "ΑΣ.Β", "ΑΣ̈", "ΑΣ̈Β", "Α̈Σ", "ǅΣ",
        "ᾼΣ", "ʰΣ", "AʰΣ", "AΣʰ", "AΣʰB", "\u0345Σ", "A\u0345Σ", "AΣ\u0345", "İΣ", "İ", "AİB", "ΣİΣ",
        "ẞΣ", "ΣΑΣ ΣΑΣ", "ΑΣ\U000E0001", "Α\U000E0001Σ", "AΣ\u00ad", "AΣ\u200dB", "abcΣdef", "ÀΣ",
        "ΣAΣ", "ΩΣ\tΣ", "ΩΣ\nΑ", "Ω\u0300\u0301Σ\u0300", "ΑΣ\u0300Β", "\U0001D400Σ", "\u2160Σ", "ⓐΣ",
        "ꭰΣ", "ᏸΣ", "\x80Σ", "ÅΣ", "ΑΣ\x00",
    ]
    rows = list(hand)
    sig = ["Σ", "Σ", "σ", "ς", "'", "·", "\u0300", " ", "A", "a", "1", "."]
    for _ in range(250):
        c = chr(rng.choice(cps))
        rows.append("".join(rng.choice(sig + [c, c, c]) for _ in range(rng.randrange(1, 9))))
    for _ in range(150):
        rows.append("".join(chr(rng.choice(cps)) for _ in range(rng.randrange(1, 6))))
    return ["P %s %s" % (esc(s), esc(s.lower())) for s in rows]


def main():
    cps = sample_cps()
    cp_lines, by_class = code_point_lines(cps)
    lines = [
        "# unicode_ref.txt: GENERATED by tests/ref/gen_unicode_ref.py -- do not edit.",
        "# Python %s (unicodedata %s), regex %s, tokenizers %s; format: see the script."
        % (sys.version.split()[0], unicodedata.unidata_version, regex.__version__, tokenizers.__version__),
    ]
    lines += decode_cases() + html_cases() + lower_cases(cps) + cp_lines + probe_lines(cps, by_class)
    text = "\n".join(lines) + "\n"
    tmp = OUT + ".tmp.%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, OUT)
    print("wrote %s: %d bytes, %d lines, %d code points" % (OUT, len(text), len(lines), len(cps)))


if __name__ == "__main__":
    main()
