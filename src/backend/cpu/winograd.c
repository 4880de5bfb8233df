// winograd.c: the 3x3 convolution as Winograd's minimal filtering F(m x m,
// 3x3) (Lavin & Gray 2016), m = 2 or 4: a = m + 2, a^2 multiplies per m x m
// output tile and input channel instead of 9 m^2, as a^2 GEMMs.
//
// Per image, with the input padded by 1 and cut into T overlapping a x a
// tiles d (one per m x m output tile), E = a^2:
//   U = G g G^T     (E, Co, Ci)  the weights, transformed once per call
//   V = B^T d B     (E, Ci, Tc)  the input tiles of a chunk of Tc tiles
//   M_e = U_e V_e   (E, Co, Tc)  E sgemm calls, one per tile element e
//   Y = A^T M A     (m x m outputs per tile), + bias, into out.
// Wide layers go in chunks of tiles: the input transform of a chunk, its E
// products (independent: each thread takes whole ones, which OpenBLAS, called
// inside an OpenMP region, runs single-threaded), its output transform.
// Thin layers run fused (winograd_fused): each thread takes blocks of tiles
// through all three steps in its own cache.
// F(4x4) uses the points 0, +-1, +-2 and infinity; in float32 it differs
// from the direct sum by ~5e-6 of the output's scale, F(2x2) by ~1e-7 (the
// tests check both).
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/common.h"

#define WG_TB 64 // tiles per block of the transforms

// A tile's place: its image, its row of tiles in that image and its column.
// Tiles are numbered across the batch, row of tiles by row (TW tiles per
// row, TH rows per image); a block walks them with wg_advance, not dividing.
typedef struct {
    int64_t img;
    int tr, tx;
} wg_pos;

static inline wg_pos wg_tile(int t, int TW, int TH) {
    const int R = t / TW;
    return (wg_pos){R / TH, R % TH, t % TW};
}

// Moves p on by n tiles, n <= TW - p->tx (the rest of its row of tiles at most).
static inline void wg_advance(wg_pos *p, int n, int TW, int TH) {
    if ((p->tx += n) < TW) return;
    p->tx = 0;
    if (++p->tr < TH) return;
    p->tr = 0;
    p->img++;
}

// Whether a convolution of Ci to Co channels runs fused: each thread takes
// blocks of WG_TB tiles through the input transform, the E products and the
// output transform while its V and M (E (Ci + Co) WG_TB floats, 590 KB at
// Ci + Co = 64) stay in its core's cache. Thin layers are bound by moving V
// and M through memory otherwise; wide ones want the wide GEMMs of chunks.
static int winograd_fused(int Ci, int Co) { return Ci + Co <= WG_FUSED_MAX; }

// The threads a fused convolution's scratch has room for: the processors,
// not omp_get_max_threads(), which is per thread (a server's worker threads
// may see another value than the thread that sized the scratch). A fused
// convolution runs on at most this many.
static int wg_slots(void) { return DALLE_MAX(1, omp_get_num_procs()); }
static int wg_team(void) { return DALLE_MIN(omp_get_max_threads(), wg_slots()); }

// acc += c * x for a coefficient c of the tables: with the loops unrolled
// (GCC unroll), c is a constant and the terms with c = 0 vanish at compile
// time; the compiler may not drop them itself (0 * x is NaN for x infinite).
#define WG_MAC(acc, c, x)          \
    do {                           \
        const float c_ = (c);      \
        if (c_ != 0.0f) (acc) += c_ * (x); \
    } while (0)

#define WG_CAT_(a, b) a##b
#define WG_CAT(a, b) WG_CAT_(a, b)

// ---- F(2x2, 3x3)
static const float F2_BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const float F2_G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
static const float F2_AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
#define WG_M 2
#define WG_A 4
#define WG_FN(name) WG_CAT(F2_, name)
#include "winograd_tile.h"
#undef WG_M
#undef WG_A
#undef WG_FN

// ---- F(4x4, 3x3): the points 0, +-1, +-2 and infinity
static const float F4_BT[6][6] = {
    {4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1},
};
static const float F4_G[6][3] = {
    {1.0f / 4, 0, 0},           {-1.0f / 6, -1.0f / 6, -1.0f / 6}, {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6}, {1.0f / 24, -1.0f / 12, 1.0f / 6}, {0, 0, 1},
};
static const float F4_AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
#define WG_M 4
#define WG_A 6
#define WG_FN(name) WG_CAT(F4_, name)
#include "winograd_tile.h"
#undef WG_M
#undef WG_A
#undef WG_FN

int conv3x3_winograd_m(int B, int H, int W) {
    if ((int64_t)B * ((H + 3) / 4) * ((W + 3) / 4) >= 128) return 4;
    return (int64_t)B * ((H + 1) / 2) * ((W + 1) / 2) >= 64 ? 2 : 0;
}

// Tile rows per chunk (counted across the images of a batch): V and M
// together under about CPU_CONV_CHUNK_FLOATS floats, but at least 256 tiles
// so that the GEMMs stay wide.
int winograd_chunk_tile_rows(int Ci, int Co, int H, int W, int m) {
    (void)H;
    const int a = m + 2, TW = (W + m - 1) / m;
    const int64_t per_row = (int64_t)a * a * (Ci + Co) * TW;
    return (int)DALLE_MAX(1, DALLE_MAX(CPU_CONV_CHUNK_FLOATS / per_row, (int64_t)(256 + TW - 1) / TW));
}

int64_t winograd_scratch_floats(int Ci, int Co, int H, int W, int m) {
    const int64_t E = (int64_t)(m + 2) * (m + 2), TW = (W + m - 1) / m, nth = wg_slots();
    if (winograd_fused(Ci, Co)) // a dU per thread (the backward), a V and M per thread
        return nth * E * Co * Ci + nth * E * (Ci + Co) * WG_TB;
    return E * Co * Ci + E * (Ci + Co) * TW * winograd_chunk_tile_rows(Ci, Co, H, W, m);
}

void conv3x3_winograd_forward(float *out, const float *in, const float *w, const float *b, int B, int Ci,
                              int Co, int H, int W, float alpha, float beta, int m, float *scratch) {
    DALLE_ASSERT((m == 2 || m == 4) && W <= 4096 && (int64_t)B * ((H + m - 1) / m) * ((W + m - 1) / m) <= INT32_MAX);
    if (m == 2) F2_forward(out, in, w, b, B, Ci, Co, H, W, alpha, beta, scratch);
    else F4_forward(out, in, w, b, B, Ci, Co, H, W, alpha, beta, scratch);
}

void conv3x3_winograd_backward_filter(float *dw, const float *dout, const float *in, int B, int Ci, int Co, int H,
                                      int W, float alpha, int m, float *scratch) {
    DALLE_ASSERT((m == 2 || m == 4) && W <= 4096 && (int64_t)B * ((H + m - 1) / m) * ((W + m - 1) / m) <= INT32_MAX);
    if (m == 2) F2_backward_filter(dw, dout, in, B, Ci, Co, H, W, alpha, scratch);
    else F4_backward_filter(dw, dout, in, B, Ci, Co, H, W, alpha, scratch);
}
