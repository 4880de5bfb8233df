// test_clip.c: the contrastive model (src/clip/) against its references.
//   - unit embeddings, logits, loss (also with the scale clamped) and every
//     tensor's gradient of clip_step against tests/data/clip_tiny.safetensors
//     (tests/ref/clip_ref.py: the same model in PyTorch, float64, test fill);
//   - batches smaller than the activations, grown inference buffers;
//   - finite differences of the loss for a sample of every tensor;
//   - clip_new's initialisation, the tensor table, bad configs and ids;
//   - clip_save -> clip_load (bit for bit), a checkpoint's EMA, bad files.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "clip/model.h"
#include "clip/train.h"
#include "core/common.h"
#include "core/safetensors.h"
#include "dalle/dalle.h"
#include "test.h"
#include "testfill.h"
#include "testref.h"

#define REF "tests/data/clip_tiny.safetensors"
enum { B_REF = 4, NT_NEG = 6 };

static st_file *ref;
static char tmp_path[256];

static const clip_config TINY = {.n_layer = 2, .n_head = 2, .d_head = 8, .mlp_mult = 4, .embed = 16,
                                 .text_len = 6, .text_vocab = 40, .grid = 4, .image_vocab = 24};

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

// The test fill of clip_ref.py: tensor t from seed 20000 + t, by its name.
static void fill_params(clip_model *m) {
    backend_sync();
    for (int i = 0; i < m->n_tensors; i++) {
        const clip_tensor_info *t = &m->tensors[i];
        float *p = m->params + t->offset;
        uint64_t seed = 20000 + (uint64_t)i;
        const char *n = t->name;
        float s = (float)(1.0 / sqrt((double)(t->ndim == 2 ? t->shape[1] : 1)));
        if (ends_with(n, "ln_1.weight") || ends_with(n, "ln_2.weight") || ends_with(n, "ln_final.weight"))
            fill_uniform(p, t->numel, seed, 0.9f, 1.1f);
        else if (ends_with(n, ".bias")) fill_uniform(p, t->numel, seed, -0.1f, 0.1f);
        else if (ends_with(n, "embedding")) fill_uniform(p, t->numel, seed, -0.5f, 0.5f);
        else if (ends_with(n, "projection")) {
            s = (float)(1.0 / sqrt((double)t->shape[0]));
            fill_uniform(p, t->numel, seed, -s, s);
        } else if (!strcmp(n, "logit_scale")) fill_uniform(p, 1, seed, 1.5f, 2.5f);
        else fill_uniform(p, t->numel, seed, -s, s);
    }
}

// text (NT, L) and codes (B, N) of the fill (clip_ref.py).
static void fill_inputs(const clip_model *m, int NT, int B, int32_t *text, int32_t *codes) {
    const int L = m->tower[CLIP_TEXT].T, N = m->tower[CLIP_IMAGE].T;
    for (int64_t i = 0; i < (int64_t)NT * L; i++)
        text[i] = (int32_t)floor(fill_u(21000, (uint64_t)i) * m->tower[CLIP_TEXT].V);
    for (int64_t i = 0; i < (int64_t)B * N; i++)
        codes[i] = (int32_t)floor(fill_u(21001, (uint64_t)i) * m->tower[CLIP_IMAGE].V);
}

static clip_model *tiny_model(void) {
    clip_model *m = clip_new(&TINY, 1);
    DALLE_ASSERT(m);
    fill_params(m);
    return m;
}

// |got - ref| <= 1e-5 * max|ref| + 1e-4 |ref| (fp32 against float64), got
// against the reference tensor NAME; printed as LABEL (NULL: NAME).
static void compare_as(const char *label, const char *name, const float *got, int64_t n) {
    int64_t rn;
    float *r = ref_tensor(ref, name, &rn);
    CHECK(r && rn == n);
    if (!r || rn != n) return;
    float mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(r[i]));
    CHECK_CLOSE(label ? label : name, got, r, n, 1e-5 * mx, 1e-4);
    free(r);
}
#define compare(name, got, n) compare_as(NULL, name, got, n)

static float *grad_new(const clip_model *m) {
    float *g = backend_alloc(sizeof(float) * (size_t)m->n_params);
    DALLE_ASSERT(g);
    backend_memset0(g, sizeof(float) * (size_t)m->n_params);
    return g;
}

