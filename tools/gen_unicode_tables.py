#!/usr/bin/env python3
"""gen_unicode_tables.py: writes src/text/unicode_tables.h, the Unicode tables of the tokenizer.

    python3 tools/gen_unicode_tables.py            (pip install regex tokenizers)

The BPE tokenizer (src/text/) must split and normalise text exactly as two reference engines do:
  CLIP: OpenAI CLIP's SimpleTokenizer: html.unescape twice, str.strip / str.split / str.lower
        (CPython), the pre-tokenisation pattern compiled by the `regex` module with IGNORECASE;
  HF:   the Hugging Face `tokenizers` library: Replace(\\s+), Strip (Rust char::is_whitespace),
        Lowercase (Rust char::to_lowercase), the pattern run by Oniguruma.
Every table here is derived empirically from those engines over all code points (surrogates
skipped: they never come out of UTF-8 decoding), not from the Unicode data files, so that the
engines' own Unicode versions and quirks are reproduced. The tables:
  class   one byte per code point, two-stage: bits 0-3 CLIP, bits 4-7 HF, each
          L = [\\p{L}], N = [\\p{N}], S = \\s, WS = stripped by strip()/split().
          CLIP's S also holds the code points that its IGNORECASE class [^\\s\\p{L}\\p{N}] rejects
          although they are neither L, N nor \\s (U+0345, whose case fold is a letter): the
          pattern then matches them nowhere, exactly as it treats white space.
  case    CPython's Cased (bit 0) and Case_Ignorable (bit 1) as str.lower()'s final-sigma rule
          sees them, found through that rule itself (see case_bits).
  lower   two-stage int32 deltas, one first stage per flavour over a shared pool of blocks;
          UNI_LOWER_MULTI marks a result of several code points, listed in uni_lower_multi_tab.
  ifold   the code points that the regex module's IGNORECASE matches to s t r e v m l d.
  html    Python 3.11 html.unescape's named references (html.entities.html5), _invalid_charrefs
          and _invalid_codepoints, for the C port in src/text/unicode.c.
Each two-stage table's block size is the power of two in 2^5..2^8 that gives the smallest
header. The run takes about half a minute.
"""
import html
import html.entities
import os
import sys
import time
import unicodedata

import regex
import tokenizers
from tokenizers import Regex
from tokenizers import normalizers as hfn
from tokenizers import pre_tokenizers as hfp

NCP = 0x110000
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "src", "text", "unicode_tables.h")
CPS = [c for c in range(NCP) if not 0xD800 <= c <= 0xDFFF]
ALL = "".join(map(chr, CPS))
L, N, S, WS = 1, 2, 4, 8
LOWER_MULTI = -0x80000000


def clip_match(pattern):
    """bytearray: 1 where the IGNORECASE `regex` pattern matches the code point alone."""
    p = regex.compile(pattern, regex.IGNORECASE)
    a = bytearray(NCP)
    for c in CPS:
        if p.match(chr(c)):
            a[c] = 1
    return a


def hf_match(pattern):
    """bytearray: 1 where Oniguruma (through tokenizers' Split) matches the code point; one call
    over the string of all code points, the matches' offsets are code point indices into it."""
    a = bytearray(NCP)
    split = hfp.Split(Regex(pattern), behavior="removed", invert=True)
    for _, (s, e) in split.pre_tokenize_str(ALL):
        for i in range(s, e):
            a[CPS[i]] = 1
    return a


