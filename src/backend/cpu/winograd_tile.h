// winograd_tile.h: the body of Winograd's F(m x m, 3x3) for one tile size,
// included by winograd.c once per m with WG_M, WG_A = WG_M + 2, the tables
// WG_FN(BT) (a, a), WG_FN(G) (a, 3), WG_FN(AT) (m, a), and WG_FN(name)
// giving each function its per-size name. Compile-time sizes let the
// compiler unroll the transforms and vectorise them over the tiles.

// U (E, Co, Ci) = G g G^T for every 3x3 filter g of w (Co, Ci, 3, 3).
static void WG_FN(transform_weights)(float *U, const float *w, int Co, int Ci) {
    enum { A = WG_A, NB = 64 }; // filters per block: one block's U rows stream out whole
    const int64_t plane = (int64_t)Co * Ci, nblk = (plane + NB - 1) / NB;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t q0 = blk * NB, nq = DALLE_MIN((int64_t)NB, plane - q0);
        float u[A * A][NB]; // this block's U, element-major
        for (int64_t k = 0; k < nq; k++) {
            const float *g = w + (q0 + k) * 9;
            float t[A][3]; // G g
            for (int i = 0; i < A; i++)
                for (int j = 0; j < 3; j++)
                    t[i][j] = WG_FN(G)[i][0] * g[j] + WG_FN(G)[i][1] * g[3 + j] + WG_FN(G)[i][2] * g[6 + j];
            for (int i = 0; i < A; i++) // (G g) G^T
                for (int j = 0; j < A; j++)
                    u[i * A + j][k] = t[i][0] * WG_FN(G)[j][0] + t[i][1] * WG_FN(G)[j][1] + t[i][2] * WG_FN(G)[j][2];
        }
        for (int e = 0; e < A * A; e++) memcpy(U + e * plane + q0, u[e], sizeof(float) * (size_t)nq);
    }
}

// V (E, Ci, Tc) = B^T d B for the tiles of tile rows [R0, R0+nr) of the batch
// x (B, Ci, H, W), whose rows of tiles are numbered across images (TH each).
// Row-wise so that the inner loops run over contiguous columns and vectorise:
// the a input rows of a tile row (zero-padded) give B^T d for every column
// at once, then tile tx takes its a columns m*tx .. m*tx+a-1 of that.
static void WG_FN(transform_input)(float *V, const float *x, int Ci, int H, int W, int TH, int64_t R0, int nr) {
    const int m = WG_M, A = WG_A;
    const int TW = (W + m - 1) / m, WP = m * TW + 2; // column c of x at c + 1
    const int64_t Tc = (int64_t)nr * TW, plane = (int64_t)Ci * Tc;
    DALLE_ASSERT(W <= 4096);
#pragma omp parallel for collapse(2) schedule(static)
    for (int ci = 0; ci < Ci; ci++)
        for (int r = 0; r < nr; r++) {
            float d[WG_A][WP], t[WG_A][WP];
            const int64_t img = (R0 + r) / TH;
            const int tr = (int)((R0 + r) % TH);
            const float *xc = x + (img * Ci + ci) * H * W;
            for (int i = 0; i < A; i++) {
                const int y = m * tr - 1 + i;
                memset(d[i], 0, sizeof(float) * WP);
                if (y >= 0 && y < H) memcpy(d[i] + 1, xc + (int64_t)y * W, sizeof(float) * W);
            }
            for (int i = 0; i < A; i++)
                for (int c = 0; c < WP; c++) {
                    float s = 0;
                    for (int k = 0; k < A; k++) s += WG_FN(BT)[i][k] * d[k][c];
                    t[i][c] = s;
                }
            float *v = V + (int64_t)ci * Tc + (int64_t)r * TW;
            for (int i = 0; i < A; i++)
                for (int j = 0; j < A; j++) {
                    float *vij = v + (i * A + j) * plane;
                    const float *ti = t[i];
                    for (int tx = 0; tx < TW; tx++) {
                        float s = 0;
                        for (int k = 0; k < A; k++) s += WG_FN(BT)[j][k] * ti[m * tx + k];
                        vij[tx] = s;
                    }
                }
        }
}

