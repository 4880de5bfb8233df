// test_bpe.c: the text tokenizer (src/text/) against its references.
// Parity: over the ~6 MB corpus of scripts/text-corpus (prose, code, emoji
// names in twelve languages), the ids of CLIP's own tokenizer on CLIP's
// vocabulary, and the ids and normalised text of the `tokenizers` library on
// the vocabulary bpe_train learns from that corpus; tests/data/bpe_ref.txt
// (tests/ref/gen_bpe_ref.py) holds their checksums per 1000 lines and sample
// lines in full. Then: edge inputs, the text layout, dropout, and bad files.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "dalle/bpe.h"
#include "test.h"
#include "text/tokenizer.h"

#define REF "tests/data/bpe_ref.txt"
#define CORPUS "ext/text-corpus.txt"
#define CLIP_VOCAB "ext/bpe_simple_vocab_16e6.txt.gz"

static const uint64_t FNV_OFF = 0xCBF29CE484222325ull, FNV_PRIME = 0x100000001B3ull;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}
static uint64_t fnv_ids(uint64_t h, const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint8_t le[4] = {(uint8_t)ids[i], (uint8_t)(ids[i] >> 8), (uint8_t)(ids[i] >> 16), (uint8_t)(ids[i] >> 24)};
        h = fnv(h, le, 4);
    }
    return fnv(h, "\xff\xff\xff\xff", 4);
}

// ---------------------------------------------------------------- fixture and corpus

static char *ref_text, *corpus;
static size_t corpus_len;
static char **lines;  // (n_lines) into corpus, NUL-terminated in place
static size_t *line_len;
static int n_lines;

// The value after "KEY " on the line starting with KEY (and SUB if given), or NULL.
static const char *ref_find(const char *key, long sub) {
    char pat[64];
    if (sub >= 0) snprintf(pat, sizeof pat, "\n%s %ld ", key, sub);
    else snprintf(pat, sizeof pat, "\n%s ", key);
    const char *p = strstr(ref_text, pat);
    return p ? p + strlen(pat) : NULL;
}

static int load_all(void) {
    if (ref_text) return 1;
    size_t n;
    ref_text = dalle_read_file(REF, &n);
    corpus = dalle_read_file(CORPUS, &corpus_len);
    if (!ref_text || !corpus) {
        fprintf(stderr, "  %s (the corpus is built by `make check` from Debian packages: scripts/setup)\n",
                dalle_last_error());
        return 0;
    }
    int cap = 1;
    for (size_t i = 0; i < corpus_len; i++) cap += corpus[i] == '\n';
    lines = dalle_malloc(sizeof(char *) * (size_t)cap);
    line_len = dalle_malloc(sizeof(size_t) * (size_t)cap);
    for (size_t a = 0; a < corpus_len;) {
        char *e = memchr(corpus + a, '\n', corpus_len - a);
        size_t b = e ? (size_t)(e - corpus) : corpus_len;
        lines[n_lines] = corpus + a;
        line_len[n_lines++] = b - a;
        a = b + 1;
    }
    return 1;
}

