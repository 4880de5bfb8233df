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
// Blocks of WG_TB tiles of one channel at a time: each tile's a x a inputs
// are gathered from the a rows of its row of tiles (copied, zero-padded, once
// per row), then the products run over tiles and write contiguous runs of
// the E planes of V.
static void WG_FN(transform_input)(float *V, const float *x, int Ci, int H, int W, int TH, int64_t R0, int nr) {
    enum { m = WG_M, A = WG_A };
    const int TW = (W + m - 1) / m, Tc = nr * TW, nb = (Tc + WG_TB - 1) / WG_TB, WP = m * TW + 2;
    const int64_t plane = (int64_t)Ci * Tc;
    DALLE_ASSERT(W <= 4096);
#pragma omp parallel for collapse(2) schedule(static)
    for (int ci = 0; ci < Ci; ci++)
        for (int blk = 0; blk < nb; blk++) {
            const int t0 = blk * WG_TB, nt = DALLE_MIN(WG_TB, Tc - t0);
            float d[A][A][WG_TB], t[A][A][WG_TB];
            float rows[A][WP]; // the a input rows of the current row of tiles, zero-padded
            int64_t img, have = -1; // have: the row of tiles (R0-relative) that rows holds
            int tr;
            for (int u = 0; u < nt; u++) {
                const int tx = wg_tile(R0, t0 + u, TW, TH, &img, &tr);
                if ((t0 + u) / TW != have) {
                    const int y0 = m * tr - 1;
                    const float *xc = x + (img * Ci + ci) * H * W;
                    for (int i = 0; i < A; i++) {
                        memset(rows[i], 0, sizeof(float) * WP);
                        if (y0 + i >= 0 && y0 + i < H) memcpy(rows[i] + 1, xc + (int64_t)(y0 + i) * W, sizeof(float) * W);
                    }
                    have = (t0 + u) / TW;
                }
                for (int i = 0; i < A; i++)
                    for (int j = 0; j < A; j++) d[i][j][u] = rows[i][m * tx + j];
            }
            for (int i = 0; i < A; i++) // B^T d
                for (int j = 0; j < A; j++) {
                    float *ti = t[i][j];
                    for (int u = 0; u < nt; u++) {
                        float acc = 0;
                        for (int k = 0; k < A; k++) acc += WG_FN(BT)[i][k] * d[k][j][u];
                        ti[u] = acc;
                    }
                }
            float *v = V + (int64_t)ci * Tc + t0;
            for (int i = 0; i < A; i++) // (B^T d) B
                for (int j = 0; j < A; j++) {
                    float *vij = v + (i * A + j) * plane;
                    for (int u = 0; u < nt; u++) {
                        float acc = 0;
                        for (int k = 0; k < A; k++) acc += WG_FN(BT)[j][k] * t[i][k][u];
                        vij[u] = acc;
                    }
                }
        }
}

