// optim.c: see optim.h. AdamW, the EMA and the gradient norm are ops of the
// backend (backend/ops.h); this file keeps the schedules.
#include "optim.h"

#include <math.h>

double cosine_schedule(int64_t step, int64_t horizon, double start, double end) {
    if (horizon <= 0 || step >= horizon) return end;
    if (step < 0) step = 0;
    return end + (start - end) * 0.5 * (1.0 + cos(M_PI * (double)step / (double)horizon));
}
