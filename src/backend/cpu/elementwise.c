// elementwise.c: the CPU elementwise ops of ops.h (ReLU forward/backward and
// axpy). Memory-bound loops: OpenMP splits them across cores when they are
// long enough to pay for waking the threads.
#include <stdint.h>

#include "backend/cpu/cpu.h"

// Below this many elements one thread is faster than waking the others.
#define PAR_MIN 32768

void cpu_relu_forward(float *out, const float *in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = in[i] > 0 ? in[i] : 0.0f;
}

void cpu_relu_backward(float *din, const float *dout, const float *in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) din[i] += in[i] > 0 ? dout[i] : 0.0f;
}

void cpu_axpy(float *y, float a, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}
