// winograd.c: the forward 3x3 convolution as Winograd's minimal filtering
// F(2x2, 3x3) (Lavin & Gray 2016): 16 multiplies per 2x2 output tile and
// input channel instead of 36, as 16 GEMMs.
//
// Per image, with the input padded by 1 and cut into T overlapping 4x4 tiles
// d (one per 2x2 output tile):
//   U = G g G^T     (16, Co, Ci)  the weights, transformed once per call
//   V = B^T d B     (16, Ci, Tc)  the input tiles of a chunk of Tc tiles
//   M_e = U_e V_e   (16, Co, Tc)  16 sgemm calls, one per tile element e
//   Y = A^T M A     (2x2 outputs per tile), + bias, into out.
// Its rounding differs from the direct sum by a few ulps (the transforms
// only add and halve), well inside the parity tolerance of the tests.
#include <cblas.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/common.h"

// Tiles per chunk: whole rows of tiles, V and M together under about
// CPU_CONV_CHUNK_FLOATS floats.
int winograd_chunk_tile_rows(int Ci, int Co, int H, int W) {
    const int TW = (W + 1) / 2, TH = (H + 1) / 2;
    const int64_t per_row = 16LL * (Ci + Co) * TW;
    return (int)DALLE_MAX(1, DALLE_MIN((int64_t)TH, CPU_CONV_CHUNK_FLOATS / per_row));
}

int64_t winograd_scratch_floats(int Ci, int Co, int H, int W) {
    const int64_t TW = (W + 1) / 2;
    return 16LL * Co * Ci + 16LL * (Ci + Co) * TW * winograd_chunk_tile_rows(Ci, Co, H, W);
}

// U (16, Co, Ci) = G g G^T for every 3x3 filter g of w (Co, Ci, 3, 3),
// G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1].
static void transform_weights(float *U, const float *w, int Co, int Ci) {
    const int64_t plane = (int64_t)Co * Ci;
#pragma omp parallel for schedule(static)
    for (int64_t f = 0; f < plane; f++) {
        const float *g = w + f * 9;
        float t[4][3]; // G g
        for (int j = 0; j < 3; j++) {
            t[0][j] = g[j];
            t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
            t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
            t[3][j] = g[6 + j];
        }
        for (int i = 0; i < 4; i++) { // (G g) G^T
            U[(i * 4 + 0) * plane + f] = t[i][0];
            U[(i * 4 + 1) * plane + f] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
            U[(i * 4 + 2) * plane + f] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
            U[(i * 4 + 3) * plane + f] = t[i][2];
        }
    }
}

// V (16, Ci, Tc) = B^T d B for the tiles of tile rows [r0, r0+nr) of x (Ci, H, W),
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. Row-wise so that the inner
// loops run over contiguous columns and vectorise: the four input rows of a
// tile row (zero-padded to W+4 columns) give B^T d for every column at once,
// then each tile takes its four columns 2tx .. 2tx+3 of that.
static void transform_input(float *V, const float *x, int Ci, int H, int W, int r0, int nr) {
    const int TW = (W + 1) / 2, WP = 2 * TW + 2; // padded row: column c of x at c + 1
    const int64_t Tc = (int64_t)nr * TW, plane = (int64_t)Ci * Tc;
#pragma omp parallel for collapse(2) schedule(static)
    for (int ci = 0; ci < Ci; ci++)
        for (int r = 0; r < nr; r++) {
            float d[4][WP], t[4][WP];
            const float *xc = x + (int64_t)ci * H * W;
            for (int i = 0; i < 4; i++) {
                const int y = 2 * (r0 + r) - 1 + i;
                memset(d[i], 0, sizeof(float) * WP);
                if (y >= 0 && y < H) memcpy(d[i] + 1, xc + (int64_t)y * W, sizeof(float) * W);
            }
            for (int c = 0; c < WP; c++) {
                t[0][c] = d[0][c] - d[2][c];
                t[1][c] = d[1][c] + d[2][c];
                t[2][c] = d[2][c] - d[1][c];
                t[3][c] = d[1][c] - d[3][c];
            }
            float *v = V + (int64_t)ci * Tc + (int64_t)r * TW;
            for (int i = 0; i < 4; i++) {
                float *v0 = v + (i * 4 + 0) * plane, *v1 = v + (i * 4 + 1) * plane;
                float *v2 = v + (i * 4 + 2) * plane, *v3 = v + (i * 4 + 3) * plane;
                const float *ti = t[i];
                for (int tx = 0; tx < TW; tx++) {
                    v0[tx] = ti[2 * tx] - ti[2 * tx + 2];
                    v1[tx] = ti[2 * tx + 1] + ti[2 * tx + 2];
                    v2[tx] = ti[2 * tx + 2] - ti[2 * tx + 1];
                    v3[tx] = ti[2 * tx + 1] - ti[2 * tx + 3];
                }
            }
        }
}

