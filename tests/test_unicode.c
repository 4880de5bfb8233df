// test_unicode.c: src/text/unicode.c against Python and the `tokenizers`
// library: tests/data/unicode_ref.txt (from tests/ref/gen_unicode_ref.py) holds
// their answers for UTF-8 decoding, html.unescape, str.lower() with final
// sigma, the class / case / lowercase tables on 20000 code points, and the
// pre-tokenisation pattern's matches, which a small matcher here rebuilds from
// the class bits (the way src/text/bpe.c uses them).
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "test.h"
#include "text/unicode.h"

#define REF "tests/data/unicode_ref.txt"

// ---------------------------------------------------------------- the fixture

static char *ref_text;    // the whole file, lines split in place
static char **ref_lines;  // (ref_nlines)
static int ref_nlines;

static int load_ref(void) {
    if (ref_text) return 1;
    size_t len;
    ref_text = dalle_read_file(REF, &len);
    if (!ref_text) {
        fprintf(stderr, "  %s\n", dalle_last_error());
        return 0;
    }
    int cap = 1;
    for (size_t i = 0; i < len; i++) cap += ref_text[i] == '\n';
    ref_lines = dalle_malloc(sizeof(char *) * (size_t)cap);
    for (char *p = ref_text; *p;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        if (*p && *p != '#') ref_lines[ref_nlines++] = p;
        if (!e) break;
        p = e + 1;
    }
    return 1;
}

// Splits LINE (modified) at spaces into f[0..max); returns the count.
static int fields(char *line, char **f, int max) {
    int n = 0;
    for (char *p = strtok(line, " "); p && n < max; p = strtok(NULL, " ")) f[n++] = p;
    return n;
}

// Percent-unescapes the field s into out (room strlen(s)); "%" alone is "".
static size_t unesc(const char *s, uint8_t *out) {
    size_t n = 0;
    if (!strcmp(s, "%")) return 0;
    for (; *s; s++) {
        if (*s == '%') {
            char h[3] = {s[1], s[2], 0};
            out[n++] = (uint8_t)strtoul(h, NULL, 16);
            s += 2;
        } else {
            out[n++] = (uint8_t)*s;
        }
    }
    return n;
}

// Parses '.'-separated hex code points into cp[0..max); returns the count.
static int parse_cps(const char *s, uint32_t *cp, int max) {
    int n = 0;
    for (char *e; *s && n < max; s = *e ? e + 1 : e) cp[n++] = (uint32_t)strtoul(s, &e, 16);
    return n;
}

// A copy of the lines of kind K ("H", "P", ...) for strtok to cut up; free with dalle_free.
static char *line_copy(int i, char kind) {
    if (ref_lines[i][0] != kind || ref_lines[i][1] != ' ') return NULL;
    return dalle_strdup(ref_lines[i] + 2);
}

static void print_bytes(const char *what, const uint8_t *s, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", s[i]);
    fprintf(stderr, "\n");
}

// ---------------------------------------------------------------- UTF-8