def class_bits():
    """cls[cp]: CLIP bits in 0-3, HF bits in 4-7; plus the CLIP S extras for the report."""
    cls = [0] * NCP
    extra = []
    for flavor, match in ((0, clip_match), (1, hf_match)):
        l, n, s = match(r"[\p{L}]"), match(r"[\p{N}]"), match(r"\s")
        other = match(r"[^\s\p{L}\p{N}]")
        for c in CPS:
            assert not (s[c] and (l[c] or n[c])), hex(c)
            if not (l[c] or n[c] or s[c] or other[c]):
                # matched by no class of the pattern: the pre-tokeniser skips it as white space
                assert flavor == 0, hex(c)
                s[c] = 1
                extra.append(c)
            assert other[c] == (not (l[c] or n[c] or s[c])), hex(c)
            cls[c] |= (l[c] * L | n[c] * N | s[c] * S) << (4 * flavor)
    strip = hfn.Strip()
    for c in CPS:
        ch = chr(c)
        cls[c] |= (WS if ch.isspace() else 0) | (WS << 4 if strip.normalize_str(ch) == "" else 0)
    # the IGNORECASE classes are those without it
    for pat, bit in ((r"[\p{L}]", L), (r"[\p{N}]", N), (r"\s", S)):
        p = regex.compile(pat)
        assert all(bool(p.match(chr(c))) == bool(cls[c] & bit) for c in CPS if c not in extra)
    return cls, extra


def lower_maps():
    """(clip, hf): dict cp -> lowercase string, for the code points that change."""
    lo = hfn.Lowercase()
    clip, hf = {}, {}
    for c in CPS:
        ch = chr(c)
        x = ch.lower()
        if x != ch:
            clip[c] = x
        x = lo.normalize_str(ch)
        if x != ch:
            hf[c] = x
    return clip, hf


def case_bits():
    """CPython's Cased (1) and Case_Ignorable (2) as handle_capital_sigma uses them:
    T1 = (c + 'Σ').lower() ends in 'ς' iff c is cased and not ignorable;
    T2 = ('A' + c + 'Σ').lower() ends in 'ς' iff c is ignorable or cased.
    So ignorable = T2 and not T1; cased = T1 (all the rule needs: it skips ignorables)."""
    case = bytearray(NCP)
    for c in CPS:
        ch = chr(c)
        t1 = (ch + "Σ").lower()[-1] == "ς"
        t2 = ("A" + ch + "Σ").lower()[-1] == "ς"
        case[c] = (1 if t1 else 0) | (2 if t2 and not t1 else 0)
    assert case[0x27] == 2 and case[0xB7] == 2 and case[ord("A")] == 1 and case[0x3A3] == 1
    assert case[ord("1")] == 0 and case[ord(" ")] == 0
    return case


def ifold_sets():
    """letter -> sorted code points that (?i)letter matches, for the letters of the contractions."""
    sets = {x: [c for c in CPS if regex.match("(?i)" + x, chr(c))] for x in "strevmld"}
    # the contractions, as the pattern has them, match exactly these single code points
    one = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d", regex.IGNORECASE)
    want = set(sets["s"] + sets["t"] + sets["m"] + sets["d"])
    assert all(bool(one.fullmatch("'" + chr(c))) == (c in want) for c in CPS)
    return sets


def two_stage(tables, esize, zero):
    """Splits the tables (lists of NCP values) into one first stage each over a shared pool of
    blocks; picks the block shift in 5..8 with the smallest text. Block 0 is the first block of
    tables[0] (so cp < block size reads the pool directly), then the all-`zero` block."""
    best = None
    for shift in range(5, 9):
        bs = 1 << shift
        pool, blocks, index = {}, [], []
        for key in [tuple(tables[0][:bs]), tuple([zero] * bs)]:
            pool.setdefault(key, len(blocks))
            if len(blocks) < len(pool):
                blocks.append(key)
        for t in tables:
            idx = []
            for b in range(0, NCP, bs):
                key = tuple(t[b:b + bs])
                if key not in pool:
                    pool[key] = len(blocks)
                    blocks.append(key)
                idx.append(pool[key])
            index.append(idx)
        text = sum(len(str(v)) + 1 for blk in blocks for v in blk) + sum(len(str(v)) + 1 for i in index for v in i)
        if best is None or text < best[0]:
            best = (text, shift, index, blocks)
    _, shift, index, blocks = best
    assert len(blocks) <= 256, "first stage entries are uint8_t"
    return shift, index, blocks


