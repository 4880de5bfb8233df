// optim.c: see optim.h.
#include "optim.h"

#include <math.h>

#include "core/half.h"

// The scalars of step t, in double as torch computes them in Python.
typedef struct {
    float b1, b2, step_size, bc2_sqrt, shrink, eps;
} adam_consts;

static adam_consts adam_consts_at(const adamw_params *h, int64_t t, int decay) {
    adam_consts c = {h->beta1, h->beta2, 0, 0, 1.0f, h->eps};
    c.step_size = (float)((double)h->lr / (1.0 - pow((double)c.b1, (double)t)));
    c.bc2_sqrt = (float)sqrt(1.0 - pow((double)c.b2, (double)t));
    if (decay) c.shrink = 1.0f - h->lr * h->weight_decay;
    return c;
}

// One parameter's step: the arithmetic of both moment storages.
static inline void adam_step(float *p, float *m, float *v, float g, const adam_consts *c) {
    *m += (1.0f - c->b1) * (g - *m); // torch's lerp
    *v = c->b2 * *v + (1.0f - c->b2) * g * g;
    float denom = sqrtf(*v) / c->bc2_sqrt + c->eps;
    *p = *p * c->shrink - c->step_size * *m / denom;
}

void adamw_update(float *p, float *m, float *v, const float *g, int64_t n, const adamw_params *h,
                  int64_t t, int decay) {
    const adam_consts c = adam_consts_at(h, t, decay);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) adam_step(&p[i], &m[i], &v[i], g[i], &c);
}

void adamw_update16(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, const adamw_params *h,
                    int64_t t, int decay) {
    const adam_consts c = adam_consts_at(h, t, decay);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float mi = e6m9_to_f32(m[i]), vi = ue6m10_to_f32(v[i]);
        adam_step(&p[i], &mi, &vi, g[i], &c);
        m[i] = f32_to_e6m9(mi);
        v[i] = f32_to_ue6m10(vi);
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
