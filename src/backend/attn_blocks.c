// attn_blocks.c: the tiling plan of the block-sparse attention kernels
// (attn_blocks.h). Two passes over the key lists: the first checks them and
// counts, per query block, the keys that fall in each key block (a pair is
// full when it holds all BQ*BK of them); the second fills the one block of
// arrays, mask bits included; then the pairs are listed again by key block
// for the backward pass. Host code only, no libdalle calls.
#include "backend/attn_blocks.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(attn_plan *plan, char *err, size_t err_len, const char *fmt, ...) {
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    attn_plan_free(plan);
    return -1;
}

// Checks the lists of the queries of block qb and adds, into cnt (n_kb), the
// number of keys each key block holds for them. Returns the query whose list
// is bad, or -1.
static int count_block(int *cnt, const int32_t *off, const int32_t *keys, int T, int BQ, int BK, int qb) {
    int q1 = (qb + 1) * BQ < T ? (qb + 1) * BQ : T;
    for (int q = qb * BQ; q < q1; q++) {
        if (off[q + 1] < off[q]) return q;
        int32_t prev = -1;
        for (int32_t i = off[q]; i < off[q + 1]; i++) {
            int32_t k = keys[i];
            if (k <= prev || k >= T) return q;
            cnt[k / BK]++;
            prev = k;
        }
    }
    return -1;
}

int attn_plan_build(attn_plan *plan, const int32_t *off, const int32_t *keys, int64_t nnz, int T, int BQ, int BK,
                    char *err, size_t err_len) {
    memset(plan, 0, sizeof *plan);
    if (T < 0 || BQ < 1 || BK < 1 || BK > 64)
        return fail(plan, err, err_len, "attention plan: bad sizes T=%d BQ=%d BK=%d (BK <= 64)", T, BQ, BK);
    if (off[0] != 0 || off[T] != nnz)
        return fail(plan, err, err_len, "attention plan: off[0] = %d and off[T=%d] = %d, expected 0 and nnz = %lld",
                    off[0], T, off[T], (long long)nnz);
    const int n_qb = (T + BQ - 1) / BQ, n_kb = (T + BK - 1) / BK;
    int *cnt = calloc((size_t)n_kb + 1, sizeof *cnt);
    int *slot = malloc(sizeof *slot * ((size_t)n_kb + 1)); // key block -> its pair in the current query block
    if (!cnt || !slot) {
        free(cnt);
        free(slot);
        return fail(plan, err, err_len, "attention plan: out of memory (T=%d)", T);
    }

    // Pass 1: check and count the pairs.
    int64_t n_pairs = 0, n_partial = 0;
    for (int qb = 0; qb < n_qb; qb++) {
        memset(cnt, 0, sizeof *cnt * (size_t)n_kb);
        int bad = count_block(cnt, off, keys, T, BQ, BK, qb);
        if (bad >= 0) {
            free(cnt);
            free(slot);
            return fail(plan, err, err_len,
                        "attention plan: the key list of query %d is not strictly ascending within [0, %d)", bad, T);
        }
        for (int kb = 0; kb < n_kb; kb++)
            if (cnt[kb]) {
                n_pairs++;
                n_partial += cnt[kb] != BQ * BK;
            }
    }

    // The block: masks, then the int32 arrays.
    size_t n_int = (size_t)(n_qb + 1) + 4 * (size_t)n_pairs + (size_t)(n_kb + 1);
    plan->bytes = sizeof(uint64_t) * (size_t)n_partial * BQ + sizeof(int32_t) * n_int;
    plan->blob = calloc(1, plan->bytes);
    if (!plan->blob) {
        free(cnt);
        free(slot);
        return fail(plan, err, err_len, "attention plan: out of memory (%zu bytes)", plan->bytes);
    }
    plan->T = T;
    plan->BQ = BQ;
    plan->BK = BK;
    plan->n_qb = n_qb;
    plan->n_kb = n_kb;
    plan->n_pairs = (int)n_pairs;
    plan->n_partial = (int)n_partial;
    plan->nnz = nnz;
    plan->masks = plan->blob;
    plan->q_off = (int32_t *)(plan->masks + (size_t)n_partial * BQ);
    plan->pair_qb = plan->q_off + n_qb + 1;
    plan->pair_kb = plan->pair_qb + n_pairs;
    plan->pair_mask = plan->pair_kb + n_pairs;
    plan->k_off = plan->pair_mask + n_pairs;
    plan->k_pairs = plan->k_off + n_kb + 1;

    // Pass 2: the pairs in order (query block, then key block), and the bits
    // of the partial ones.
    int p = 0, m = 0;
    for (int qb = 0; qb < n_qb; qb++) {
        memset(cnt, 0, sizeof *cnt * (size_t)n_kb);
        count_block(cnt, off, keys, T, BQ, BK, qb);
        plan->q_off[qb] = p;
        for (int kb = 0; kb < n_kb; kb++) {
            slot[kb] = -1;
            if (!cnt[kb]) continue;
            slot[kb] = p;
            plan->pair_qb[p] = qb;
            plan->pair_kb[p] = kb;
            plan->pair_mask[p] = cnt[kb] == BQ * BK ? -1 : m++;
            p++;
        }
        int q1 = (qb + 1) * BQ < T ? (qb + 1) * BQ : T;
        for (int q = qb * BQ; q < q1; q++)
            for (int32_t i = off[q]; i < off[q + 1]; i++) {
                int k = keys[i], mi = plan->pair_mask[slot[k / BK]];
                if (mi >= 0) plan->masks[(int64_t)mi * BQ + (q - qb * BQ)] |= (uint64_t)1 << (k % BK);
            }
    }
    plan->q_off[n_qb] = p;

    // The same pairs by key block: counting sort, stable in the pair order.
    memset(cnt, 0, sizeof *cnt * ((size_t)n_kb + 1));
    for (int i = 0; i < p; i++) cnt[plan->pair_kb[i] + 1]++;
    for (int kb = 0; kb < n_kb; kb++) cnt[kb + 1] += cnt[kb];
    memcpy(plan->k_off, cnt, sizeof *cnt * ((size_t)n_kb + 1));
    for (int i = 0; i < p; i++) plan->k_pairs[cnt[plan->pair_kb[i]]++] = i;
    free(cnt);
    free(slot);
    return 0;
}

void attn_plan_free(attn_plan *plan) {
    free(plan->blob);
    memset(plan, 0, sizeof *plan);
}