// Encodes every line with T and compares the checksum of each chunk with the
// fixture's KEY lines, and the sample lines with KEY_sample. Also checks, for
// "dalle", that decode(encode(line)) is the library's normalised text.
static void check_corpus(bpe_tokenizer *t, const char *key) {
    long chunk = 0, sample = 0, vocab = 0;
    const char *c = ref_find("chunk", -1);
    CHECK(c && sscanf(c, "%ld sample %ld vocab %ld", &chunk, &sample, &vocab) == 3);
    if (!chunk || !sample) return;
    int32_t *ids = dalle_malloc(sizeof(int32_t) * (1 << 20));
    char *text = dalle_malloc(1 << 22);
    int bad_chunks = 0, bad_samples = 0, bad_norm = 0, checked = 0;
    uint64_t h = FNV_OFF, hn = FNV_OFF;
    char samplekey[32];
    snprintf(samplekey, sizeof samplekey, "%s_sample", key);
    for (int i = 0; i < n_lines; i++) {
        int64_t k = bpe_encode(t, lines[i], line_len[i], NULL, ids, 1 << 20);
        CHECK(k >= 0 && k <= (1 << 20));
        h = fnv_ids(h, ids, k);
        if (t->kind == BPE_DALLE) {
            int64_t m = bpe_decode(t, ids, k, text, 1 << 22);
            // bpe_encode left the normalised text in t->norm
            if (m != (int64_t)t->norm.n || memcmp(text, t->norm.p, (size_t)m)) {
                if (bad_norm++ < 3) fprintf(stderr, "  round trip differs on line %d\n", i);
            }
            hn = fnv(fnv(hn, t->norm.p, t->norm.n), "\xff", 1);
        }
        if (i % sample == 0) {
            const char *s = ref_find(samplekey, i);
            int ok = s != NULL;
            for (int64_t j = 0; ok && j < k; j++) {
                char *end;
                long v = strtol(s, &end, 10);
                ok = end != s && v == ids[j];
                s = end;
            }
            ok = ok && (*s == '\n' || *s == 0);
            if (!ok && bad_samples++ < 3) fprintf(stderr, "  %s: sample line %d differs\n", key, i);
        }
        if ((i + 1) % chunk == 0 || i + 1 == n_lines) {
            long ci = i / chunk;
            const char *s = ref_find(key, ci);
            unsigned long long want = s ? strtoull(s, NULL, 16) : 0;
            if (want != h && bad_chunks++ < 3)
                fprintf(stderr, "  %s: chunk %ld (lines %ld..%d) differs\n", key, ci, ci * chunk, i);
            if (t->kind == BPE_DALLE) {
                s = ref_find("norm", ci);
                if (!s || strtoull(s, NULL, 16) != hn) bad_norm++;
            }
            h = hn = FNV_OFF;
            checked++;
        }
    }
    printf("    %s: %d lines, %d chunks: %d chunks differ, %d sample lines differ%s\n", key, n_lines, checked,
           bad_chunks, bad_samples, t->kind == BPE_DALLE ? (bad_norm ? ", normalised text differs" : ", round trip exact")
                                                          : "");
    CHECK(bad_chunks == 0 && bad_samples == 0 && bad_norm == 0);
    dalle_free(ids);
    dalle_free(text);
}

static void test_clip_known(void) {
    bpe_tokenizer *t = bpe_load(CLIP_VOCAB);
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "  %s (scripts/setup fetches it)\n", dalle_last_error());
        return;
    }
    CHECK(bpe_vocab_size(t) == 49408 && bpe_merge_count(t) == 48894 && !strcmp(bpe_kind(t), "clip"));
    CHECK(bpe_special_id(t, "<|startoftext|>") == 49406 && bpe_special_id(t, "<|endoftext|>") == 49407);
    int32_t ids[64];
    const char *s = "A photo of a CAT, sitting on the mat!";
    int64_t k = bpe_encode(t, s, strlen(s), NULL, ids, 64);
    static const int32_t want[] = {320, 1125, 539, 320, 2368, 267, 4919, 525, 518, 9063, 256};
    CHECK(k == 11 && !memcmp(ids, want, sizeof want));
    char out[128];
    int64_t m = bpe_decode(t, ids, k, out, sizeof out);
    const char *back = "a photo of a cat , sitting on the mat ! ";
    CHECK(m == (int64_t)strlen(back) && !memcmp(out, back, strlen(back)));
    // Special tokens in the text are matched whole, as CLIP's pattern does.
    s = "<|startoftext|>hi<|endoftext|>";
    k = bpe_encode(t, s, strlen(s), NULL, ids, 64);
    CHECK(k == 3 && ids[0] == 49406 && ids[2] == 49407);
    bpe_free(t);
}

