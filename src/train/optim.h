// optim.h: what every trainer of the project shares: AdamW, the EMA of the
// parameters, and the schedules (SPEC §2: cosine annealing of tau, beta and
// the step size; §3: linear warm-up).
#pragma once
#include <stdint.h>

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} adamw_params;

// One AdamW step at step t (1-based), exactly torch.optim.AdamW's arithmetic:
// p *= 1 - lr*wd (only if decay), m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
//   p, m, v, g (n,)
void adamw_update(float *p, float *m, float *v, const float *g, int64_t n, const adamw_params *h,
                  int64_t t, int decay);
// The same step with the moments stored in the paper's 16-bit formats
// (core/half.h: m in e6m9, v in ue6m10): each is decoded, updated in float32
// exactly as above, and rounded back. p (n,) float32 (the master weights).
void adamw_update16(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, const adamw_params *h,
                    int64_t t, int decay);

// ema (n) = decay * ema + (1 - decay) * p
void ema_update(float *ema, const float *p, int64_t n, float decay);

// Cosine annealing from `start` (step 0) to `end` (step >= horizon), holding
// `end` after: end + (start - end) * (1 + cos(pi * min(step, horizon) / horizon)) / 2.
// horizon <= 0 gives `end`.
double cosine_schedule(int64_t step, int64_t horizon, double start, double end);

// The squared L2 norm of g (n,), accumulated in double in index order.
double grad_sumsq(const float *g, int64_t n);