def c_array(decl, values, per_line=32):
    lines = [decl + " = {"]
    vals = [str(v) for v in values]
    for i in range(0, len(vals), per_line):
        lines.append("    " + ",".join(vals[i:i + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def c_str(b):
    """C string literal of bytes b (octal escapes: never run into the next character)."""
    out = []
    for x in b:
        ch = chr(x)
        if 0x20 <= x < 0x7F and ch not in '"\\?':
            out.append(ch)
        else:
            out.append("\\%03o" % x)
    return '"' + "".join(out) + '"'


def main():
    t0 = time.time()
    cls, extra = class_bits()
    clip_lower, hf_lower = lower_maps()
    case = case_bits()
    ifold = ifold_sets()
    print("engines done in %.1fs" % (time.time() - t0), file=sys.stderr)

    # differences between the flavours, for the header and the report
    diffs = {}
    for name, bit in (("L", L), ("N", N), ("S", S), ("WS", WS)):
        diffs[name] = [c for c in CPS if bool(cls[c] & bit) != bool(cls[c] & (bit << 4))]
    diffs["lower"] = [c for c in CPS if clip_lower.get(c) != hf_lower.get(c)]

    # lowercase deltas; the multi-code-point results go to a list
    multi = []
    lower_tabs = []
    for m in (clip_lower, hf_lower):
        t = [0] * NCP
        for c, s in m.items():
            if len(s) == 1:
                t[c] = ord(s) - c
                assert t[c] != LOWER_MULTI
            else:
                assert 2 <= len(s) <= 3
                t[c] = LOWER_MULTI
        lower_tabs.append(t)
    for c in sorted(set(c for m in (clip_lower, hf_lower) for c, s in m.items() if len(s) > 1)):
        for f, m in enumerate((clip_lower, hf_lower)):
            s = m.get(c, chr(c))
            if len(s) > 1:
                multi.append((c, f, [ord(x) for x in s]))
    # str.lower on UTF-8 never grows more than 3x (out room 3n): per code point, bytes out / in
    grow = max(len(m.get(c, chr(c)).encode()) / len(chr(c).encode()) for m in (clip_lower, hf_lower) for c in m)
    assert grow <= 3
    # ASCII lowercases to ASCII in both flavours (the fast paths rely on it)
    for t in lower_tabs:
        assert all(t[c] == (32 if 0x41 <= c <= 0x5A else 0) for c in range(0x80))

    cls_shift, cls_index, cls_blocks = two_stage([cls], 1, 0)
    case_shift, case_index, case_blocks = two_stage([list(case)], 1, 0)
    low_shift, low_index, low_blocks = two_stage(lower_tabs, 4, 0)

    # html.unescape: named references sorted by bytes; every value at most twice its reference
    ents = sorted((k.encode(), v.encode()) for k, v in html.entities.html5.items())
    assert all(k.isascii() and 1 <= len(k) <= 32 + 1 for k, _ in ents)
    ratio = max(len(v) / (1 + len(k)) for k, v in ents)
    assert ratio <= 2
    maxval = max(len(v) for _, v in ents)
    charrefs = sorted(html._invalid_charrefs.items())
    badcps = sorted(html._invalid_codepoints)
    assert all(c <= 0xFFFF for c, _ in charrefs)

    out = []
    w = out.append
    w("// unicode_tables.h: GENERATED by tools/gen_unicode_tables.py -- do not edit.")
    w("// The Unicode tables of the tokenizer (src/text/unicode.c), derived empirically from the")
    w("// reference engines over every code point:")
    w("//   Python %s (unicodedata %s), regex %s, tokenizers %s."
      % (sys.version.split()[0], unicodedata.unidata_version, regex.__version__, tokenizers.__version__))
    w("// Differences between the flavours (code points): L %d, N %d, S %d, WS %d, lowercase %d."
      % tuple(len(diffs[k]) for k in ("L", "N", "S", "WS", "lower")))
    w("// CLIP S also holds %s (rejected by CLIP's IGNORECASE [^\\s\\p{L}\\p{N}])."
      % ", ".join("U+%04X" % c for c in extra))
    w("// Largest lowercase growth in UTF-8 bytes per code point: %.2fx; largest named reference" % grow)
    w("// value per reference byte: %.2fx (so html unescaping at most doubles its input)." % ratio)
    w("// Included by src/text/unicode.h (layout macros and declarations) and, with")
    w("// UNI_TABLES_DEFINE, by src/text/unicode.c (the tables).")
    w("#pragma once")
    w("#include <stdint.h>")
    w("")
    w("// class: bits 0-3 CLIP, 4-7 HF (UNI_L, UNI_N, UNI_S, UNI_WS); two-stage over blocks of")
    w("// 1 << UNI_CLASS_SHIFT; block 0 covers code points 0 .. block size - 1.")
    w("#define UNI_CLASS_SHIFT %d" % cls_shift)
    w("#define UNI_CLASS_NBLOCKS %d" % len(cls_blocks))
    w("extern const uint8_t uni_class_index[0x110000 >> UNI_CLASS_SHIFT];")
    w("extern const uint8_t uni_class_blocks[UNI_CLASS_NBLOCKS << UNI_CLASS_SHIFT];")
    w("// case: bit 0 CPython's Cased, bit 1 Case_Ignorable (as str.lower()'s final sigma sees them)")
    w("#define UNI_CASE_SHIFT %d" % case_shift)
    w("#define UNI_CASE_NBLOCKS %d" % len(case_blocks))
    w("extern const uint8_t uni_case_index[0x110000 >> UNI_CASE_SHIFT];")
    w("extern const uint8_t uni_case_blocks[UNI_CASE_NBLOCKS << UNI_CASE_SHIFT];")
    w("// lower: cp + delta, or UNI_LOWER_MULTI: look the code point up in uni_lower_multi_tab")
    w("#define UNI_LOWER_SHIFT %d" % low_shift)
    w("#define UNI_LOWER_NBLOCKS %d" % len(low_blocks))
    w("#define UNI_LOWER_MULTI INT32_MIN")
    w("extern const uint8_t uni_lower_index[2][0x110000 >> UNI_LOWER_SHIFT]; // [flavor]")
    w("extern const int32_t uni_lower_blocks[UNI_LOWER_NBLOCKS << UNI_LOWER_SHIFT];")
    w("typedef struct { uint32_t cp; uint8_t flavor, n; uint32_t out[3]; } uni_lower_multi_entry;")
    w("#define UNI_LOWER_NMULTI %d" % len(multi))
    w("extern const uni_lower_multi_entry uni_lower_multi_tab[UNI_LOWER_NMULTI]; // by cp, flavor")
    w("// ifold: (letter, code point) pairs, by letter then code point")
    nfold = sum(len(v) for v in ifold.values())
    w("#define UNI_IFOLD_N %d" % nfold)
    w("typedef struct { char letter; uint32_t cp; } uni_ifold_entry;")
    w("extern const uni_ifold_entry uni_ifold_tab[UNI_IFOLD_N];")
    w("// html: named references by name bytes (with and without ';'); values are UTF-8")
    w("#define UNI_HTML_NENT %d" % len(ents))
    w("#define UNI_HTML_MAXVAL %d // bytes" % maxval)
    w("typedef struct { const char *name, *value; } uni_html_entity;")
    w("extern const uni_html_entity uni_html_entities[UNI_HTML_NENT];")
    w("#define UNI_HTML_NCHARREF %d" % len(charrefs))
    w("extern const uint32_t uni_html_charref_from[UNI_HTML_NCHARREF], uni_html_charref_to[UNI_HTML_NCHARREF];")
    w("#define UNI_HTML_NBADCP %d" % len(badcps))
    w("extern const uint32_t uni_html_badcp[UNI_HTML_NBADCP]; // ascending")
    w("")
    w("#ifdef UNI_TABLES_DEFINE")
    w(c_array("const uint8_t uni_class_index[0x110000 >> UNI_CLASS_SHIFT]", cls_index[0]))
    w(c_array("const uint8_t uni_class_blocks[UNI_CLASS_NBLOCKS << UNI_CLASS_SHIFT]",
              [v for b in cls_blocks for v in b]))
    w(c_array("const uint8_t uni_case_index[0x110000 >> UNI_CASE_SHIFT]", case_index[0]))
    w(c_array("const uint8_t uni_case_blocks[UNI_CASE_NBLOCKS << UNI_CASE_SHIFT]",
              [v for b in case_blocks for v in b]))
    w("const uint8_t uni_lower_index[2][0x110000 >> UNI_LOWER_SHIFT] = {")
    for idx in low_index:
        w(c_array("", idx).replace(" = {", "{", 1).replace("\n};", "\n},"))
    w("};")
    w(c_array("const int32_t uni_lower_blocks[UNI_LOWER_NBLOCKS << UNI_LOWER_SHIFT]",
              ["INT32_MIN" if v == LOWER_MULTI else v for b in low_blocks for v in b], 16))
    w("const uni_lower_multi_entry uni_lower_multi_tab[UNI_LOWER_NMULTI] = {")
    for c, f, o in multi:
        w("    {0x%04X, %d, %d, {%s}}," % (c, f, len(o), ", ".join("0x%04X" % x for x in o + [0] * (3 - len(o)))))
    w("};")
    w("const uni_ifold_entry uni_ifold_tab[UNI_IFOLD_N] = {")
    pairs = ["{'%s', 0x%04X}," % (x, c) for x in sorted(ifold) for c in ifold[x]]
    for i in range(0, len(pairs), 8):
        w("    " + " ".join(pairs[i:i + 8]))
    w("};")
    w("const uni_html_entity uni_html_entities[UNI_HTML_NENT] = {")
    line = "   "
    for k, v in ents:
        item = " {%s, %s}," % (c_str(k), c_str(v))
        if len(line) + len(item) > 110:
            w(line)
            line = "   "
        line += item
    w(line)
    w("};")
    w(c_array("const uint32_t uni_html_charref_from[UNI_HTML_NCHARREF]", [c for c, _ in charrefs], 16))
    w(c_array("const uint32_t uni_html_charref_to[UNI_HTML_NCHARREF]", [ord(v) for _, v in charrefs], 16))
    w(c_array("const uint32_t uni_html_badcp[UNI_HTML_NBADCP]", ["0x%X" % c for c in badcps], 12))
    w("#endif // UNI_TABLES_DEFINE")
    text = "\n".join(out) + "\n"
    tmp = OUT + ".tmp.%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, OUT)

    print("wrote %s: %d bytes in %.1fs" % (OUT, len(text), time.time() - t0), file=sys.stderr)
    print("  class: shift %d, %d blocks; case: shift %d, %d blocks; lower: shift %d, %d blocks, %d multi"
          % (cls_shift, len(cls_blocks), case_shift, len(case_blocks), low_shift, len(low_blocks), len(multi)),
          file=sys.stderr)
    print("  html: %d names, value/reference <= %.2f; lowercase growth <= %.2fx" % (len(ents), ratio, grow),
          file=sys.stderr)
    for k, v in diffs.items():
        print("  CLIP vs HF %-5s: %5d code points differ, e.g. %s"
              % (k, len(v), " ".join("U+%04X" % c for c in v[:8])), file=sys.stderr)
    print("  CLIP S extras: %s" % " ".join("U+%04X" % c for c in extra), file=sys.stderr)
    for x in sorted(ifold):
        print("  ifold %s: %s" % (x, " ".join("U+%04X" % c for c in ifold[x])), file=sys.stderr)


if __name__ == "__main__":
    main()
