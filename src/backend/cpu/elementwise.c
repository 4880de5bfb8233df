// elementwise.c: the CPU elementwise ops of ops.h (ReLU forward/backward,
// axpy, the strided copy, the 16-bit conversions of core/half.c).
// Memory-bound loops: OpenMP splits them across cores when they are long
// enough to pay for waking the threads.
#include <stdint.h>
#include <string.h>

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

void cpu_copy2d(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + r * dst_stride, src + r * src_stride, sizeof(float) * (size_t)cols);
}

void cpu_to_half(uint16_t *dst, const float *src, int64_t n, half_fmt fmt) { half_from_f32(dst, src, n, fmt); }

void cpu_from_half(float *dst, const uint16_t *src, int64_t n, half_fmt fmt) { half_to_f32(dst, src, n, fmt); }

void cpu_store_half(uint16_t *dst, float *x, int64_t n, half_fmt fmt) { half_store(dst, x, n, fmt); }

int64_t cpu_round_half(float *x, int64_t n, half_fmt fmt, int filter) { return half_round(x, n, fmt, filter); }