static void test_parity(void) {
    clip_model *m = tiny_model();
    const int B = B_REF, L = TINY.text_len, N = TINY.grid * TINY.grid, E = TINY.embed;
    int32_t text[B_REF * 6], codes[B_REF * 16];
    fill_inputs(m, B, B, text, codes);
    int64_t n;
    float *rt = ref_tensor(ref, "in.text", &n), *rc = ref_tensor(ref, "in.codes", &n);
    int same = rt && rc;
    for (int i = 0; same && i < B * L; i++) same = rt[i] == (float)text[i];
    for (int i = 0; same && i < B * N; i++) same = rc[i] == (float)codes[i];
    CHECK(same);
    free(rt), free(rc);
    clip_acts *a = clip_acts_new(m, B, B);
    float *g = grad_new(m);
    double acc = -1, loss = clip_step(m, a, text, B, codes, B, g, &acc);
    backend_sync();
    float l = (float)loss, lg[B_REF * B_REF], emb[B_REF * 16];
    printf("    loss %.7f, accuracy %.3f\n", loss, acc);
    compare("loss", &l, 1);
    CHECK(acc >= 0 && acc <= 1);
    for (int i = 0; i < B * B; i++) lg[i] = (float)a->logits[i];
    compare("logits", lg, B * B);
    for (int i = 0; i < B * E; i++) emb[i] = (float)a->emb[CLIP_TEXT][i];
    compare("text_emb", emb, B * E);
    for (int i = 0; i < B * E; i++) emb[i] = (float)a->emb[CLIP_IMAGE][i];
    compare("image_emb", emb, B * E);
    for (int i = 0; i < m->n_tensors; i++) {
        char name[96];
        snprintf(name, sizeof name, "grad.%s", m->tensors[i].name);
        compare(name, g + m->tensors[i].offset, m->tensors[i].numel);
    }
    // The inference path (one layer's internals, its own buffers).
    CHECK(clip_embed_text(m, text, B, emb) == DALLE_OK);
    compare_as("clip_embed_text", "text_emb", emb, B * E);
    CHECK(clip_embed_image(m, codes, B, emb) == DALLE_OK);
    compare_as("clip_embed_image", "image_emb", emb, B * E);
    // logit_scale 5: exp clamped at 100, no gradient for it.
    m->params[m->logit_scale] = 5.0f;
    CHECK(fabsf(clip_scale(m) - 100.0f) == 0);
    backend_memset0(g, sizeof(float) * (size_t)m->n_params);
    l = (float)clip_step(m, a, text, B, codes, B, g, NULL);
    backend_sync();
    compare("loss_clamped", &l, 1);
    CHECK(g[m->logit_scale] == 0);
    backend_free(g);
    clip_acts_free(a);
    clip_free(m);
}

// Hard negatives: NT_NEG captions (2 extra) for the B images, against the
// reference's "neg." tensors; the same activations then serve a plain batch.
static void test_parity_negatives(void) {
    clip_model *m = tiny_model();
    const int B = B_REF, NT = NT_NEG;
    int32_t text[NT_NEG * 6], codes[B_REF * 16];
    fill_inputs(m, NT, B, text, codes);
    clip_acts *a = clip_acts_new(m, B, NT);
    float *g = grad_new(m);
    double acc = -1, loss = clip_step(m, a, text, NT, codes, B, g, &acc);
    backend_sync();
    float l = (float)loss, lg[NT_NEG * B_REF];
    printf("    loss %.7f with %d extra negatives, accuracy %.3f\n", loss, NT - B, acc);
    compare("neg.loss", &l, 1);
    for (int i = 0; i < NT * B; i++) lg[i] = (float)a->logits[i];
    compare("neg.logits", lg, NT * B);
    for (int i = 0; i < m->n_tensors; i++) {
        char name[96];
        snprintf(name, sizeof name, "neg.grad.%s", m->tensors[i].name);
        compare(name, g + m->tensors[i].offset, m->tensors[i].numel);
    }
    backend_memset0(g, sizeof(float) * (size_t)m->n_params);
    l = (float)clip_step(m, a, text, B, codes, B, g, NULL);
    compare("loss", &l, 1);
    CHECK(isnan(clip_step(m, a, text, NT + 1, codes, B, g, NULL)) && strstr(dalle_last_error(), "7 captions"));
    CHECK(isnan(clip_step(m, a, text, B - 1, codes, B, g, NULL)) && strstr(dalle_last_error(), "3 captions"));
    backend_free(g);
    clip_acts_free(a);
    clip_free(m);
}

