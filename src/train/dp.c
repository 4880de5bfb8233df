// dp.c: the data-parallel step's communication and layout (dp.h). The
// gradient, its shard and the per-parameter state are backend memory
// (backend.h): the ops of the step read and write them.
#include "train/dp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "core/common.h"
#include "dalle/dalle.h"
#include "train/optim.h"

enum { DP_MAX_STATS = 8 };

int dp_mode_parse(const char *s, dp_mode *mode) {
    if (!strcmp(s, "shard")) *mode = DP_SHARD;
    else if (!strcmp(s, "allreduce")) *mode = DP_ALLREDUCE;
    else return dalle_seterr("--dp '%s': expected shard or allreduce", s);
    return DALLE_OK;
}

const char *dp_mode_name(dp_mode mode) { return mode == DP_SHARD ? "shard" : "allreduce"; }

int dp_init(dp_t *d, comm *c, dp_mode mode, int64_t n) {
    memset(d, 0, sizeof *d);
    d->c = c;
    d->mode = mode;
    d->rank = comm_rank(c);
    d->K = comm_size(c);
    d->n = n;
    d->sharded = mode == DP_SHARD && d->K > 1;
    d->shard = d->sharded ? (n + d->K - 1) / d->K : n;
    d->n_grad = d->sharded ? d->K * d->shard : n;
    d->lo = d->sharded ? DALLE_MIN(n, d->rank * d->shard) : 0;
    d->len = d->sharded ? DALLE_MIN(d->shard, n - d->lo) : n;
    d->cap = d->shard;
    d->grad = backend_alloc(sizeof(float) * (size_t)d->n_grad);
    d->own = d->sharded ? backend_alloc(sizeof(float) * (size_t)d->shard) : d->grad;
    if (!d->grad || !d->own) {
        dp_free(d);
        return DALLE_ERR;
    }
    backend_memset0(d->grad, sizeof(float) * (size_t)d->n_grad);
    if (d->own != d->grad) backend_memset0(d->own, sizeof(float) * (size_t)d->shard);
    return DALLE_OK;
}

void dp_free(dp_t *d) {
    if (d->own != d->grad) backend_free(d->own);
    backend_free(d->grad);
    memset(d, 0, sizeof *d);
}

int dp_state_alloc(const dp_t *d, dp_state *s) {
    s->ema = backend_alloc(sizeof(float) * 3 * (size_t)d->cap);
    if (!s->ema) return DALLE_ERR;
    backend_memset0(s->ema, sizeof(float) * 3 * (size_t)d->cap);
    s->m = s->ema + d->cap;
    s->v = s->m + d->cap;
    return DALLE_OK;
}

void dp_state_free(dp_state *s) {
    backend_free(s->ema);
    memset(s, 0, sizeof *s);
}

int dp_reduce(dp_t *d, double *stats, int n_stats, double *sumsq) {
    DALLE_ASSERT(n_stats >= 0 && n_stats <= DP_MAX_STATS);
    double buf[DP_MAX_STATS + 1];
    const float inv = 1.0f / (float)d->K;
    if (d->sharded) {
        if (comm_reduce_scatter_sum(d->c, d->grad, d->own, d->shard)) return DALLE_ERR;
        backend_sync();
        for (int64_t i = 0; i < d->len; i++) d->own[i] *= inv;
        buf[n_stats] = grad_sumsq(d->own, d->len);
    } else {
        if (d->psgd) {
            if (powersgd_reduce(d->psgd, d->c, d->grad)) return DALLE_ERR;
        } else if (d->K > 1) {
            if (comm_allreduce_sum(d->c, d->grad, d->n)) return DALLE_ERR;
            backend_sync();
            for (int64_t i = 0; i < d->n; i++) d->grad[i] *= inv;
        }
        // every rank holds the same whole gradient: rank 0 counts it once
        buf[n_stats] = d->rank == 0 ? grad_sumsq(d->grad, d->n) : 0.0;
    }
    memcpy(buf, stats, sizeof(double) * (size_t)n_stats);
    if (d->K > 1 && comm_allreduce_sum_f64(d->c, buf, n_stats + 1)) return DALLE_ERR;
    for (int k = 0; k < n_stats; k++) stats[k] = buf[k] / d->K;
    *sumsq = buf[n_stats];
    return DALLE_OK;
}

