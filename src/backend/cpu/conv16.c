// conv16.c: the CPU's 16-bit dVAE convolutions (ops.h conv2d16_forward /
// conv2d16_backward): the inputs rounded to the 16-bit format, the weight
// decoded from its codes, the fp32 convolution of conv.c, its result rounded
// to the format, then the bias, alpha, beta and accumulation in fp32. Every
// product of two rounded values is exact in fp32, so this is the semantics a
// GPU's bf16 convolution (bf16 data, fp32 compute, bf16 output) reproduces up
// to the order of its sums; on the CPU it is bit for bit reproducible.
#include <string.h>

#include "backend/conv16.h"
#include "backend/cpu/cpu.h"
#include "core/half.h"

// dst (n) = src (n) rounded to fmt (dst may equal src).
static void round_to(float *dst, const float *src, int64_t n, half_fmt fmt) {
    if (dst != src) memcpy(dst, src, sizeof(float) * (size_t)n);
    half_round(dst, n, fmt, 0);
}

// The scratch's parts (backend/conv16.h).
static conv16_parts split(float *scratch, int B, int Ci, int Co, int H, int W, int k) {
    return conv16_split(scratch, cpu_conv2d_scratch_floats(Ci, Co, H, W, k), B, Ci, Co, H, W, k);
}

void cpu_conv2d16_forward(float *out, const float *in, const uint16_t *w, const float *b, int B, int Ci, int Co,
                          int H, int W, int k, float alpha, float beta, half_fmt fmt, float *scratch) {
    const int64_t HW = (int64_t)H * W;
    conv16_parts p = split(scratch, B, Ci, Co, H, W, k);
    half_to_f32(p.w, w, (int64_t)Co * Ci * k * k, fmt);
    round_to(p.i, in, (int64_t)B * Ci * HW, fmt);
    cpu_conv2d_forward(p.o, p.i, p.w, NULL, B, Ci, Co, H, W, k, 1.0f, 0.0f, p.conv); // (B, Co, H, W)
    half_round(p.o, (int64_t)B * Co * HW, fmt, 0);
    for (int bc = 0; bc < B * Co; bc++) {
        const float bias = b ? b[bc % Co] : 0.0f;
        float *o = out + bc * HW;
        const float *t = p.o + bc * HW;
        for (int64_t j = 0; j < HW; j++) { // the CUDA epilogue's order (conv16_ops.cu)
            float v = alpha * (t[j] + bias);
            o[j] = beta != 0.0f ? v + beta * o[j] : v;
        }
    }
}

void cpu_conv2d16_backward(float *din, float *dw, float *db, const float *dout, const float *in, const uint16_t *w,
                           int B, int Ci, int Co, int H, int W, int k, float alpha, half_fmt fmt, float *scratch) {
    const int64_t HW = (int64_t)H * W, nw = (int64_t)Co * Ci * k * k, nin = (int64_t)B * Ci * HW;
    conv16_parts p = split(scratch, B, Ci, Co, H, W, k);
    half_to_f32(p.w, w, nw, fmt);
    round_to(p.o, dout, (int64_t)B * Co * HW, fmt); // r(dout)
    if (dw) {
        round_to(p.i, in, nin, fmt); // r(in)
        memset(p.w2, 0, sizeof(float) * (size_t)nw);
        cpu_conv2d_backward(NULL, p.w2, NULL, p.o, p.i, p.w, B, Ci, Co, H, W, k, 1.0f, p.conv);
        half_round(p.w2, nw, fmt, 0);
        cpu_axpy(dw, alpha, p.w2, nw);
    }
    if (din) {
        memset(p.i, 0, sizeof(float) * (size_t)nin);
        cpu_conv2d_backward(p.i, NULL, NULL, p.o, in, p.w, B, Ci, Co, H, W, k, 1.0f, p.conv);
        half_round(p.i, nin, fmt, 0);
        cpu_axpy(din, alpha, p.i, nin);
    }
    if (db) cpu_conv2d_backward(NULL, NULL, db, dout, in, p.w, B, Ci, Co, H, W, k, alpha, p.conv);
}