// clip_hard_negative: every edit (a word replaced by another of its group,
// two words of a group exchanged) is drawn, and only edits; the draws depend
// on (seed, step, k) only; with a set of known captions, only edits that
// give one of them; a caption with no such edit gives none.
static void test_hard_negatives(void) {
    enum { L = 8, V = 20 };
    const int32_t ids[] = {3, 4, 5, 6, 10, 11, 12};
    const int group[] = {0, 0, 0, 0, 1, 1, 1};
    int group_of[V + L];
    for (int i = 0; i < V + L; i++) group_of[i] = -1;
    for (int i = 0; i < 7; i++) group_of[ids[i]] = group[i];
    // two words of each group, then padding ids: 2 + 3 + 2 + 3 replacements, 2 exchanges
    const int32_t cap[L] = {1, 10, 3, 2, 11, 4, 20, 21};
    int seen[2][L][V] = {{{0}}}, exchanged = 0, only_edits = 1;
    for (int k = 0; k < 1200; k++) {
        int32_t out[L], again[L];
        CHECK(clip_hard_negative(cap, L, group_of, ids, group, 7, NULL, 5, 3, k, out) == 1);
        clip_hard_negative(cap, L, group_of, ids, group, 7, NULL, 5, 3, k, again);
        CHECK(!memcmp(out, again, sizeof out));
        int diff[L], nd = 0;
        for (int p = 0; p < L; p++)
            if (out[p] != cap[p]) diff[nd++] = p;
        if (nd == 1) only_edits &= group_of[out[diff[0]]] == group_of[cap[diff[0]]], seen[0][diff[0]][out[diff[0]]]++;
        else if (nd == 2) {
            only_edits &= out[diff[0]] == cap[diff[1]] && out[diff[1]] == cap[diff[0]];
            only_edits &= group_of[cap[diff[0]]] == group_of[cap[diff[1]]];
            seen[1][diff[0]][diff[1]]++, exchanged++;
        } else only_edits = 0;
    }
    int distinct = 0, rarest = 1200;
    for (int e = 0; e < 2; e++)
        for (int p = 0; p < L; p++)
            for (int v = 0; v < V; v++)
                if (seen[e][p][v]) distinct++, rarest = seen[e][p][v] < rarest ? seen[e][p][v] : rarest;
    printf("    1200 draws: %d distinct edits of 12 (%d exchanges), the rarest drawn %d times (100 expected)\n",
           distinct, exchanged, rarest);
    CHECK(only_edits && distinct == 12 && rarest > 60);
    int differ = 0;
    for (int k = 0; k < 50; k++) {
        int32_t x[L], y[L];
        clip_hard_negative(cap, L, group_of, ids, group, 7, NULL, 5, 3, k, x);
        clip_hard_negative(cap, L, group_of, ids, group, 7, NULL, 6, 3, k, y);
        differ += memcmp(x, y, sizeof x) != 0;
    }
    CHECK(differ > 10); // another seed, other draws
    // known captions: the caption itself, two of its edits, an unrelated one
    const int32_t e1[L] = {1, 12, 3, 2, 11, 4, 20, 21}, e2[L] = {1, 10, 4, 2, 11, 3, 20, 21},
                  other[L] = {1, 2, 7, 8, 9, 25, 26, 27};
    clip_caption_set *known = clip_caption_set_new(4);
    CHECK(known != NULL);
    clip_caption_set_add(known, cap, L), clip_caption_set_add(known, e1, L);
    clip_caption_set_add(known, e2, L), clip_caption_set_add(known, other, L);
    const int32_t unknown[L] = {1, 11, 3, 2, 11, 4, 20, 21};
    CHECK(clip_caption_set_has(known, e2, L) && !clip_caption_set_has(known, unknown, L));
    int n1 = 0, n2 = 0;
    for (int k = 0; k < 100; k++) {
        int32_t out[L];
        CHECK(clip_hard_negative(cap, L, group_of, ids, group, 7, known, 5, 3, k, out) == 1);
        n1 += !memcmp(out, e1, sizeof out), n2 += !memcmp(out, e2, sizeof out);
    }
    printf("    with known captions: %d and %d of 100 draws are the two known edits\n", n1, n2);
    CHECK(n1 + n2 == 100 && n1 > 25 && n2 > 25);
    int32_t out[L];
    const int32_t lone[L] = {1, 5, 2, 7, 8, 9, 20, 21}; // one swappable word; no edit of it is known
    CHECK(clip_hard_negative(lone, L, group_of, ids, group, 7, known, 5, 3, 0, out) == 0);
    CHECK(clip_hard_negative(other, L, group_of, ids, group, 7, NULL, 5, 3, 0, out) == 0); // no swappable word
    clip_caption_set_free(known);
}