int dp_gather(dp_t *d, const float *part, const float **full) {
    *full = part;
    if (!d->sharded) return DALLE_OK;
    // own (the gradient's block, used up) carries this rank's block; grad
    // (free until the next backward pass) receives all of them
    backend_copy(d->own, part, sizeof(float) * (size_t)d->len);
    backend_memset0(d->own + d->len, sizeof(float) * (size_t)(d->shard - d->len));
    if (comm_allgather(d->c, d->own, d->grad, d->shard)) return DALLE_ERR;
    *full = d->grad;
    return DALLE_OK;
}

int dp_gather_params(dp_t *d, float *params) {
    const float *full;
    if (!d->sharded) return DALLE_OK;
    if (dp_gather(d, params + d->lo, &full)) return DALLE_ERR;
    backend_copy(params, full, sizeof(float) * (size_t)d->n);
    backend_memset0(d->grad + d->n, sizeof(float) * (size_t)(d->n_grad - d->n));
    return DALLE_OK;
}

int dp_state_full(dp_t *d, const dp_state *s, const float *full[3], float **tmp) {
    *tmp = NULL;
    if (!d->sharded) {
        full[0] = s->ema, full[1] = s->m, full[2] = s->v;
        return DALLE_OK;
    }
    // the EMA goes to grad (free between steps), the moments to two more blocks
    full[0] = full[1] = full[2] = NULL;
    float *t = NULL;
    if (d->rank == 0 && !(t = dalle_malloc(sizeof(float) * 2 * (size_t)d->n_grad))) return DALLE_ERR;
    float *to[3] = {d->grad, t, t ? t + d->n_grad : NULL};
    const float *part[3] = {s->ema, s->m, s->v};
    for (int k = 0; k < 3; k++)
        if (comm_gather(d->c, part[k], d->rank == 0 ? to[k] : NULL, d->shard, 0)) {
            dalle_free(t);
            return DALLE_ERR;
        }
    if (t) full[0] = to[0], full[1] = to[1], full[2] = to[2];
    *tmp = t;
    return DALLE_OK;
}

void dp_take(const dp_t *d, const float *full, float *part) {
    backend_copy(part, full + d->lo, sizeof(float) * (size_t)d->len);
    backend_memset0(part + d->len, sizeof(float) * (size_t)(d->cap - d->len));
}

int dp_skip_check(const dp_t *d, dp_skips *s, progress_t *prog, int64_t step, double loss, double sumsq) {
    if (isfinite(loss) && isfinite(sumsq)) {
        s->in_a_row = 0;
        return 0;
    }
    char why[96];
    snprintf(why, sizeof why, "loss %g |g| %g not finite", loss, sqrt(sumsq));
    return dp_skip(d, s, prog, step, why);
}

int dp_skip(const dp_t *d, dp_skips *s, progress_t *prog, int64_t step, const char *why) {
    s->total++, s->since_log++;
    if (d->rank == 0) {
        if (prog && prog->tty) progress_end(prog);
        printf("step %lld skipped: %s (%lld skipped in all)\n", (long long)step, why, (long long)s->total);
        fflush(stdout);
    }
    if (++s->in_a_row < DP_MAX_SKIPS) return 1;
    return dalle_seterr("steps %lld to %lld: %d updates in a row skipped (loss or gradient not finite): the run "
                        "diverged or the data is bad; lower --lr (the last checkpoint written is kept)",
                        (long long)(step - DP_MAX_SKIPS + 1), (long long)step, DP_MAX_SKIPS);
}

const char *dp_skips_note(dp_skips *s, char *buf) {
    buf[0] = 0;
    if (s->since_log) snprintf(buf, 48, " (%d steps skipped)", s->since_log);
    s->since_log = 0;
    return buf;
}

int64_t dp_overlap(const dp_t *d, int64_t a, int64_t numel, int64_t *start) {
    int64_t s = DALLE_MAX(a, d->lo), e = DALLE_MIN(a + numel, d->lo + d->len);
    *start = s;
    return e > s ? e - s : 0;
}