// The output rows of tile rows [R0, R0+nr) of out (B, Co, H, W) =
// alpha*(A^T M A + b) + beta*out; beta = 0 overwrites. Row-wise like the input.
static void WG_FN(transform_output)(float *out, const float *M, const float *b, int Co, int H, int W,
                                    int TH, int64_t R0, int nr, float alpha, float beta) {
    const int m = WG_M, A = WG_A;
    const int TW = (W + m - 1) / m;
    const int64_t Tc = (int64_t)nr * TW, plane = (int64_t)Co * Tc;
#pragma omp parallel for collapse(2) schedule(static)
    for (int co = 0; co < Co; co++)
        for (int r = 0; r < nr; r++) {
            float t[WG_M][WG_A][TW], y[WG_M][WG_M * TW];
            const float *mc = M + (int64_t)co * Tc + (int64_t)r * TW;
            for (int i = 0; i < m; i++) // A^T M, one tile column j at a time
                for (int j = 0; j < A; j++)
                    for (int tx = 0; tx < TW; tx++) {
                        float s = 0;
                        for (int k = 0; k < A; k++) s += WG_FN(AT)[i][k] * mc[(k * A + j) * plane + tx];
                        t[i][j][tx] = s;
                    }
            const float bias = b ? b[co] : 0.0f;
            for (int i = 0; i < m; i++) // (A^T M) A, plus the bias, times alpha
                for (int q = 0; q < m; q++)
                    for (int tx = 0; tx < TW; tx++) {
                        float s = bias;
                        for (int k = 0; k < A; k++) s += WG_FN(AT)[q][k] * t[i][k][tx];
                        y[i][m * tx + q] = alpha * s;
                    }
            const int64_t img = (R0 + r) / TH;
            const int tr = (int)((R0 + r) % TH);
            float *oc = out + (img * Co + co) * H * W;
            for (int i = 0; i < m; i++) {
                const int yy = m * tr + i;
                if (yy >= H) break;
                float *o = oc + (int64_t)yy * W;
                if (beta == 0.0f) memcpy(o, y[i], sizeof(float) * W);
                else
                    for (int c = 0; c < W; c++) o[c] = y[i][c] + beta * o[c];
            }
        }
}

static void WG_FN(forward)(float *out, const float *in, const float *w, const float *b, int B, int Ci, int Co,
                           int H, int W, float alpha, float beta, float *scratch) {
    const int m = WG_M, E = WG_A * WG_A, TW = (W + m - 1) / m, TH = (H + m - 1) / m;
    const int rows = winograd_chunk_tile_rows(Ci, Co, H, W, m);
    float *U = scratch;                          // (E, Co, Ci)
    float *V = U + (int64_t)E * Co * Ci;         // (E, Ci, Tc)
    float *M = V + (int64_t)E * Ci * TW * rows;  // (E, Co, Tc)
    WG_FN(transform_weights)(U, w, Co, Ci);
    // chunks of tile rows run across image boundaries: small images batch up
    // into GEMMs of at least 256 tiles
    const int64_t RT = (int64_t)B * TH;
    for (int64_t R0 = 0; R0 < RT; R0 += rows) {
        const int nr = (int)DALLE_MIN((int64_t)rows, RT - R0), Tc = nr * TW;
        WG_FN(transform_input)(V, in, Ci, H, W, TH, R0, nr);
        for (int e = 0; e < E; e++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, Tc, Ci, 1.0f, U + (int64_t)e * Co * Ci, Ci,
                        V + (int64_t)e * Ci * Tc, Tc, 0.0f, M + (int64_t)e * Co * Tc, Tc);
        WG_FN(transform_output)(out, M, b, Co, H, W, TH, R0, nr, alpha, beta);
    }
}