// clip_drop_word: with probability p a drop word is deleted, the rest move
// up and the padding ids follow their positions; p 0 and 1; no drop word.
static void test_drop_word(void) {
    enum { L = 6, Vt = 50 };
    const int32_t cap[L] = {1, 7, 8, 2, 54, 55}, drop[] = {7, 8};
    int dropped = 0, first = 0, ok_layout = 1;
    for (int k = 0; k < 400; k++) {
        int32_t t[L];
        memcpy(t, cap, sizeof t);
        if (!clip_drop_word(t, L, Vt, drop, 2, 0.5, 9, 1, k)) {
            ok_layout &= !memcmp(t, cap, sizeof t);
            continue;
        }
        dropped++;
        const int32_t a[L] = {1, 8, 2, 53, 54, 55}, b[L] = {1, 7, 2, 53, 54, 55};
        first += !memcmp(t, a, sizeof t);
        ok_layout &= !memcmp(t, a, sizeof t) || !memcmp(t, b, sizeof t);
    }
    printf("    p 0.5: %d of 400 captions lost a word (%d the first of two)\n", dropped, first);
    CHECK(ok_layout && dropped > 160 && dropped < 240 && first > 0.35 * dropped && first < 0.65 * dropped);
    int32_t t[L] = {1, 2, 3, 4, 5, 6}, full[L] = {7, 1, 2, 3, 4, 5};
    CHECK(clip_drop_word(t, L, Vt, drop, 2, 1, 9, 1, 0) == 0); // no drop word
    CHECK(clip_drop_word(full, L, Vt, drop, 2, 0, 9, 1, 0) == 0 && full[0] == 7);
    CHECK(clip_drop_word(full, L, Vt, drop, 2, 1, 9, 1, 0) == 1 && full[0] == 1 && full[4] == 5 && full[5] == Vt + 5);
}

// A batch smaller than the activations gives the same results; the
// inference buffers grow with the batch; an item's embedding does not
// depend on the rest of the batch.
static void test_batches(void) {
    clip_model *m = tiny_model();
    const int B = B_REF, L = TINY.text_len, N = TINY.grid * TINY.grid, E = TINY.embed;
    int32_t text[B_REF * 6], codes[B_REF * 16];
    fill_inputs(m, B, B, text, codes);
    clip_acts *a4 = clip_acts_new(m, B, B), *a7 = clip_acts_new(m, 7, 7);
    float *g4 = grad_new(m), *g7 = grad_new(m);
    double l4 = clip_step(m, a4, text, B, codes, B, g4, NULL), l7 = clip_step(m, a7, text, B, codes, B, g7, NULL);
    backend_sync();
    CHECK(fabs(l4 - l7) <= 1e-6); // bit for bit on the CPU; a GPU's atomics may add in another order
    CHECK_CLOSE("gradient, batch 4 in activations of 7", g7, g4, m->n_params, 1e-7, 1e-5);
    // twice into the same gradient: doubled (backward accumulates)
    clip_step(m, a4, text, B, codes, B, g4, NULL);
    backend_sync();
    int twice = 1;
    for (int64_t i = 0; i < m->n_params; i++) twice &= fabsf(g4[i] - 2 * g7[i]) <= 1e-6f * (1 + fabsf(g7[i]));
    CHECK(twice);
    CHECK(isnan(clip_step(m, a4, text, 5, codes, 5, g4, NULL)) && strstr(dalle_last_error(), "batch of 5"));
    float e1[16], e4[B_REF * 16];
    CHECK(clip_embed_image(m, codes + 2 * N, 1, e1) == DALLE_OK); // buffers for 1 ...
    CHECK(clip_embed_image(m, codes, B, e4) == DALLE_OK);         // ... grown to 4
    CHECK(m->infer[CLIP_IMAGE]->B == B);
    CHECK_CLOSE("image 2 alone vs in the batch", e1, e4 + 2 * E, E, 1e-6, 1e-5);
    CHECK(clip_embed_text(m, text + 3 * L, 1, e1) == DALLE_OK);
    CHECK(clip_embed_text(m, text, B, e4) == DALLE_OK);
    CHECK_CLOSE("caption 3 alone vs in the batch", e1, e4 + 3 * E, E, 1e-6, 1e-5);
    double sq = 0;
    for (int e = 0; e < E; e++) sq += (double)e1[e] * e1[e];
    CHECK(fabs(sq - 1) < 1e-5);
    backend_free(g4), backend_free(g7);
    clip_acts_free(a4), clip_acts_free(a7);
    clip_free(m);
}

