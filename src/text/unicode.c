// unicode.c: UTF-8 decoding, the table lookups that are not inline, and the two
// whole-string functions CLIP's cleaning needs from CPython: html.unescape
// (Python 3.11's Lib/html/__init__.py, ported over bytes) and str.lower() with
// its final-sigma rule (Objects/unicodeobject.c, handle_capital_sigma). The
// tables are src/text/unicode_tables.h, from tools/gen_unicode_tables.py.
#define UNI_TABLES_DEFINE
#include "text/unicode.h"

#include <string.h>

#include "core/common.h"

size_t uni_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint32_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    // the strict decoder's table: the length and the allowed range of the second byte
    size_t len;
    uint32_t lo = 0x80, hi = 0xBF, c;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
        c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        c = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0; // overlong
        if (b0 == 0xED) hi = 0x9F; // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        c = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90; // overlong
        if (b0 == 0xF4) hi = 0x8F; // > U+10FFFF
    } else {
        goto bad;
    }
    if (n < len || s[1] < lo || s[1] > hi) goto bad;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) goto bad;
        c = (c << 6) | (s[i] & 0x3F);
    }
    *cp = c;
    return len;
bad:
    *cp = UNI_BAD_BYTE + b0;
    return 1;
}

size_t uni_encode(uint32_t cp, uint8_t out[4]) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp < UNI_BAD_BYTE) {
        out[0] = (uint8_t)(0xF0 | (cp >> 18));
        out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (uint8_t)(0x80 | (cp & 0x3F));
        return 4;
    }
    DALLE_ASSERT(cp < UNI_BAD_BYTE + 256);
    out[0] = (uint8_t)(cp - UNI_BAD_BYTE);
    return 1;
}

int uni_lower_multi(uni_flavor f, uint32_t cp, uint32_t out[3]) {
    for (int i = 0; i < UNI_LOWER_NMULTI; i++) {
        const uni_lower_multi_entry *e = &uni_lower_multi_tab[i];
        if (e->cp == cp && e->flavor == (uint8_t)f) {
            memcpy(out, e->out, sizeof e->out);
            return e->n;
        }
    }
    DALLE_ASSERT(!"UNI_LOWER_MULTI without an entry");
    return 0;
}

int uni_ifold(uint32_t cp, char c) {
    for (int i = 0; i < UNI_IFOLD_N; i++)
        if (uni_ifold_tab[i].letter == c && uni_ifold_tab[i].cp == cp) return 1;
    return 0;
}

// ---------------------------------------------------------------- html.unescape

