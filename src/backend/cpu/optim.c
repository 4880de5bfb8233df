// optim.c: the CPU ops of the optimizer (ops.h): one AdamW step over a
// tensor (with fp32 or 16-bit moments), the EMA of the parameters, and the squared norm of a gradient.
// Elementwise over n floats, split across threads when n is large; the norm
// is summed in index order so that it does not depend on the thread count.
#include "backend/cpu/cpu.h"

void cpu_adamw_update(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1, float beta2,
                      float eps, float weight_decay, int64_t t) {
    const cpu_adam_consts c = cpu_adam_consts_at(lr, beta1, beta2, eps, weight_decay, t);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) cpu_adam_step(&p[i], &m[i], &v[i], g[i], &c);
}

void cpu_adamw_update16(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, float lr, float beta1,
                        float beta2, float eps, float weight_decay, int64_t t) {
    const cpu_adam_consts c = cpu_adam_consts_at(lr, beta1, beta2, eps, weight_decay, t);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float mi = e6m9_to_f32(m[i]), vi = ue6m10_to_f32(v[i]);
        cpu_adam_step(&p[i], &mi, &vi, g[i], &c);
        m[i] = f32_to_e6m9(mi);
        v[i] = f32_to_ue6m10(vi);
    }
}

void cpu_ema_update(float *ema, const float *p, int64_t n, float decay) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) ema[i] = decay * ema[i] + (1.0f - decay) * p[i];
}

double cpu_grad_sumsq(const float *g, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return s;
}
