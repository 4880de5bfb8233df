// loss.c: the terms of the dVAE's evidence lower bound (SPEC §2, paper §2.1
// and App. A.3): the Gumbel-softmax relaxation of the categorical posterior,
// its KL divergence to the uniform prior over the V codes, and the
// logit-Laplace likelihood of the pixels.
//
// Layouts are NCHW as everywhere: logits (B, V, P) have the codes on a
// stride of P positions, so the loops run over positions innermost.
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "model.h"

void gumbel_softmax_forward(float *z, const float *logits, const float *g, float tau, int B, int V, int P) {
    float *mx = dalle_malloc(sizeof(float) * 2 * (size_t)P); // (2, P): running max, then sum
    DALLE_ASSERT(mx);
    float *sum = mx + P;
    const float inv_tau = 1.0f / tau;
    for (int b = 0; b < B; b++) {
        const float *l = logits + (int64_t)b * V * P, *gb = g + (int64_t)b * V * P;
        float *zb = z + (int64_t)b * V * P;
        for (int p = 0; p < P; p++) { mx[p] = -INFINITY; sum[p] = 0.0f; }
        for (int64_t i = 0; i < (int64_t)V * P; i++) {
            zb[i] = (l[i] + gb[i]) * inv_tau;
            if (zb[i] > mx[i % P]) mx[i % P] = zb[i];
        }
        for (int64_t i = 0; i < (int64_t)V * P; i++) {
            zb[i] = expf(zb[i] - mx[i % P]);
            sum[i % P] += zb[i];
        }
        for (int p = 0; p < P; p++) sum[p] = 1.0f / sum[p];
        for (int64_t i = 0; i < (int64_t)V * P; i++) zb[i] *= sum[i % P];
    }
    dalle_free(mx);
}

void gumbel_softmax_backward(float *dlogits, const float *dz, const float *z, float tau, int B, int V, int P) {
    float *dot = dalle_malloc(sizeof(float) * (size_t)P); // (P,) sum_k z_k dz_k
    DALLE_ASSERT(dot);
    const float inv_tau = 1.0f / tau;
    for (int b = 0; b < B; b++) {
        int64_t o = (int64_t)b * V * P;
        memset(dot, 0, sizeof(float) * (size_t)P);
        for (int64_t i = 0; i < (int64_t)V * P; i++) dot[i % P] += z[o + i] * dz[o + i];
        for (int64_t i = 0; i < (int64_t)V * P; i++)
            dlogits[o + i] += inv_tau * z[o + i] * (dz[o + i] - dot[i % P]);
    }
    dalle_free(dot);
}

double kl_uniform_forward_backward(float *dlogits, const float *logits, float scale, int B, int V, int P) {
    float *mx = dalle_malloc(sizeof(float) * 3 * (size_t)P); // (3, P): max, log-sum-exp, sum q ln q
    DALLE_ASSERT(mx);
    float *lse = mx + P, *qlq = mx + 2 * P;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *l = logits + (int64_t)b * V * P;
        for (int p = 0; p < P; p++) { mx[p] = -INFINITY; lse[p] = 0.0f; qlq[p] = 0.0f; }
        for (int64_t i = 0; i < (int64_t)V * P; i++)
            if (l[i] > mx[i % P]) mx[i % P] = l[i];
        for (int64_t i = 0; i < (int64_t)V * P; i++) lse[i % P] += expf(l[i] - mx[i % P]);
        for (int p = 0; p < P; p++) lse[p] = mx[p] + logf(lse[p]);
        for (int64_t i = 0; i < (int64_t)V * P; i++) {
            float lq = l[i] - lse[i % P];
            qlq[i % P] += expf(lq) * lq;
        }
        for (int p = 0; p < P; p++) total += (double)qlq[p] + log((double)V);
        if (!dlogits) continue;
        float *d = dlogits + (int64_t)b * V * P;
        // d/dl_j sum_k q_k ln q_k = q_j (ln q_j - sum_k q_k ln q_k)
        for (int64_t i = 0; i < (int64_t)V * P; i++) {
            float lq = l[i] - lse[i % P];
            d[i] += scale * expf(lq) * (lq - qlq[i % P]);
        }
    }
    dalle_free(mx);
    return total;
}

double logit_laplace_nll(float *dstats, const float *stats, const float *x, float scale, int B, int N) {
    double total = 0.0;
    const double ln2 = 0.6931471805599453;
    for (int b = 0; b < B; b++) {
        const float *mu = stats + (int64_t)b * 6 * N, *lnb = mu + 3 * (int64_t)N;
        const float *xb = x + (int64_t)b * 3 * N;
        double acc = 0.0;
        for (int64_t i = 0; i < 3 * (int64_t)N; i++) {
            float xi = xb[i];
            float d = logf(xi) - log1pf(-xi) - mu[i]; // logit(x) - mu
            float inv_b = expf(-lnb[i]);
            acc += ln2 + (double)lnb[i] + (double)logf(xi) + (double)log1pf(-xi) + (double)(fabsf(d) * inv_b);
            if (dstats) {
                float *dmu = dstats + (int64_t)b * 6 * N, *dlnb = dmu + 3 * (int64_t)N;
                dmu[i] = scale * (d > 0 ? -inv_b : d < 0 ? inv_b : 0.0f);
                dlnb[i] = scale * (1.0f - fabsf(d) * inv_b);
            }
        }
        total += acc;
    }
    return total;
}