// out (Co, H, W) rows of tile rows [r0, r0+nr) = alpha*(A^T M A + b) + beta*out,
// A^T = [1 1 1 0; 0 1 -1 -1]; beta = 0 overwrites. Row-wise like the input.
static void transform_output(float *out, const float *M, const float *b, int Co, int H, int W, int r0,
                             int nr, float alpha, float beta) {
    const int TW = (W + 1) / 2;
    const int64_t Tc = (int64_t)nr * TW, plane = (int64_t)Co * Tc;
#pragma omp parallel for collapse(2) schedule(static)
    for (int co = 0; co < Co; co++)
        for (int r = 0; r < nr; r++) {
            float y[2][2 * TW], t[2][4][TW];
            const float *m = M + (int64_t)co * Tc + (int64_t)r * TW;
            for (int j = 0; j < 4; j++) { // A^T M, one tile column j at a time
                const float *e0 = m + j * plane, *e1 = m + (4 + j) * plane;
                const float *e2 = m + (8 + j) * plane, *e3 = m + (12 + j) * plane;
                for (int tx = 0; tx < TW; tx++) {
                    t[0][j][tx] = e0[tx] + e1[tx] + e2[tx];
                    t[1][j][tx] = e1[tx] - e2[tx] - e3[tx];
                }
            }
            const float bias = b ? b[co] : 0.0f;
            for (int i = 0; i < 2; i++)
                for (int tx = 0; tx < TW; tx++) { // (A^T M) A, plus the bias, times alpha
                    y[i][2 * tx] = alpha * (t[i][0][tx] + t[i][1][tx] + t[i][2][tx] + bias);
                    y[i][2 * tx + 1] = alpha * (t[i][1][tx] - t[i][2][tx] - t[i][3][tx] + bias);
                }
            float *oc = out + (int64_t)co * H * W;
            for (int i = 0; i < 2; i++) {
                const int yy = 2 * (r0 + r) + i;
                if (yy >= H) break;
                float *o = oc + (int64_t)yy * W;
                if (beta == 0.0f) memcpy(o, y[i], sizeof(float) * W);
                else
                    for (int c = 0; c < W; c++) o[c] = y[i][c] + beta * o[c];
            }
        }
}

void conv3x3_winograd_forward(float *out, const float *in, const float *w, const float *b, int B, int Ci,
                              int Co, int H, int W, float alpha, float beta, float *scratch) {
    const int TW = (W + 1) / 2, TH = (H + 1) / 2;
    const int rows = winograd_chunk_tile_rows(Ci, Co, H, W);
    float *U = scratch;                               // (16, Co, Ci)
    float *V = U + 16LL * Co * Ci;                    // (16, Ci, Tc)
    float *M = V + 16LL * Ci * TW * rows;             // (16, Co, Tc)
    transform_weights(U, w, Co, Ci);
    for (int bi = 0; bi < B; bi++) {
        const float *x = in + (int64_t)bi * Ci * H * W;
        float *o = out + (int64_t)bi * Co * H * W;
        for (int r0 = 0; r0 < TH; r0 += rows) {
            const int nr = DALLE_MIN(rows, TH - r0), Tc = nr * TW;
            transform_input(V, x, Ci, H, W, r0, nr);
            for (int e = 0; e < 16; e++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, Tc, Ci, 1.0f, U + (int64_t)e * Co * Ci, Ci,
                            V + (int64_t)e * Ci * Tc, Tc, 0.0f, M + (int64_t)e * Co * Tc, Tc);
            transform_output(o, M, b, Co, H, W, r0, nr, alpha, beta);
        }
    }
}