static void test_clip_parity(void) {
    if (!load_all()) {
        CHECK(0);
        return;
    }
    bpe_tokenizer *t = bpe_load(CLIP_VOCAB);
    CHECK(t != NULL);
    if (t) check_corpus(t, "clip");
    bpe_free(t);
}

static bpe_tokenizer *trained; // the corpus vocabulary, used by later tests

static void test_train_and_hf_parity(void) {
    if (!load_all()) {
        CHECK(0);
        return;
    }
    long vocab = 0;
    const char *c = ref_find("chunk", -1);
    CHECK(c && sscanf(c, "%*d sample %*d vocab %ld", &vocab) == 1);
    bpe_train_opts o = bpe_train_default_opts();
    o.vocab_size = (int)vocab;
    const char *paths[] = {CORPUS};
    double t0 = dalle_time();
    bpe_tokenizer *t = bpe_train(paths, 1, &o);
    CHECK(t != NULL && bpe_vocab_size(t) == vocab);
    if (!t) return;
    printf("    trained %d merges in %.2f s\n", bpe_merge_count(t), dalle_time() - t0);
    char path[64];
    snprintf(path, sizeof path, "/tmp/dalle-test-bpe-%d.json", (int)getpid());
    CHECK(bpe_save(t, path) == DALLE_OK);
    size_t n;
    char *json = dalle_read_file(path, &n);
    const char *want = ref_find("tokenizer", -1);
    // The same file as the one the `tokenizers` ids were made with: training is deterministic.
    CHECK(json && want && strtoull(want, NULL, 16) == fnv(FNV_OFF, json, n));
    bpe_free(t);
    trained = bpe_load(path);
    CHECK(trained != NULL);
    if (trained) check_corpus(trained, "hf");
    dalle_free(json);
    unlink(path);
}

// The heap merge (long pieces, dropout) gives what the rank-array scan gives.
static void test_scan_equals_heap(void) {
    if (!load_all() || !trained) {
        CHECK(0);
        return;
    }
    bpe_tokenizer *t = bpe_load(CLIP_VOCAB);
    CHECK(t != NULL);
    if (!t) return;
    int32_t *a = dalle_malloc(sizeof(int32_t) * (1 << 20)), *b = dalle_malloc(sizeof(int32_t) * (1 << 20));
    int diff = 0;
    for (int which = 0; which < 2; which++) {
        bpe_tokenizer *u = which ? trained : t;
        for (int i = 0; i < n_lines && i < 20000; i++) {
            bpe_scan_max = 1 << 30;
            u->cache_used = 0;
            memset(u->cache, 0, (u->cmask + 1) * sizeof *u->cache);
            int64_t ka = bpe_encode(u, lines[i], line_len[i], NULL, a, 1 << 20);
            bpe_scan_max = 0;
            memset(u->cache, 0, (u->cmask + 1) * sizeof *u->cache);
            int64_t kb = bpe_encode(u, lines[i], line_len[i], NULL, b, 1 << 20);
            if (ka != kb || memcmp(a, b, sizeof(int32_t) * (size_t)ka)) diff++;
        }
    }
    bpe_scan_max = 96;
    memset(t->cache, 0, (t->cmask + 1) * sizeof *t->cache);
    memset(trained->cache, 0, (trained->cmask + 1) * sizeof *trained->cache);
    CHECK(diff == 0);
    dalle_free(a);
    dalle_free(b);
    bpe_free(t);
}

