// pool.c: the CPU resampling ops of ops.h: 2x2 max-pooling (the dVAE
// encoder's downsampling) and nearest-neighbour x2 upsampling (the
// decoder's), forward and backward. Each thread takes whole (b, c) planes.
#include <stdint.h>

#include "backend/cpu/cpu.h"
#include "core/common.h"

void cpu_maxpool2_forward(float *out, const float *in, int B, int C, int H, int W) {
    DALLE_ASSERT(H % 2 == 0 && W % 2 == 0);
    const int Ho = H / 2, Wo = W / 2;
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < (int64_t)B * C; pl++) {
        const float *x = in + pl * H * W; // (H, W)
        float *o = out + pl * Ho * Wo;    // (Ho, Wo)
        for (int i = 0; i < Ho; i++) {
            const float *r0 = x + (int64_t)2 * i * W, *r1 = r0 + W;
            for (int j = 0; j < Wo; j++) {
                // scan order (0,0) (0,1) (1,0) (1,1); strict > keeps the first max
                float m = r0[2 * j];
                if (r0[2 * j + 1] > m) m = r0[2 * j + 1];
                if (r1[2 * j] > m) m = r1[2 * j];
                if (r1[2 * j + 1] > m) m = r1[2 * j + 1];
                o[(int64_t)i * Wo + j] = m;
            }
        }
    }
}

void cpu_maxpool2_backward(float *din, const float *dout, const float *in, int B, int C, int H, int W) {
    DALLE_ASSERT(H % 2 == 0 && W % 2 == 0);
    const int Ho = H / 2, Wo = W / 2;
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < (int64_t)B * C; pl++) {
        const float *x = in + pl * H * W;  // (H, W)
        const float *g = dout + pl * Ho * Wo; // (Ho, Wo)
        float *d = din + pl * H * W;        // (H, W)
        for (int i = 0; i < Ho; i++) {
            const float *x0 = x + (int64_t)2 * i * W, *x1 = x0 + W, *gr = g + (int64_t)i * Wo;
            float *d0 = d + (int64_t)2 * i * W, *d1 = d0 + W;
            for (int j = 0; j < Wo; j++) {
                // the same scan as the forward picks the same element; selects,
                // not branches, which the data would mispredict half the time
                const float a = x0[2 * j], b = x0[2 * j + 1], c = x1[2 * j], e = x1[2 * j + 1], gv = gr[j];
                const int pb = b > a;
                const float m1 = pb ? b : a;
                const int pc = c > m1;
                const int pe = e > (pc ? c : m1);
                d0[2 * j] += !pe && !pc && !pb ? gv : 0.0f;
                d0[2 * j + 1] += !pe && !pc && pb ? gv : 0.0f;
                d1[2 * j] += !pe && pc ? gv : 0.0f;
                d1[2 * j + 1] += pe ? gv : 0.0f;
            }
        }
    }
}

void cpu_upsample2_forward(float *out, const float *in, int B, int C, int H, int W) {
    const int Wo = 2 * W;
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < (int64_t)B * C; pl++) {
        const float *x = in + pl * H * W;  // (H, W)
        float *o = out + pl * 4 * H * W;   // (2H, 2W)
        for (int i = 0; i < H; i++) {
            float *r0 = o + (int64_t)2 * i * Wo, *r1 = r0 + Wo;
            const float *xr = x + (int64_t)i * W;
            for (int j = 0; j < W; j++) r0[2 * j] = r0[2 * j + 1] = xr[j];
            for (int j = 0; j < Wo; j++) r1[j] = r0[j];
        }
    }
}

void cpu_upsample2_backward(float *din, const float *dout, int B, int C, int H, int W) {
    const int Wo = 2 * W;
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < (int64_t)B * C; pl++) {
        const float *g = dout + pl * 4 * H * W; // (2H, 2W)
        float *d = din + pl * H * W;            // (H, W)
        for (int i = 0; i < H; i++) {
            const float *r0 = g + (int64_t)2 * i * Wo, *r1 = r0 + Wo;
            float *dr = d + (int64_t)i * W;
            for (int j = 0; j < W; j++)
                dr[j] += (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
        }
    }
}