// The named reference s[0..n) (ASCII), or NULL: binary search by bytes.
static const char *html_entity(const uint8_t *s, size_t n) {
    size_t lo = 0, hi = UNI_HTML_NENT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *name = uni_html_entities[mid].name;
        size_t m = strlen(name);
        int c = memcmp(name, s, DALLE_MIN(m, n));
        if (c == 0) c = (m > n) - (m < n);
        if (c == 0) return uni_html_entities[mid].value;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

// _replace_charref for a numeric reference of value num (saturated above
// U+10FFFF): writes its replacement to out, returns the bytes written.
static size_t html_numeric(uint32_t num, uint8_t *out) {
    for (int i = 0; i < UNI_HTML_NCHARREF; i++)
        if (uni_html_charref_from[i] == num) return uni_encode(uni_html_charref_to[i], out);
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return uni_encode(0xFFFD, out);
    size_t lo = 0, hi = UNI_HTML_NBADCP;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uni_html_badcp[mid] == num) return 0;
        if (uni_html_badcp[mid] < num) lo = mid + 1;
        else hi = mid;
    }
    return uni_encode(num, out);
}

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static int hex_value(uint8_t c) {
    if (is_digit(c)) return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// Python's regex &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) runs
// on code points; here a name counts its code points by decoding (an invalid
// byte is one), and since every name in the table is ASCII, a prefix of x code
// points can only match when they are x ASCII bytes. Each replacement is at
// most twice the bytes it replaces (the generator checks the named values;
// a numeric reference of >= 3 bytes gives <= 4, and only from >= 7), the rest
// is copied, so the output is at most 2n bytes.
size_t uni_html_unescape(const uint8_t *s, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        const uint8_t *amp = memchr(s + i, '&', n - i);
        size_t run = amp ? (size_t)(amp - (s + i)) : n - i;
        memcpy(out + o, s + i, run);
        o += run;
        i += run;
        if (i == n) break;
        size_t j = i + 1; // after '&'
        if (j < n && s[j] == '#') {
            size_t k = j + 1;
            uint32_t num = 0;
            const uint32_t sat = 0x110000; // anything above U+10FFFF gives U+FFFD
            if (k < n && is_digit(s[k])) {
                for (; k < n && is_digit(s[k]); k++) num = DALLE_MIN(num * 10 + (s[k] - '0'), sat);
            } else if (k + 1 < n && (s[k] | 0x20) == 'x' && hex_value(s[k + 1]) >= 0) {
                for (k++; k < n && hex_value(s[k]) >= 0; k++) num = DALLE_MIN(num * 16 + (uint32_t)hex_value(s[k]), sat);
            } else {
                out[o++] = '&';
                i = j;
                continue;
            }
            if (k < n && s[k] == ';') k++;
            o += html_numeric(num, out + o);
            i = k;
            continue;
        }
        // a name: 1..32 code points outside \t \n \f space < & # ;
        size_t p = j, ncp = 0;
        while (p < n && ncp < 32) {
            uint8_t b = s[p];
            if (b == '\t' || b == '\n' || b == '\f' || b == ' ' || b == '<' || b == '&' || b == '#' || b == ';')
                break;
            uint32_t cp;
            p += uni_decode(s + p, n - p, &cp);
            ncp++;
        }
        if (ncp == 0) {
            out[o++] = '&';
            i = j;
            continue;
        }
        size_t end = p;
        if (end < n && s[end] == ';') end++, ncp++;
        const char *v = html_entity(s + j, end - j);
        if (v) {
            size_t m = strlen(v);
            memcpy(out + o, v, m);
            o += m;
            i = end;
            continue;
        }
        // the longest prefix of x code points, len(name) - 1 >= x >= 2
        size_t ascii = 0;
        while (j + ascii < end && s[j + ascii] < 0x80) ascii++;
        size_t x = DALLE_MIN(ncp - 1, ascii);
        for (; x >= 2; x--)
            if ((v = html_entity(s + j, x))) break;
        if (v && x >= 2) {
            size_t m = strlen(v);
            memcpy(out + o, v, m);
            o += m;
            memcpy(out + o, s + j + x, end - j - x);
            o += end - j - x;
        } else {
            memcpy(out + o, s + i, end - i); // '&' + the name, unchanged
            o += end - i;
        }
        i = end;
    }
    return o;
}

// ---------------------------------------------------------------- str.lower()

size_t uni_lower_python(const uint8_t *s, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    int prev_cased = 0; // Cased of the last code point before i that is not case-ignorable
    while (i < n) {
        uint32_t cp, low[3];
        size_t k = uni_decode(s + i, n - i, &cp);
        if (cp == 0x3A3) {
            // final sigma: \p{cased}\p{case-ignorable}* Σ !(\p{case-ignorable}*\p{cased})
            int final = prev_cased;
            for (size_t j = i + k; final && j < n;) {
                uint32_t c;
                j += uni_decode(s + j, n - j, &c);
                if (!uni_case_ignorable(c)) {
                    final = !uni_cased(c);
                    break;
                }
            }
            o += uni_encode(final ? 0x3C2 : 0x3C3, out + o);
        } else {
            int m = uni_lower(UNI_CLIP, cp, low);
            for (int t = 0; t < m; t++) o += uni_encode(low[t], out + o);
        }
        if (!uni_case_ignorable(cp)) prev_cased = uni_cased(cp);
        i += k;
    }
    return o;
}
