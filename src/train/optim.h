// optim.h: what every trainer of the project shares: AdamW, the EMA of the
// parameters, and the schedules (SPEC §2: cosine annealing of tau, beta and
// the step size; §3: linear warm-up). AdamW (adamw_update, and
// adamw_update16 with 16-bit moments), the EMA (ema_update) and the gradient
// norm (grad_sumsq) are backend ops (ops.h).
#pragma once
#include <stdint.h>

#include "backend/ops.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} adamw_params;

// Cosine annealing from `start` (step 0) to `end` (step >= horizon), holding
// `end` after: end + (start - end) * (1 + cos(pi * min(step, horizon) / horizon)) / 2.
// horizon <= 0 gives `end`.
double cosine_schedule(int64_t step, int64_t horizon, double start, double end);