// The output rows of tile rows [R0, R0+nr) of out (B, Co, H, W) =
// alpha*(A^T M A + b) + beta*out; beta = 0 overwrites. Blocks of WG_TB
// tiles of one channel at a time, the tile index innermost: every product
// is a vector over tiles, read from contiguous runs of the E planes of M
// (a tile row alone is too short a run on small images), then the m x m
// outputs of each tile go to their place.
static void WG_FN(transform_output)(float *out, const float *M, const float *b, int Co, int H, int W,
                                    int TH, int64_t R0, int nr, float alpha, float beta) {
    enum { m = WG_M, A = WG_A };
    const int TW = (W + m - 1) / m, Tc = nr * TW, nb = (Tc + WG_TB - 1) / WG_TB;
    const int64_t plane = (int64_t)Co * Tc;
#pragma omp parallel for collapse(2) schedule(static)
    for (int co = 0; co < Co; co++)
        for (int blk = 0; blk < nb; blk++) {
            const int t0 = blk * WG_TB, nt = DALLE_MIN(WG_TB, Tc - t0);
            float t[m][A][WG_TB], y[m][m][WG_TB];
            const float *mc = M + (int64_t)co * Tc + t0;
            for (int i = 0; i < m; i++) // A^T M
                for (int j = 0; j < A; j++) {
                    float *ti = t[i][j];
                    for (int u = 0; u < nt; u++) {
                        float acc = 0;
                        for (int k = 0; k < A; k++) acc += WG_FN(AT)[i][k] * mc[(k * A + j) * plane + u];
                        ti[u] = acc;
                    }
                }
            const float bias = b ? b[co] : 0.0f;
            for (int i = 0; i < m; i++) // (A^T M) A, plus the bias, times alpha
                for (int q = 0; q < m; q++) {
                    float *yi = y[i][q];
                    for (int u = 0; u < nt; u++) {
                        float acc = bias;
                        for (int k = 0; k < A; k++) acc += WG_FN(AT)[q][k] * t[i][k][u];
                        yi[u] = alpha * acc;
                    }
                }
            for (int u = 0; u < nt; u++) { // each tile's m x m outputs, clipped at the image's edge
                int64_t img;
                int tr;
                const int x0 = m * wg_tile(R0, t0 + u, TW, TH, &img, &tr), nq = DALLE_MIN(m, W - x0);
                float *oc = out + (img * Co + co) * H * W + x0;
                for (int i = 0; i < m && m * tr + i < H; i++) {
                    float *o = oc + (int64_t)(m * tr + i) * W;
                    if (beta == 0.0f)
                        for (int q = 0; q < nq; q++) o[q] = y[i][q][u];
                    else
                        for (int q = 0; q < nq; q++) o[q] = y[i][q][u] + beta * o[q];
                }
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
#pragma omp parallel for schedule(dynamic)
        for (int e = 0; e < E; e++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, Tc, Ci, 1.0f, U + (int64_t)e * Co * Ci, Ci,
                        V + (int64_t)e * Ci * Tc, Tc, 0.0f, M + (int64_t)e * Co * Tc, Tc);
        WG_FN(transform_output)(out, M, b, Co, H, W, TH, R0, nr, alpha, beta);
    }
}

// dM (E, Co, Tc) = A dY A^T for the output-gradient tiles of tile rows
// [R0, R0+nr) of dout (B, Co, H, W), zero beyond the image (A = AT^T).
// Blocks of WG_TB tiles of one channel, as the output transform: each
// tile's m x m gradients are gathered, then the products run over tiles
// and write contiguous runs of the E planes.
static void WG_FN(transform_dout)(float *dM, const float *dout, int Co, int H, int W, int TH, int64_t R0,
                                  int nr) {
    enum { m = WG_M, A = WG_A };
    const int TW = (W + m - 1) / m, Tc = nr * TW, nb = (Tc + WG_TB - 1) / WG_TB;
    const int64_t plane = (int64_t)Co * Tc;
#pragma omp parallel for collapse(2) schedule(static)
    for (int co = 0; co < Co; co++)
        for (int blk = 0; blk < nb; blk++) {
            const int t0 = blk * WG_TB, nt = DALLE_MIN(WG_TB, Tc - t0);
            float dy[m][m][WG_TB], s[A][m][WG_TB];
            for (int u = 0; u < nt; u++) {
                int64_t img;
                int tr;
                const int x0 = m * wg_tile(R0, t0 + u, TW, TH, &img, &tr);
                const float *gc = dout + (img * Co + co) * H * W + x0;
                for (int p = 0; p < m; p++)
                    for (int q = 0; q < m; q++)
                        dy[p][q][u] = m * tr + p < H && x0 + q < W ? gc[(int64_t)(m * tr + p) * W + q] : 0.0f;
            }
            for (int i = 0; i < A; i++) // A dY
                for (int q = 0; q < m; q++) {
                    float *si = s[i][q];
                    for (int u = 0; u < nt; u++) {
                        float acc = 0;
                        for (int p = 0; p < m; p++) acc += WG_FN(AT)[p][i] * dy[p][q][u];
                        si[u] = acc;
                    }
                }
            float *d = dM + (int64_t)co * Tc + t0;
            for (int i = 0; i < A; i++) // (A dY) A^T
                for (int j = 0; j < A; j++) {
                    float *dij = d + (i * A + j) * plane;
                    for (int u = 0; u < nt; u++) {
                        float acc = 0;
                        for (int q = 0; q < m; q++) acc += WG_FN(AT)[q][j] * s[i][q][u];
                        dij[u] = acc;
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
#pragma omp parallel for schedule(dynamic)
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