// dM (E, Co, Tc) = A dY A^T for the output-gradient tiles of tile rows
// [R0, R0+nr) of dout (B, Co, H, W), zero beyond the image (A = AT^T).
static void WG_FN(transform_dout)(float *dM, const float *dout, int Co, int H, int W, int TH, int64_t R0,
                                  int nr) {
    const int m = WG_M, A = WG_A;
    const int TW = (W + m - 1) / m, WP = m * TW;
    const int64_t Tc = (int64_t)nr * TW, plane = (int64_t)Co * Tc;
#pragma omp parallel for collapse(2) schedule(static)
    for (int co = 0; co < Co; co++)
        for (int r = 0; r < nr; r++) {
            float dy[WG_M][WP], s[WG_A][WP];
            const int64_t img = (R0 + r) / TH;
            const int tr = (int)((R0 + r) % TH);
            const float *gc = dout + (img * Co + co) * H * W;
            for (int p = 0; p < m; p++) {
                const int y = m * tr + p;
                memset(dy[p], 0, sizeof(float) * WP);
                if (y < H) memcpy(dy[p], gc + (int64_t)y * W, sizeof(float) * W);
            }
            for (int i = 0; i < A; i++) // A dY, all columns at once
                for (int c = 0; c < WP; c++) {
                    float acc = 0;
                    for (int p = 0; p < m; p++) acc += WG_FN(AT)[p][i] * dy[p][c];
                    s[i][c] = acc;
                }
            float *d = dM + (int64_t)co * Tc + (int64_t)r * TW;
            for (int i = 0; i < A; i++) // (A dY) A^T, tile by tile
                for (int j = 0; j < A; j++) {
                    float *dij = d + (i * A + j) * plane;
                    for (int tx = 0; tx < TW; tx++) {
                        float acc = 0;
                        for (int q = 0; q < m; q++) acc += WG_FN(AT)[q][j] * s[i][m * tx + q];
                        dij[tx] = acc;
                    }
                }
        }
}

// dw (Co, Ci, 3, 3) += alpha * the weight gradient of the forward above:
// dU_e = sum over tiles of dM_e V_e^T (E GEMMs, deep in tiles), then
// dw = G^T dU G per filter.
static void WG_FN(backward_filter)(float *dw, const float *dout, const float *in, int B, int Ci, int Co, int H,
                                   int W, float alpha, float *scratch) {
    const int m = WG_M, A = WG_A, E = WG_A * WG_A, TW = (W + m - 1) / m, TH = (H + m - 1) / m;
    const int rows = winograd_chunk_tile_rows(Ci, Co, H, W, m);
    const int64_t plane = (int64_t)Co * Ci;
    float *dU = scratch;                         // (E, Co, Ci)
    float *V = dU + (int64_t)E * Co * Ci;        // (E, Ci, Tc)
    float *dM = V + (int64_t)E * Ci * TW * rows; // (E, Co, Tc)
    memset(dU, 0, sizeof(float) * (size_t)(E * plane));
    const int64_t RT = (int64_t)B * TH;
    for (int64_t R0 = 0; R0 < RT; R0 += rows) {
        const int nr = (int)DALLE_MIN((int64_t)rows, RT - R0), Tc = nr * TW;
        WG_FN(transform_input)(V, in, Ci, H, W, TH, R0, nr);
        WG_FN(transform_dout)(dM, dout, Co, H, W, TH, R0, nr);
        for (int e = 0; e < E; e++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, Ci, Tc, 1.0f, dM + (int64_t)e * Co * Tc, Tc,
                        V + (int64_t)e * Ci * Tc, Tc, 1.0f, dU + (int64_t)e * plane, Ci);
    }
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < plane; q++) {
        float t[WG_A][3]; // dU G, then G^T (dU G)
        for (int i = 0; i < A; i++)
            for (int c = 0; c < 3; c++) {
                float acc = 0;
                for (int j = 0; j < A; j++) acc += dU[(i * A + j) * plane + q] * WG_FN(G)[j][c];
                t[i][c] = acc;
            }
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) {
                float acc = 0;
                for (int i = 0; i < A; i++) acc += WG_FN(G)[i][r] * t[i][c];
                dw[q * 9 + r * 3 + c] += alpha * acc;
            }
    }
}
