// optim_ops.cu: the optimizer's ops on the GPU (ops.h; the CPU reference is
// backend/cpu/optim.c and elementwise.c): the fused AdamW step (with fp32
// moments, or 16-bit ones in core/half.h's e6m9/ue6m10, converted by that
// header's own inline functions), the EMA of the parameters, the squared
// gradient norm, and axpy. Each is one grid-stride kernel on cuda_stream.
//
// AdamW, EMA and axpy round every product and sum on its own (__fmul_rn,
// __fadd_rn: no fused multiply-add), in the CPU's order, with its scalars
// computed the CPU's way on the host, so that they give the CPU's bits.
#include <math.h>

#include "backend/cuda/common.cuh"

// ---------------------------------------------------------------- AdamW

// The scalars of step t, as torch (and the CPU's cpu_adam_consts_at) compute
// them: the bias corrections in double, rounded to float once; the decay
// factor 1 - lr*wd in float.
typedef struct {
    float one_m_b1, b2, one_m_b2, step_size, bc2_sqrt, shrink, eps;
} adam_consts;

static adam_consts adam_consts_at(float lr, float beta1, float beta2, float eps, float weight_decay, int64_t t) {
    adam_consts c;
    c.one_m_b1 = 1.0f - beta1;
    c.b2 = beta2;
    c.one_m_b2 = 1.0f - beta2;
    c.step_size = (float)((double)lr / (1.0 - pow((double)beta1, (double)t)));
    c.bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, (double)t));
    c.shrink = 1.0f - lr * weight_decay;
    c.eps = eps;
    return c;
}

// One parameter's step, the CPU's operations in its order:
//   m += (1-b1) (g - m);  v = b2 v + (1-b2) g g;  p = p shrink - step_size m / (sqrt(v)/bc2_sqrt + eps)
static __device__ __forceinline__ void adam_step(float &p, float &m, float &v, float g, const adam_consts &c) {
    m = __fadd_rn(m, __fmul_rn(c.one_m_b1, __fsub_rn(g, m))); // torch's lerp
    v = __fadd_rn(__fmul_rn(c.b2, v), __fmul_rn(__fmul_rn(c.one_m_b2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), c.bc2_sqrt), c.eps);
    p = __fsub_rn(__fmul_rn(p, c.shrink), __fdiv_rn(__fmul_rn(c.step_size, m), denom));
}

// p, m, v, g (n): one step.
static __global__ void adamw_kernel(float *p, float *m, float *v, const float *g, int64_t n, adam_consts c) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float pi = p[i], mi = m[i], vi = v[i];
        adam_step(pi, mi, vi, g[i], c);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

static void cuda_adamw_update(float *p, float *m, float *v, const float *g, int64_t n, float lr, float beta1,
                              float beta2, float eps, float weight_decay, int64_t t) {
    if (n <= 0) return;
    const adam_consts c = adam_consts_at(lr, beta1, beta2, eps, weight_decay, t);
    adamw_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(p, m, v, g, n, c);
    CUDA_LAUNCHED("adamw_kernel");
}

// The same with m (n) in e6m9 and v (n) in ue6m10: decoded, stepped, rounded back.
static __global__ void adamw16_kernel(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n,
                                      adam_consts c) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float pi = p[i], mi = e6m9_to_f32(m[i]), vi = ue6m10_to_f32(v[i]);
        adam_step(pi, mi, vi, g[i], c);
        p[i] = pi;
        m[i] = f32_to_e6m9(mi);
        v[i] = f32_to_ue6m10(vi);
    }
}

static void cuda_adamw_update16(float *p, uint16_t *m, uint16_t *v, const float *g, int64_t n, float lr,
                                float beta1, float beta2, float eps, float weight_decay, int64_t t) {
    if (n <= 0) return;
    const adam_consts c = adam_consts_at(lr, beta1, beta2, eps, weight_decay, t);
    adamw16_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(p, m, v, g, n, c);
    CUDA_LAUNCHED("adamw16_kernel");
}

// ---------------------------------------------------------------- EMA

// ema (n) = decay * ema + (1 - decay) * p
static __global__ void ema_kernel(float *ema, const float *p, int64_t n, float decay, float one_m_decay) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        ema[i] = __fadd_rn(__fmul_rn(decay, ema[i]), __fmul_rn(one_m_decay, p[i]));
}

static void cuda_ema_update(float *ema, const float *p, int64_t n, float decay) {
    if (n <= 0) return;
    ema_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(ema, p, n, decay, 1.0f - decay);
    CUDA_LAUNCHED("ema_kernel");
}

// ---------------------------------------------------------------- squared norm

// At most this many blocks (and partial sums) for the norm.
#define SUMSQ_BLOCKS 1024

// Each block's sum of g^2 (every square exact in double) to partials[block].
static __global__ void sumsq_kernel(double *partials, const float *g, int64_t n) {
    double s = 0.0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        s += (double)g[i] * g[i];
    s = block_sum_double(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

static double cuda_grad_sumsq(const float *g, int64_t n) {
    if (n <= 0) return 0.0;
    const unsigned blocks = cuda_grid_1d(n) < SUMSQ_BLOCKS ? cuda_grid_1d(n) : SUMSQ_BLOCKS;
    double *part = (double *)cuda_workspace(sizeof(double) * (blocks + 1));
    sumsq_kernel<<<blocks, CUDA_THREADS, 0, cuda_stream>>>(part, g, n);
    CUDA_LAUNCHED("sumsq_kernel");
    return cuda_sum_partials(part, (int)blocks);
}

// ---------------------------------------------------------------- axpy

// y (n) += a * x
static __global__ void axpy_kernel(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i]));
}

static void cuda_axpy(float *y, float a, const float *x, int64_t n) {
    if (n <= 0) return;
    axpy_kernel<<<cuda_grid_1d(n), CUDA_THREADS, 0, cuda_stream>>>(y, a, x, n);
    CUDA_LAUNCHED("axpy_kernel");
}

// ---------------------------------------------------------------- registration

void cuda_register_optim_ops(backend_ops *ops) {
    ops->adamw_update = cuda_adamw_update;
    ops->adamw_update16 = cuda_adamw_update16;
    ops->ema_update = cuda_ema_update;
    ops->grad_sumsq = cuda_grad_sumsq;
    ops->axpy = cuda_axpy;
}
