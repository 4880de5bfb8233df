// unicode.h: the Unicode the tokenizer needs (src/text/), exactly as its two
// reference engines see it: UTF-8 decoding as Python's strict decoder, the
// character classes of the pre-tokenisation pattern, white space, lowercase,
// the final-sigma properties and CLIP's html.unescape. Flavour CLIP is OpenAI
// CLIP's SimpleTokenizer (CPython str methods, the `regex` module with
// IGNORECASE); flavour HF is the Hugging Face `tokenizers` library (Rust char
// methods, Oniguruma). The tables come from tools/gen_unicode_tables.py
// (src/text/unicode_tables.h), which derives them from those engines.
//
// Text is handled as UTF-8 bytes; a byte that is not part of a valid sequence
// is the pseudo code point UNI_BAD_BYTE + byte: no class, not cased, lowercases
// to itself, and is written back as the same byte.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "text/unicode_tables.h"

// Pseudo code points for bytes that are not valid UTF-8: UNI_BAD_BYTE + byte.
#define UNI_BAD_BYTE 0x110000u

// Decodes one UTF-8 sequence at s (n >= 1 bytes available); returns the bytes consumed (1-4), *cp the code point.
// Invalid, overlong, surrogate (ED A0..BF ..) or truncated sequences consume 1 byte and give UNI_BAD_BYTE + s[0] (what Python's strict decoder rejects).
size_t uni_decode(const uint8_t *s, size_t n, uint32_t *cp);
// Writes cp as UTF-8 (the raw byte for a pseudo code point); returns bytes written (1-4).
size_t uni_encode(uint32_t cp, uint8_t out[4]);

// \p{L}, \p{N}, regex \s, strip()/split() whitespace. UNI_S in flavour CLIP
// also holds U+0345, which CLIP's IGNORECASE pattern matches nowhere (as it
// does white space); see the generator.
enum { UNI_L = 1, UNI_N = 2, UNI_S = 4, UNI_WS = 8 };
typedef enum { UNI_CLIP = 0, UNI_HF = 1 } uni_flavor;

// Class bits of cp in flavor f; 0 for pseudo code points.
static inline unsigned uni_class(uni_flavor f, uint32_t cp) {
    unsigned v;
    if (cp < (1u << UNI_CLASS_SHIFT)) // block 0 is the first block
        v = uni_class_blocks[cp];
    else if (cp < UNI_BAD_BYTE)
        v = uni_class_blocks[((uint32_t)uni_class_index[cp >> UNI_CLASS_SHIFT] << UNI_CLASS_SHIFT) |
                             (cp & ((1u << UNI_CLASS_SHIFT) - 1))];
    else
        return 0;
    return (v >> (4 * (unsigned)f)) & 15;
}

// The slow part of uni_lower: a result of several code points.
int uni_lower_multi(uni_flavor f, uint32_t cp, uint32_t out[3]);

// Context-free lowercase of cp in flavor f into out; returns the count (1-3). Pseudo code points map to themselves. (Final sigma is the caller's job.)
static inline int uni_lower(uni_flavor f, uint32_t cp, uint32_t out[3]) {
    if (cp < 0x80) { // both flavours: A-Z only
        out[0] = cp + ((cp - 'A' < 26u) << 5);
        return 1;
    }
    if (cp >= UNI_BAD_BYTE) {
        out[0] = cp;
        return 1;
    }
    int32_t d = uni_lower_blocks[((uint32_t)uni_lower_index[f][cp >> UNI_LOWER_SHIFT] << UNI_LOWER_SHIFT) |
                                 (cp & ((1u << UNI_LOWER_SHIFT) - 1))];
    if (d == UNI_LOWER_MULTI) return uni_lower_multi(f, cp, out);
    out[0] = (uint32_t)((int32_t)cp + d);
    return 1;
}

// The case bits of cp (1 Cased, 2 Case_Ignorable); 0 for pseudo code points.
static inline unsigned uni_case_bits_(uint32_t cp) {
    if (cp >= UNI_BAD_BYTE) return 0;
    return uni_case_blocks[((uint32_t)uni_case_index[cp >> UNI_CASE_SHIFT] << UNI_CASE_SHIFT) |
                           (cp & ((1u << UNI_CASE_SHIFT) - 1))];
}
// CPython's Cased, as used by final sigma (meaningful for code points that are not case-ignorable).
static inline int uni_cased(uint32_t cp) { return uni_case_bits_(cp) & 1; }
// CPython's Case_Ignorable.
static inline int uni_case_ignorable(uint32_t cp) { return (uni_case_bits_(cp) >> 1) & 1; }

// 1 if cp matches the ASCII lowercase letter c under the regex module's IGNORECASE (c one of "strevmld").
int uni_ifold(uint32_t cp, char c);

// Python 3.11 html.unescape on the UTF-8 bytes s[0..n) (invalid bytes pass through unchanged and never start or end a reference differently than a non-ASCII code point would), into out, which must have room for 2*n + 8 bytes; returns the output length.
size_t uni_html_unescape(const uint8_t *s, size_t n, uint8_t *out);

// Python's str.lower() (flavour CLIP, with its final-sigma rule) on the UTF-8
// bytes s[0..n) into out, which must have room for 3*n bytes (invalid bytes
// pass through); returns the output length.
size_t uni_lower_python(const uint8_t *s, size_t n, uint8_t *out);
