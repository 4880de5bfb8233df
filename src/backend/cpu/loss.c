// loss.c: the CPU ops of the dVAE's evidence lower bound (ops.h; SPEC §2,
// paper §2.1 and App. A.3): the Gumbel-softmax relaxation of the categorical
// posterior (and its noise, from core/rng.c), its KL divergence to the uniform prior over the V codes, and the
// logit-Laplace likelihood of the pixels.
//
// Layouts are NCHW as everywhere: logits (B, V, P) have the codes on a
// stride of P positions, so the loops run over positions innermost.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/common.h"
#include "core/rng.h"

void cpu_gumbel_softmax_forward(float *z, const float *logits, const float *g, float tau, int B, int V, int P) {
    float *work = dalle_malloc(sizeof(float) * 2 * (size_t)B * (size_t)P); // (B, 2, P): running max, then sum
    DALLE_ASSERT(work);
    const float inv_tau = 1.0f / tau;
    #pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) {
        float *mx = work + (int64_t)b * 2 * P, *sum = mx + P;
        const float *l = logits + (int64_t)b * V * P, *gb = g + (int64_t)b * V * P;
        float *zb = z + (int64_t)b * V * P;
        for (int p = 0; p < P; p++) { mx[p] = -INFINITY; sum[p] = 0.0f; }
        for (int v = 0; v < V; v++) {
            const int64_t o = (int64_t)v * P;
            for (int p = 0; p < P; p++) {
                zb[o + p] = (l[o + p] + gb[o + p]) * inv_tau;
                mx[p] = zb[o + p] > mx[p] ? zb[o + p] : mx[p]; // not fmaxf: a library call, not a vector max
            }
        }
        for (int v = 0; v < V; v++) {
            float *zv = zb + (int64_t)v * P;
            for (int p = 0; p < P; p++) {
                zv[p] = expf(zv[p] - mx[p]);
                sum[p] += zv[p];
            }
        }
        for (int p = 0; p < P; p++) sum[p] = 1.0f / sum[p];
        for (int v = 0; v < V; v++)
            for (int p = 0; p < P; p++) zb[(int64_t)v * P + p] *= sum[p];
    }
    dalle_free(work);
}

void cpu_gumbel_softmax_backward(float *dlogits, const float *dz, const float *z, float tau, int B, int V, int P) {
    float *work = dalle_malloc(sizeof(float) * (size_t)B * (size_t)P); // (B, P) sum_k z_k dz_k
    DALLE_ASSERT(work);
    const float inv_tau = 1.0f / tau;
    #pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) {
        float *dot = work + (int64_t)b * P;
        int64_t o = (int64_t)b * V * P;
        memset(dot, 0, sizeof(float) * (size_t)P);
        for (int v = 0; v < V; v++)
            for (int p = 0; p < P; p++) dot[p] += z[o + (int64_t)v * P + p] * dz[o + (int64_t)v * P + p];
        for (int v = 0; v < V; v++)
            for (int p = 0; p < P; p++) {
                const int64_t i = o + (int64_t)v * P + p;
                dlogits[i] += inv_tau * z[i] * (dz[i] - dot[p]);
            }
    }
    dalle_free(work);
}

void cpu_gumbel_noise(float *g, uint64_t key, uint64_t counter, int64_t first, int64_t n) {
    const rng_t r = {key, counter};
    rng_gumbel_at(&r, first, g, n);
}

double cpu_kl_uniform_forward_backward(float *dlogits, const float *logits, float scale, int B, int V, int P) {
    float *work = dalle_malloc(sizeof(float) * 3 * (size_t)B * (size_t)P); // (B, 3, P): max, log-sum-exp, sum q ln q
    double *part = dalle_malloc(sizeof(double) * (size_t)B);               // (B) each item's KL
    DALLE_ASSERT(work && part);
    #pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) {
        float *mx = work + (int64_t)b * 3 * P, *lse = mx + P, *qlq = mx + 2 * P;
        const float *l = logits + (int64_t)b * V * P;
        for (int p = 0; p < P; p++) { mx[p] = -INFINITY; lse[p] = 0.0f; qlq[p] = 0.0f; }
        for (int v = 0; v < V; v++)
            for (int p = 0; p < P; p++) {
                const float lv = l[(int64_t)v * P + p];
                mx[p] = lv > mx[p] ? lv : mx[p]; // not fmaxf: a library call, not a vector max
            }
        // with e = exp(l - mx) and S = sum e: sum q ln q = sum e (l - mx) / S - ln S,
        // so one exponential per code gives both sums
        for (int v = 0; v < V; v++)
            for (int p = 0; p < P; p++) {
                const float c = l[(int64_t)v * P + p] - mx[p], e = expf(c);
                lse[p] += e;
                qlq[p] += e * c;
            }
        for (int p = 0; p < P; p++) {
            const float ls = logf(lse[p]);
            qlq[p] = qlq[p] / lse[p] - ls;
            lse[p] = mx[p] + ls;
        }
        double kl = 0.0;
        for (int p = 0; p < P; p++) kl += (double)qlq[p] + log((double)V);
        part[b] = kl;
        if (!dlogits) continue;
        float *d = dlogits + (int64_t)b * V * P;
        // d/dl_j sum_k q_k ln q_k = q_j (ln q_j - sum_k q_k ln q_k)
        for (int v = 0; v < V; v++)
            for (int p = 0; p < P; p++) {
                const int64_t i = (int64_t)v * P + p;
                float lq = l[i] - lse[p];
                d[i] += scale * expf(lq) * (lq - qlq[p]);
            }
    }
    double total = 0.0; // the items in order: the same sum whatever the threads
    for (int b = 0; b < B; b++) total += part[b];
    dalle_free(work);
    dalle_free(part);
    return total;
}

double cpu_logit_laplace_nll(float *dstats, const float *stats, const float *x, float scale, int B, int N) {
    double *part = dalle_malloc(sizeof(double) * (size_t)B); // (B) each item's sum
    DALLE_ASSERT(part);
    const double ln2 = 0.6931471805599453;
    #pragma omp parallel for schedule(static) if (B > 1)
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
        part[b] = acc;
    }
    double total = 0.0; // the items in order: the same sum whatever the threads
    for (int b = 0; b < B; b++) total += part[b];
    dalle_free(part);
    return total;
}