// The prefix length of s[0..n) that is a valid UTF-8 sequence, 0 if none:
// a second decoder, from the code point ranges of each length.
static size_t valid_prefix(const uint8_t *s, size_t n) {
    static const uint32_t lo[5] = {0, 0, 0x80, 0x800, 0x10000}, hi[5] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
    size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xC0 && s[0] < 0xE0 ? 2 : s[0] >= 0xE0 && s[0] < 0xF0 ? 3
               : s[0] >= 0xF0 && s[0] < 0xF8 ? 4 : 0;
    if (!len || len > n) return 0;
    uint32_t cp = len == 1 ? s[0] : s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < lo[len] || cp > hi[len] || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static void test_utf8(void) {
    // every code point round-trips; every pseudo code point is its byte
    int bad = 0;
    for (uint32_t c = 0; c < UNI_BAD_BYTE + 256; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        uint8_t b[4];
        uint32_t d;
        size_t k = uni_encode(c, b);
        if (c >= UNI_BAD_BYTE) {
            bad += k != 1 || b[0] != c - UNI_BAD_BYTE;
            continue;
        }
        bad += uni_decode(b, k, &d) != k || d != c || (k == 1) != (c < 0x80);
    }
    CHECK(bad == 0);
    // every 1-, 2- and 3-byte string, and 4-byte ones (F0-F5 xx xx 80), against the second decoder
    bad = 0;
    for (uint32_t x = 0; x < (1u << 24); x++) {
        uint8_t s[4] = {(uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x, 0x80};
        for (size_t n = 1; n <= 4; n++) {
            if (n == 4 && (s[0] < 0xF0 || s[0] > 0xF5)) continue;
            uint32_t cp;
            size_t k = uni_decode(s, n, &cp), v = valid_prefix(s, n);
            uint8_t e[4];
            if (v) bad += k != v || uni_encode(cp, e) != v || memcmp(e, s, v);
            else bad += k != 1 || cp != UNI_BAD_BYTE + s[0];
        }
    }
    CHECK(bad == 0);
    // Python's decoder with surrogateescape, one code point or rejected byte at a time
    if (!load_ref()) {
        CHECK(0);
        return;
    }
    int n = 0;
    bad = 0;
    for (int i = 0; i < ref_nlines; i++) {
        char *l = line_copy(i, 'D'), *f[3];
        if (!l) continue;
        CHECK(fields(l, f, 3) == 2);
        uint8_t s[64];
        uint32_t want[64], cp;
        size_t len = strlen(f[0]) / 2;
        for (size_t j = 0; j < len; j++) {
            char h[3] = {f[0][2 * j], f[0][2 * j + 1], 0};
            s[j] = (uint8_t)strtoul(h, NULL, 16);
        }
        int m = parse_cps(f[1], want, 64), got = 0, ok = 1;
        for (size_t j = 0; j < len; got++) {
            j += uni_decode(s + j, len - j, &cp);
            ok &= got < m && cp == want[got];
        }
        ok &= got == m;
        if (!ok && bad++ < 5) print_bytes("decode differs", s, len);
        n++;
        dalle_free(l);
    }
    printf("    %d byte strings against Python's decoder\n", n);
    CHECK(n > 500 && bad == 0);
}

// ---------------------------------------------------------------- tables

typedef struct {
    uint32_t cp, lower[2][3];
    int nlower[2];
} lower_ref;

static int cmp_lower_ref(const void *a, const void *b) {
    uint32_t x = ((const lower_ref *)a)->cp, y = ((const lower_ref *)b)->cp;
    return (x > y) - (x < y);
}

static void test_tables(void) {
    if (!load_ref()) {
        CHECK(0);
        return;
    }
    // the sampled code points that change under lowercase ("M" lines)
    lower_ref *low = dalle_malloc(sizeof(lower_ref) * (size_t)ref_nlines);
    int nlow = 0;
    for (int i = 0; i < ref_nlines; i++) {
        char *l = line_copy(i, 'M'), *f[3];
        if (!l) continue;
        CHECK(fields(l, f, 3) == 3);
        lower_ref *r = &low[nlow++];
        r->cp = (uint32_t)strtoul(f[0], NULL, 16);
        r->nlower[0] = parse_cps(f[1], r->lower[0], 3);
        r->nlower[1] = parse_cps(f[2], r->lower[1], 3);
        dalle_free(l);
    }
    qsort(low, (size_t)nlow, sizeof *low, cmp_lower_ref);

    int n = 0, bad_cls[2] = {0, 0}, bad_case = 0, bad_lower[2] = {0, 0}, found = 0;
    uint32_t cp = 0;
    unsigned cls = 0, cs = 0;
    for (int i = 0; i < ref_nlines; i++) {
        char *l = line_copy(i, 'C'), *f[64];
        if (!l) continue;
        int nf = fields(l, f, 64);
        for (int j = 0; j < nf; j++) {
            char *e;
            cp += (uint32_t)strtoul(f[j], &e, 16);
            if (*e == ':') {
                unsigned v = (unsigned)strtoul(e + 1, NULL, 16);
                cls = v >> 4;
                cs = v & 15;
            }
            n++;
            for (int fl = 0; fl < 2; fl++) {
                unsigned got = uni_class((uni_flavor)fl, cp), want = (cls >> (4 * fl)) & 15;
                if (got != want && bad_cls[fl]++ < 5)
                    fprintf(stderr, "    %s class of U+%04X: %u, want %u\n", fl ? "HF" : "CLIP", cp, got, want);
            }
            unsigned gc = (unsigned)uni_cased(cp) | (unsigned)uni_case_ignorable(cp) << 1;
            if (gc != cs && bad_case++ < 5) fprintf(stderr, "    case bits of U+%04X: %u, want %u\n", cp, gc, cs);
            lower_ref key = {.cp = cp}, *r = bsearch(&key, low, (size_t)nlow, sizeof *low, cmp_lower_ref);
            found += r != NULL;
            for (int fl = 0; fl < 2; fl++) {
                uint32_t out[3], self[1] = {cp};
                int m = uni_lower((uni_flavor)fl, cp, out), wm = r ? r->nlower[fl] : 1;
                const uint32_t *want = r ? r->lower[fl] : self;
                if ((m != wm || memcmp(out, want, sizeof(uint32_t) * (size_t)m)) && bad_lower[fl]++ < 5)
                    fprintf(stderr, "    %s lower of U+%04X: U+%04X (%d), want U+%04X (%d)\n", fl ? "HF" : "CLIP",
                            cp, out[0], m, want[0], wm);
            }
        }
        dalle_free(l);
    }
    printf("    %d code points (%d with a lowercase): class mismatches CLIP %d HF %d, case %d, "
           "lower CLIP %d HF %d\n", n, found, bad_cls[0], bad_cls[1], bad_case, bad_lower[0], bad_lower[1]);
    CHECK(n >= 20000 && found == nlow && nlow > 1000);
    CHECK(!bad_cls[0] && !bad_cls[1] && !bad_case && !bad_lower[0] && !bad_lower[1]);
    dalle_free(low);

    // pseudo code points have nothing; a few known answers
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t out[3];
        CHECK(uni_class(UNI_CLIP, UNI_BAD_BYTE + b) == 0 && uni_class(UNI_HF, UNI_BAD_BYTE + b) == 0);
        CHECK(uni_lower(UNI_HF, UNI_BAD_BYTE + b, out) == 1 && out[0] == UNI_BAD_BYTE + b);
        CHECK(!uni_cased(UNI_BAD_BYTE + b) && !uni_case_ignorable(UNI_BAD_BYTE + b));
    }
    uint32_t out[3];
    CHECK(uni_lower(UNI_CLIP, 0x130, out) == 2 && out[0] == 'i' && out[1] == 0x307);
    CHECK(uni_lower(UNI_HF, 0x130, out) == 2 && out[0] == 'i' && out[1] == 0x307);
    CHECK(uni_lower(UNI_CLIP, 0x3A3, out) == 1 && out[0] == 0x3C3);
    CHECK(uni_class(UNI_CLIP, 0x1C) == UNI_WS && uni_class(UNI_HF, 0x1C) == 0); // str.isspace only
    CHECK(uni_class(UNI_CLIP, 0x85) == (UNI_S | UNI_WS) && uni_class(UNI_HF, 0x85) == (UNI_S | UNI_WS));
    CHECK(uni_class(UNI_CLIP, 0x345) == UNI_S && uni_class(UNI_HF, 0x345) == 0);
    CHECK(uni_case_ignorable('\'') && uni_case_ignorable(0xB7) && uni_cased('A') && !uni_cased('1'));
    CHECK(uni_ifold('S', 's') && uni_ifold(0x17F, 's') && !uni_ifold(0x17F, 't') && uni_ifold('l', 'l'));
    CHECK(!uni_ifold('k', 's') && !uni_ifold(0x212A, 'd'));
}

// ---------------------------------------------------------------- html.unescape, str.lower()

// Runs the "H" (html.unescape) or "P" (str.lower) lines; out is allocated to
// exactly the room the contract asks (2n + 8, 3n), so ASan sees any overrun.
static void check_strings(char kind) {
    if (!load_ref()) {
        CHECK(0);
        return;
    }
    int n = 0, bad = 0;
    size_t grown = 0;
    for (int i = 0; i < ref_nlines; i++) {
        char *l = line_copy(i, kind), *f[3];
        if (!l) continue;
        CHECK(fields(l, f, 3) == 2);
        size_t ns = strlen(f[0]), nw = strlen(f[1]);
        uint8_t *s = malloc(ns + 1), *want = malloc(nw + 1);
        ns = unesc(f[0], s);
        nw = unesc(f[1], want);
        size_t room = kind == 'H' ? 2 * ns + 8 : 3 * ns;
        uint8_t *out = malloc(room ? room : 1);
        size_t m = kind == 'H' ? uni_html_unescape(s, ns, out) : uni_lower_python(s, ns, out);
        if (m > ns && m - ns > grown) grown = m - ns;
        if ((m != nw || memcmp(out, want, m)) && bad++ < 5) {
            print_bytes("input", s, ns);
            print_bytes("got  ", out, m);
            print_bytes("want ", want, nw);
        }
        n++;
        free(s);
        free(want);
        free(out);
        dalle_free(l);
    }
    printf("    %d strings, %d differ from Python; most growth %zu bytes\n", n, bad, grown);
    CHECK(n > 400 && bad == 0);
}

static void test_html_unescape(void) {
    check_strings('H');
    // the 2n + 8 room on random strings of reference pieces (ASan sees an overrun)
    static const char *const piece[] = {"&", "#", "x", "1", "9", ";", "nGt", "ngE", "amp", "lt", "\xff",
                                        "\xc3\xa9", "\xe2\x82", "&nGt;", "&#0", "&#x10000", "&acE"};
    uint64_t z = 1;
    size_t most = 0;
    for (int t = 0; t < 20000; t++) {
        uint8_t s[256];
        size_t n = 0;
        for (int k = (int)(z % 40); k >= 0; k--) {
            z = z * 6364136223846793005ull + 1442695040888963407ull;
            const char *p = piece[(z >> 33) % (sizeof piece / sizeof *piece)];
            memcpy(s + n, p, strlen(p));
            n += strlen(p);
        }
        uint8_t *out = malloc(2 * n + 8);
        size_t m = uni_html_unescape(s, n, out);
        CHECK(m <= 2 * n);
        most = DALLE_MAX(most, m * 100 / n);
        free(out);
    }
    printf("    random references: output at most %zu%% of the input\n", most);
}
static void test_lower_python(void) { check_strings('P'); }

// ---------------------------------------------------------------- the pattern

// 's|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ over cp[0..n):
// writes the matches' [start, end) into se, returns their count. CLIP matches
// the contractions' letters under IGNORECASE, HF exactly.
static int pretokenize(uni_flavor f, const uint32_t *cp, int n, int *se) {
    static const char *const contr[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    int k = 0;
    for (int i = 0; i < n;) {
        int end = -1;
        if (cp[i] == '\'') {
            for (int c = 0; c < 7 && end < 0; c++) {
                int len = (int)strlen(contr[c]), ok = i + len < n;
                for (int j = 0; ok && j < len; j++) {
                    uint32_t x = cp[i + 1 + j];
                    ok = x == (uint32_t)contr[c][j] || (f == UNI_CLIP && uni_ifold(x, contr[c][j]));
                }
                if (ok) end = i + 1 + len;
            }
        }
        unsigned c0 = uni_class(f, cp[i]);
        if (end >= 0) {
        } else if (c0 & UNI_L) {
            for (end = i + 1; end < n && (uni_class(f, cp[end]) & UNI_L);) end++;
        } else if (c0 & UNI_N) {
            end = i + 1;
        } else if (!(c0 & UNI_S)) {
            for (end = i + 1; end < n && !(uni_class(f, cp[end]) & (UNI_L | UNI_N | UNI_S));) end++;
        } else {
            i++;
            continue;
        }
        se[2 * k] = i;
        se[2 * k + 1] = end;
        k++;
        i = end;
    }
    return k;
}

static void test_pattern(void) {
    if (!load_ref()) {
        CHECK(0);
        return;
    }
    int n = 0, bad = 0;
    for (int i = 0; i < ref_nlines; i++) {
        char *l = line_copy(i, 'T'), *f[128];
        if (!l) continue;
        int nf = fields(l, f, 128);
        uint8_t s[256], tok[256];
        size_t ns = unesc(f[0], s);
        uint32_t cp[256];
        size_t off[257];
        int ncp = 0;
        for (size_t j = 0; j < ns; ncp++) {
            off[ncp] = j;
            j += uni_decode(s + j, ns - j, &cp[ncp]);
        }
        off[ncp] = ns;
        int nclip = atoi(f[1]);
        for (int fl = 0; fl < 2; fl++) {
            int se[512], k = pretokenize((uni_flavor)fl, cp, ncp, se);
            int first = fl ? 2 + nclip : 2, want = fl ? nf - 2 - nclip : nclip, ok = k == want;
            for (int t = 0; ok && t < k; t++) {
                size_t nt = unesc(f[first + t], tok), a = off[se[2 * t]], b = off[se[2 * t + 1]];
                ok = nt == b - a && !memcmp(tok, s + a, nt);
            }
            if (!ok && bad++ < 5) {
                fprintf(stderr, "    %s: %d matches, want %d\n", fl ? "HF" : "CLIP", k, want);
                print_bytes("probe", s, ns);
            }
        }
        n++;
        dalle_free(l);
    }
    printf("    %d probes, %d differ from the engines\n", n, bad);
    CHECK(n > 30 && bad == 0);
}

int main(void) {
    RUN(test_utf8);
    RUN(test_tables);
    RUN(test_html_unescape);
    RUN(test_lower_python);
    RUN(test_pattern);
    dalle_free(ref_lines);
    dalle_free(ref_text);
    return test_summary();
}