// Any bytes encode, and "dalle" decodes them back to the normalised text.
static void test_edge_inputs(void) {
    if (!trained) {
        CHECK(0);
        return;
    }
    bpe_tokenizer *clip = bpe_load(CLIP_VOCAB);
    CHECK(clip != NULL);
    if (!clip) return;
    int32_t ids[4096];
    char out[8192];
    CHECK(bpe_encode(trained, "", 0, NULL, ids, 4096) == 0);
    bpe_tokenizer *fresh = bpe_load(CLIP_VOCAB); // nothing encoded yet: no id buffer
    int32_t lay[8];
    CHECK(fresh && bpe_layout(fresh, "", 0, NULL, 8, lay) == 0 && lay[7] == 49408 + 7);
    bpe_free(fresh);
    CHECK(bpe_encode(clip, "   \t\n ", 6, NULL, ids, 4096) == 0);
    static const struct {
        const char *s;
        size_t n;
        const char *norm;
        size_t nn;
    } cases[] = {
        {"a\0b", 3, "a\0b", 3},
        {"\xff\xfe \xc3 ok\xe2\x82", 9, "\xff\xfe \xc3 ok\xe2\x82", 9},
        {"  Hello   WORLD  ", 17, "hello world", 11},
        {"\xed\xa0\x80 surrogate", 13, "\xed\xa0\x80 surrogate", 13},
        {"\xc3\x84\xc3\x96 \xce\xa3", 7, "\xc3\xa4\xc3\xb6 \xcf\x83", 7}, // ÄÖ Σ -> äö σ (no final sigma)
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t k = bpe_encode(trained, cases[i].s, cases[i].n, NULL, ids, 4096);
        CHECK(k > 0);
        int64_t m = bpe_decode(trained, ids, k, out, sizeof out);
        CHECK(m == (int64_t)cases[i].nn && !memcmp(out, cases[i].norm, cases[i].nn));
        CHECK(bpe_encode(clip, cases[i].s, cases[i].n, NULL, ids, 4096) > 0);
    }
    // A long line without spaces takes the heap path and stays exact.
    size_t n = 1 << 20;
    char *big = dalle_malloc(n), *back = dalle_malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = "ab"[(i * 7 + i / 5) % 2];
    int32_t *many = dalle_malloc(sizeof(int32_t) * n);
    int64_t k = bpe_encode(trained, big, n, NULL, many, (int64_t)n);
    CHECK(k > 0 && k < (int64_t)n);
    CHECK(bpe_decode(trained, many, k, back, (int64_t)n) == (int64_t)n && !memcmp(big, back, n));
    CHECK(bpe_encode(clip, big, n, NULL, many, (int64_t)n) > 0);
    // snprintf semantics: the count even when the buffer is short.
    CHECK(bpe_encode(trained, "hello world", 11, NULL, ids, 1) == bpe_encode(trained, "hello world", 11, NULL, NULL, 0));
    int32_t bad = bpe_vocab_size(trained);
    CHECK(bpe_decode(trained, &bad, 1, out, sizeof out) == DALLE_ERR && strstr(dalle_last_error(), "not in the vocabulary"));
    dalle_free(big);
    dalle_free(back);
    dalle_free(many);
    bpe_free(clip);
}

