// optim.c: see optim.h.
#include "optim.h"

#include <math.h>

void adamw_update(float *p, float *m, float *v, const float *g, int64_t n, const adamw_params *h,
                  int64_t t, int decay) {
    const float b1 = h->beta1, b2 = h->beta2;
    // the scalars in double, as torch computes them in Python
    const float step_size = (float)((double)h->lr / (1.0 - pow((double)b1, (double)t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow((double)b2, (double)t));
    const float shrink = decay ? 1.0f - h->lr * h->weight_decay : 1.0f;
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        m[i] += (1.0f - b1) * (gi - m[i]); // torch's lerp
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float denom = sqrtf(v[i]) / bc2_sqrt + h->eps;
        p[i] = p[i] * shrink - step_size * m[i] / denom;
    }
}

void ema_update(float *ema, const float *p, int64_t n, float decay) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) ema[i] = decay * ema[i] + (1.0f - decay) * p[i];
}

double cosine_schedule(int64_t step, int64_t horizon, double start, double end) {
    if (horizon <= 0 || step >= horizon) return end;
    if (step < 0) step = 0;
    return end + (start - end) * 0.5 * (1.0 + cos(M_PI * (double)step / (double)horizon));
}

double grad_sumsq(const float *g, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return s;
}