// Finite differences of the loss (double-sided, fp32 forward) against
// clip_step's gradient for three elements of every tensor.
static void test_finite_differences(void) {
    clip_model *m = tiny_model();
    const int B = B_REF;
    int32_t text[B_REF * 6], codes[B_REF * 16];
    fill_inputs(m, B, B, text, codes);
    clip_acts *a = clip_acts_new(m, B, B);
    float *g = grad_new(m);
    clip_step(m, a, text, B, codes, B, g, NULL);
    backend_sync();
    int bad = 0, checked = 0;
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const clip_tensor_info *t = &m->tensors[i];
        for (int s = 0; s < 3 && s < t->numel; s++) {
            int64_t j = (int64_t)(fill_u(600 + (uint64_t)i, (uint64_t)s) * (double)t->numel);
            // token rows get gradient only where their ids occur
            if (t->kind == CT_EMBED) j = (int64_t)(i < m->n_tensors / 2 ? text[5 * s] : codes[7 * s]) * m->d + s;
            j += t->offset;
            float keep = m->params[j], h = 1e-2f;
            m->params[j] = keep + h;
            double lp = clip_step(m, a, text, B, codes, B, NULL, NULL);
            m->params[j] = keep - h;
            double lm = clip_step(m, a, text, B, codes, B, NULL, NULL);
            m->params[j] = keep;
            double fd = (lp - lm) / (2.0 * h), an = g[j], err = fabs(fd - an) / (fabs(an) + 1e-3);
            worst = fmax(worst, err);
            checked++;
            if (err > 2e-2 && bad++ < 5)
                fprintf(stderr, "  %s[%lld]: fd %.6g analytic %.6g\n", t->name, (long long)(j - t->offset), fd, an);
        }
    }
    printf("    %d elements, worst |fd - grad| / (|grad| + 1e-3) = %.2e\n", checked, worst);
    CHECK(bad == 0);
    backend_free(g);
    clip_acts_free(a);
    clip_free(m);
}

