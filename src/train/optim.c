// optim.c: see optim.h. AdamW, the EMA and the gradient norm are ops of the
// backend (backend/ops.h); this file keeps what runs on the host only.
#include "optim.h"

#include <math.h>

#include "backend/cpu/cpu.h"
#include "core/half.h"

void adamw_update16(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, const adamw_params *h,
                    int64_t t, int decay) {
    const cpu_adam_consts c =
        cpu_adam_consts_at(h->lr, h->beta1, h->beta2, h->eps, decay ? h->weight_decay : 0.0f, t);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float mi = e6m9_to_f32(m[i]), vi = ue6m10_to_f32(v[i]);
        cpu_adam_step(&p[i], &mi, &vi, g[i], &c);
        m[i] = f32_to_e6m9(mi);
        v[i] = f32_to_ue6m10(vi);
    }
}

double cosine_schedule(int64_t step, int64_t horizon, double start, double end) {
    if (horizon <= 0 || step >= horizon) return end;
    if (step < 0) step = 0;
    return end + (start - end) * 0.5 * (1.0 + cos(M_PI * (double)step / (double)horizon));
}