static void test_layout_and_dropout(void) {
    if (!trained) {
        CHECK(0);
        return;
    }
    bpe_tokenizer *t = trained;
    int V = bpe_vocab_size(t);
    int32_t ids[256], plain[4096], d1[4096], d2[4096];
    const char *cap = "a small red circle in the top left";
    int k = bpe_layout(t, cap, strlen(cap), NULL, 256, ids);
    int64_t n = bpe_encode(t, cap, strlen(cap), NULL, plain, 4096);
    CHECK(k == n && k > 0 && !memcmp(ids, plain, sizeof(int32_t) * (size_t)k));
    int pads_ok = 1;
    for (int i = k; i < 256; i++) pads_ok &= ids[i] == V + i;
    CHECK(pads_ok);
    // Truncation keeps the first text_len tokens.
    char longcap[4096] = "";
    for (int i = 0; i < 200; i++) strcat(longcap, "red blue ");
    n = bpe_encode(t, longcap, strlen(longcap), NULL, plain, 4096);
    CHECK(n > 256 && bpe_layout(t, longcap, strlen(longcap), NULL, 256, ids) == 256 &&
          !memcmp(ids, plain, sizeof ids));
    // Dropout: p = 0 is plain BPE; the same (seed, index) splits the same way,
    // another index differently; p = 1 leaves single bytes; decode is exact.
    const char *s = "the quick brown fox jumps over the lazy dog, again and again and again";
    size_t sl = strlen(s);
    bpe_dropout d0 = {0, 1, 0}, da = {0.1f, 7, 3}, db = {0.1f, 7, 4}, dall = {1, 7, 3};
    n = bpe_encode(t, s, sl, NULL, plain, 4096);
    CHECK(bpe_encode(t, s, sl, &d0, d1, 4096) == n && !memcmp(d1, plain, sizeof(int32_t) * (size_t)n));
    int64_t n1 = bpe_encode(t, s, sl, &da, d1, 4096), n2 = bpe_encode(t, s, sl, &da, d2, 4096);
    CHECK(n1 == n2 && !memcmp(d1, d2, sizeof(int32_t) * (size_t)n1));
    CHECK(n1 >= n);
    int differs = 0;
    for (int i = 0; i < 8; i++) {
        db.index = 100 + (uint64_t)i;
        n2 = bpe_encode(t, s, sl, &db, d2, 4096);
        differs |= n2 != n1 || memcmp(d1, d2, sizeof(int32_t) * (size_t)n1);
    }
    CHECK(differs);
    char out[256];
    CHECK(bpe_decode(t, d2, n2, out, sizeof out) == (int64_t)sl && !memcmp(out, s, sl));
    CHECK(bpe_encode(t, s, sl, &dall, d1, 4096) == (int64_t)sl);
    printf("    plain %lld tokens, dropout 0.1: %lld\n", (long long)n, (long long)n1);
}

// Hostile files: an error that names the file, never a crash.
static void expect_bad(const char *what, const char *text, const char *msg) {
    bpe_tokenizer *t = bpe_load_mem("bad.json", (const uint8_t *)text, strlen(text));
    int ok = t == NULL && strstr(dalle_last_error(), "bad.json") && strstr(dalle_last_error(), msg);
    if (!ok) fprintf(stderr, "  %s: got \"%s\"\n", what, t ? "(loaded)" : dalle_last_error());
    CHECK(ok);
    bpe_free(t);
}

// Replaces the first FROM in S by TO (into a new buffer).
static char *subst(const char *s, const char *from, const char *to) {
    const char *p = strstr(s, from);
    DALLE_ASSERT(p);
    size_t a = (size_t)(p - s), n = strlen(s) + strlen(to) + 1;
    char *o = dalle_malloc(n);
    memcpy(o, s, a);
    strcpy(o + a, to);
    strcat(o, p + strlen(from));
    return o;
}