// clip_new: CLIP's initialisation; the table; bad configs and ids.
static void test_new(void) {
    clip_config c = TINY;
    c.n_head = 4, c.d_head = 16, c.n_layer = 3, c.embed = 32;
    clip_model *m = clip_new(&c, 7);
    CHECK(m != NULL);
    if (!m) return;
    const int d = 64;
    int64_t total = 0, decayed = 0;
    for (int i = 0; i < clip_n_tensors(m); i++) {
        const char *name;
        int64_t off, n;
        int decay;
        clip_tensor(m, i, &name, &off, &n, &decay);
        CHECK(off == total);
        total += n;
        decayed += decay * n;
        const float *p = clip_params(m) + off;
        double s1 = 0, s2 = 0;
        for (int64_t k = 0; k < n; k++) s1 += p[k], s2 += (double)p[k] * p[k];
        double mean = s1 / (double)n, sd = sqrt(s2 / (double)n - mean * mean), want = -1;
        if (!strcmp(name, "text.token_embedding")) want = 0.02;
        if (!strcmp(name, "image.positional_embedding")) want = 0.01;
        if (!strcmp(name, "image.blocks.1.attn.qkv.weight")) want = 1 / sqrt(d);
        if (!strcmp(name, "text.blocks.2.mlp.fc.weight")) want = 1 / sqrt(2.0 * d);
        if (!strcmp(name, "text.blocks.0.mlp.proj.weight")) want = 1 / sqrt(d) / sqrt(6.0);
        if (!strcmp(name, "image.projection")) want = 1 / sqrt(d);
        if (want > 0) {
            printf("    %-32s std %.5f (CLIP's %.5f)\n", name, sd, want);
            CHECK(fabs(sd / want - 1) < 0.05 && fabs(mean) < 0.1 * want && decay == 1);
        }
        if (ends_with(name, ".bias")) CHECK(s2 == 0 && decay == 0);
        if (ends_with(name, "ln_1.weight") || ends_with(name, "ln_final.weight")) CHECK(s1 == n && decay == 0);
        if (!strcmp(name, "logit_scale")) CHECK(fabsf(p[0] - logf(1 / 0.07f)) < 1e-6f && decay == 0 && i == clip_n_tensors(m) - 1);
    }
    CHECK(total == clip_param_count(m) && decayed > 0 && decayed < total);
    CHECK(fabsf(clip_scale(m) - 1 / 0.07f) < 1e-3f);
    CHECK(!memcmp(clip_get_config(m), &c, sizeof c));
    // the table's names follow CLIP's state dict
    const char *first, *last;
    clip_tensor(m, 0, &first, NULL, NULL, NULL);
    clip_tensor(m, 2, &last, NULL, NULL, NULL);
    CHECK(!strcmp(first, "text.token_embedding") && !strcmp(last, "text.blocks.0.ln_1.weight"));
    // ids out of range, named with their position
    int32_t text[6] = {0, 1, 2, 3, 4, 46}, codes[16] = {0};
    float e[32];
    CHECK(clip_embed_text(m, text, 1, e) == DALLE_ERR && strstr(dalle_last_error(), "text id 46 at sequence 0, position 5"));
    text[5] = 45;
    CHECK(clip_embed_text(m, text, 1, e) == DALLE_OK); // the last padding id
    codes[9] = -1;
    CHECK(clip_embed_image(m, codes, 1, e) == DALLE_ERR && strstr(dalle_last_error(), "image code -1 at sequence 0, position 9"));
    clip_acts *a = clip_acts_new(m, 2, 2);
    int32_t t2[12] = {0}, c2[32] = {0};
    c2[20] = 24;
    CHECK(isnan(clip_step(m, a, t2, 2, c2, 2, NULL, NULL)) && strstr(dalle_last_error(), "sequence 1, position 4"));
    clip_acts_free(a);
    clip_free(m);
    // bad configs
    c = TINY;
    c.n_head = 0;
    CHECK(clip_new(&c, 1) == NULL && strstr(dalle_last_error(), "n_head = 0"));
    c = TINY;
    c.embed = -3;
    CHECK(clip_new(&c, 1) == NULL && strstr(dalle_last_error(), "embed = -3"));
}

// Writes a safetensors file of m's tensors (under prefix, from src), with
// metadata kind and config js, leaving out tensor `skip` (-1: none).
static void write_file(const clip_model *m, const char *kind, const char *js, const char *prefix, const float *src,
                       int skip, const char *extra) {
    st_writer *w = st_writer_new();
    st_writer_meta(w, "dalle.kind", kind);
    if (js) st_writer_meta(w, "clip.config", js);
    char names[200][96];
    for (int i = 0; i < m->n_tensors && i < 200; i++) {
        if (i == skip) continue;
        snprintf(names[i], sizeof names[i], "%s%s", prefix, m->tensors[i].name);
        st_writer_add(w, names[i], ST_F32, src + m->tensors[i].offset, m->tensors[i].ndim, m->tensors[i].shape);
    }
    if (extra) st_writer_add(w, extra, ST_F32, src, 1, (int64_t[]){1});
    CHECK(st_writer_save(w, tmp_path) == DALLE_OK);
    st_writer_free(w);
}

