// optim.h: what every trainer of the project shares: AdamW, the EMA of the
// parameters, and the schedules (SPEC §2: cosine annealing of tau, beta and
// the step size; §3: linear warm-up). AdamW (adamw_update), the EMA
// (ema_update) and the gradient norm (grad_sumsq) are backend ops (ops.h);
// the step with 16-bit moments is host code, here.
#pragma once
#include <stdint.h>

#include "backend/ops.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} adamw_params;

// adamw_update's step (ops.h) with the moments stored in the paper's 16-bit
// formats (core/half.h: m in e6m9, v in ue6m10): each is decoded, updated in
// float32 exactly as adamw_update, and rounded back; weight decay only if
// decay. p (n,) float32 (the master weights). Host memory (CPU only).
void adamw_update16(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, const adamw_params *h,
                    int64_t t, int decay);

// Cosine annealing from `start` (step 0) to `end` (step >= horizon), holding
// `end` after: end + (start - end) * (1 + cos(pi * min(step, horizon) / horizon)) / 2.
// horizon <= 0 gives `end`.
double cosine_schedule(int64_t step, int64_t horizon, double start, double end);