static void test_bad_files(void) {
    // A small valid file to mutate.
    char path[64];
    snprintf(path, sizeof path, "/tmp/dalle-test-bpe-small-%d.txt", (int)getpid());
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 50; i++) fprintf(f, "the cat sat on the mat %d\n", i);
    fclose(f);
    const char *paths[] = {path};
    bpe_train_opts o = {270, 2};
    bpe_tokenizer *t = bpe_train(paths, 1, &o);
    CHECK(t && bpe_vocab_size(t) == 270);
    CHECK(bpe_save(t, path) == DALLE_OK);
    bpe_free(t);
    size_t n;
    char *good = dalle_read_file(path, &n);
    unlink(path);
    t = bpe_load_mem("good.json", (const uint8_t *)good, n);
    CHECK(t != NULL);
    bpe_free(t);
    struct {
        const char *what, *from, *to, *msg;
    } muts[] = {
        {"truncated", "\"model\"", "", "invalid JSON"},
        {"id string", "\"!\":\t0", "\"!\":\t\"0\"", "must be an integer"},
        {"id fraction", "\"!\":\t0", "\"!\":\t0.5", "must be an integer"},
        {"id negative", "\"!\":\t0", "\"!\":\t-1", "must be an integer"},
        {"id huge", "\"!\":\t0", "\"!\":\t1e300", "must be an integer"},
        {"id sparse", "\"!\":\t0", "\"!\":\t9000000", "too sparse"},
        {"duplicate token", "\"\\\"\":\t1", "\"!\":\t1", "appears twice"},
        {"duplicate id", "\"\\\"\":\t1", "\"\\\"\":\t0", "is given to"},
        {"vocab array", "\"vocab\":\t{", "\"vocab\":\t[{", "invalid JSON"},
        {"merges object", "\"merges\":\t[", "\"merges\":\t{}, \"x\":\t[", "must be an object"},
        {"merge unknown", "\"merges\":\t[", "\"merges\":\t[\"zzzq y\", ", "not in the vocabulary"},
        {"merge result", "\"merges\":\t[", "\"merges\":\t[\"! !\", ", "merged token"},
        {"merge shape", "\"merges\":\t[", "\"merges\":\t[7, ", "expected"},
        {"normalizer", "\"Lowercase\"", "\"NFC\"", "normalizer"},
        {"pre_tokenizer", "\"Isolated\"", "\"Removed\"", "pre_tokenizer"},
        {"model type", "\"type\":\t\"BPE\"", "\"type\":\t\"WordPiece\"", "only BPE"},
        {"suffix", "\"end_of_word_suffix\":\tnull", "\"end_of_word_suffix\":\t\"</w>\"", "not supported"},
        {"added tokens", "\"added_tokens\":\t[]", "\"added_tokens\":\t[{\"id\":0}]", "not supported"},
        {"not byte-level", "\"!\":\t0", "\"\\u4e2d\":\t0", "not byte-level"},
        {"missing byte", "\"!\":\t0", "\"!!!!\":\t0", "lacks the token for byte"},
    };
    for (size_t i = 0; i < sizeof muts / sizeof *muts; i++) {
        char *bad = subst(good, muts[i].from, muts[i].to);
        expect_bad(muts[i].what, bad, muts[i].msg);
        dalle_free(bad);
    }
    // The first merge, twice.
    const char *m0 = strstr(good, "\"merges\":\t[");
    const char *q0 = m0 ? strchr(m0 + 11, '"') : NULL, *q1 = q0 ? strchr(q0 + 1, '"') : NULL;
    CHECK(q1 != NULL);
    if (q1) {
        char from[64], to[160];
        snprintf(from, sizeof from, "%.*s", (int)(q1 + 1 - m0), m0);
        snprintf(to, sizeof to, "%s, %.*s", from, (int)(q1 + 1 - q0), q0);
        char *bad = subst(good, from, to);
        expect_bad("merge repeated", bad, "repeats");
        dalle_free(bad);
    }
    expect_bad("empty", "", "first line");
    expect_bad("clip fields", "#version: 0.2\na b c\n", "expected two tokens");
    expect_bad("clip unknown", "#version: 0.2\n\xe4\xb8\xad x\n", "not byte-level");
    expect_bad("gzip garbage", "\x1f\x8b\x08\x00garbage", "gzip");
    bpe_tokenizer *m = bpe_load("/nonexistent/tokenizer.json");
    CHECK(!m && strstr(dalle_last_error(), "/nonexistent/tokenizer.json"));
    dalle_free(good);
}

int main(void) {
    RUN(test_clip_known);
    RUN(test_clip_parity);
    RUN(test_train_and_hf_parity);
    RUN(test_scan_equals_heap);
    RUN(test_edge_inputs);
    RUN(test_layout_and_dropout);
    RUN(test_bad_files);
    bpe_free(trained);
    dalle_free(ref_text);
    dalle_free(corpus);
    dalle_free(lines);
    dalle_free(line_len);
    return test_summary();
}