static void test_files(void) {
    clip_model *m = clip_new(&TINY, 3);
    const int B = 3;
    int32_t text[3 * 6], codes[3 * 16];
    fill_inputs(m, B, B, text, codes);
    float e0[3 * 16], e1[3 * 16];
    CHECK(clip_embed_text(m, text, B, e0) == DALLE_OK);
    CHECK(clip_save(m, clip_params(m), tmp_path) == DALLE_OK);
    clip_model *r = clip_load(tmp_path);
    CHECK(r != NULL);
    if (!r) return;
    CHECK(!memcmp(clip_get_config(r), &TINY, sizeof TINY) && clip_param_count(r) == clip_param_count(m));
    CHECK(!memcmp(clip_params(r), clip_params(m), sizeof(float) * (size_t)m->n_params));
    CHECK(clip_embed_text(r, text, B, e1) == DALLE_OK && !memcmp(e0, e1, sizeof e0));
    CHECK(clip_embed_image(m, codes, B, e0) == DALLE_OK && clip_embed_image(r, codes, B, e1) == DALLE_OK &&
          !memcmp(e0, e1, sizeof e0));
    st_file *f = st_open(tmp_path);
    CHECK(f && !strcmp(st_meta(f, "dalle.kind"), "clip") && strstr(st_meta(f, "clip.config"), "\"embed\":16"));
    st_close(f);
    clip_free(r);
    // other parameters (host memory) saved with m's config
    float *other = malloc(sizeof(float) * (size_t)m->n_params);
    for (int64_t i = 0; i < m->n_params; i++) other[i] = (float)fill_u(31, (uint64_t)i);
    CHECK(clip_save(m, other, tmp_path) == DALLE_OK);
    r = clip_load(tmp_path);
    CHECK(r && !memcmp(clip_params(r), other, sizeof(float) * (size_t)m->n_params));
    clip_free(r);
    // a checkpoint: its "ema." tensors are the model
    char js[512];
    f = st_open(tmp_path);
    snprintf(js, sizeof js, "%s", st_meta(f, "clip.config"));
    st_close(f);
    {
        st_writer *w = st_writer_new();
        st_writer_meta(w, "dalle.kind", "clip-checkpoint");
        st_writer_meta(w, "clip.config", js);
        char names[2][200][96];
        for (int p = 0; p < 2; p++)
            for (int i = 0; i < m->n_tensors; i++) {
                snprintf(names[p][i], sizeof names[p][i], "%s%s", p ? "ema." : "", m->tensors[i].name);
                st_writer_add(w, names[p][i], ST_F32, (p ? other : clip_params(m)) + m->tensors[i].offset,
                              m->tensors[i].ndim, m->tensors[i].shape);
            }
        CHECK(st_writer_save(w, tmp_path) == DALLE_OK);
        st_writer_free(w);
    }
    r = clip_load(tmp_path);
    CHECK(r && !memcmp(clip_params(r), other, sizeof(float) * (size_t)m->n_params));
    clip_free(r);
    // bad files, each named
    int fc_b = 0;
    while (strcmp(m->tensors[fc_b].name, "image.blocks.1.mlp.fc.bias")) fc_b++;
    const struct {
        const char *kind, *js, *extra, *msg;
        int skip;
    } bad[] = {
        {"prior", js, NULL, "not a clip model (metadata dalle.kind is 'prior')", -1},
        {"clip", NULL, NULL, "metadata 'clip.config' missing", -1},
        {"clip", "{\"n_layer\":2}", NULL, "metadata 'clip.config': field 'n_head' missing", -1},
        {"clip", js, NULL, "missing tensor 'image.blocks.1.mlp.fc.bias'", fc_b},
        {"clip", js, "text.blocks.9.ln_1.weight", "unexpected tensor 'text.blocks.9.ln_1.weight'", -1},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        write_file(m, bad[k].kind, bad[k].js, "", clip_params(m), bad[k].skip, bad[k].extra);
        r = clip_load(tmp_path);
        CHECK(r == NULL && strstr(dalle_last_error(), bad[k].msg) && strstr(dalle_last_error(), tmp_path));
        if (r || !strstr(dalle_last_error(), bad[k].msg)) fprintf(stderr, "  got: %s\n", dalle_last_error());
        clip_free(r);
    }
    remove(tmp_path);
    CHECK(clip_load(tmp_path) == NULL && strstr(dalle_last_error(), tmp_path));
    free(other);
    clip_free(m);
}

int main(void) {
    // DALLE_DEVICE=cuda: the same tests on that backend (default: the CPU's)
    const char *dev = getenv("DALLE_DEVICE");
    if (dev && backend_select(dev) < 0) {
        fprintf(stderr, "  %s\n", dalle_last_error());
        return 1;
    }
    printf("  backend: %s\n", backend()->name);
    snprintf(tmp_path, sizeof tmp_path, "/tmp/dalle_test_clip_%ld.safetensors", (long)getpid());
    ref = st_open(REF);
    if (!ref) {
        fprintf(stderr, "  %s\n", dalle_last_error());
        return 1;
    }
    RUN(test_parity);
    RUN(test_parity_negatives);
    RUN(test_hard_negatives);
    RUN(test_drop_word);
    RUN(test_batches);
    RUN(test_finite_differences);
    RUN(test_new);
    RUN(test_files);
    st_close(ref);
    return test_summary();
}
