// winograd_tile.h: the body of Winograd's F(m x m, 3x3) for one tile size,
// included by winograd.c once per m with WG_M, WG_A = WG_M + 2, the tables
// WG_FN(BT) (a, a), WG_FN(G) (a, 3), WG_FN(AT) (m, a), and WG_FN(name)
// giving each function its per-size name. Compile-time sizes let the
// compiler unroll the transforms and vectorise them over the tiles.
//
// Tiles are numbered across the images of the batch, row of tiles by row
// (TW per row, TH rows per image). The transforms work on blocks of at most
// WG_TB tiles of one channel, the tile index innermost: every product is a
// vector over tiles. A block's E values of a channel go to (or come from)
// runs of nt floats `plane` apart: the planes of V, M or dM.

// U (E, Co, Ci) = G g G^T for every 3x3 filter g of w (Co, Ci, 3, 3), in
// blocks of NB filters, the filter index innermost.
static void WG_FN(transform_weights)(float *U, const float *w, int Co, int Ci) {
    enum { A = WG_A, NB = 64 }; // filters per block: one block's U rows stream out whole
    const int64_t plane = (int64_t)Co * Ci, nblk = (plane + NB - 1) / NB;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t q0 = blk * NB;
        const int nq = (int)DALLE_MIN((int64_t)NB, plane - q0);
        float g[9][NB], t[A][3][NB], u[A * A][NB]; // the filters, G g, (G g) G^T
        for (int k = 0; k < nq; k++)
            for (int r = 0; r < 9; r++) g[r][k] = w[(q0 + k) * 9 + r];
#pragma GCC unroll 8
        for (int i = 0; i < A; i++)
#pragma GCC unroll 3
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < nq; k++) {
                    float acc = 0;
                    for (int r = 0; r < 3; r++) WG_MAC(acc, WG_FN(G)[i][r], g[3 * r + j][k]);
                    t[i][j][k] = acc;
                }
#pragma GCC unroll 8
        for (int i = 0; i < A; i++)
#pragma GCC unroll 8
            for (int j = 0; j < A; j++)
                for (int k = 0; k < nq; k++) {
                    float acc = 0;
                    for (int c = 0; c < 3; c++) WG_MAC(acc, WG_FN(G)[j][c], t[i][c][k]);
                    u[i * A + j][k] = acc;
                }
        for (int e = 0; e < A * A; e++) memcpy(U + e * plane + q0, u[e], sizeof(float) * (size_t)nq);
    }
}

// dw (Co, Ci, 3, 3) += alpha * G^T dU G for every filter of dU (E, Co, Ci),
// in blocks of NB filters, the filter index innermost.
static void WG_FN(transform_dweights)(float *dw, const float *dU, int Co, int Ci, float alpha) {
    enum { A = WG_A, NB = 64 };
    const int64_t plane = (int64_t)Co * Ci, nblk = (plane + NB - 1) / NB;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t q0 = blk * NB;
        const int nq = (int)DALLE_MIN((int64_t)NB, plane - q0);
        float t[A][3][NB], o[9][NB]; // dU G, then G^T (dU G)
#pragma GCC unroll 8
        for (int i = 0; i < A; i++)
#pragma GCC unroll 3
            for (int c = 0; c < 3; c++)
                for (int k = 0; k < nq; k++) {
                    float acc = 0;
                    for (int j = 0; j < A; j++) WG_MAC(acc, WG_FN(G)[j][c], dU[(i * A + j) * plane + q0 + k]);
                    t[i][c][k] = acc;
                }
#pragma GCC unroll 3
        for (int r = 0; r < 3; r++)
#pragma GCC unroll 3
            for (int c = 0; c < 3; c++)
                for (int k = 0; k < nq; k++) {
                    float acc = 0;
                    for (int i = 0; i < A; i++) WG_MAC(acc, WG_FN(G)[i][r], t[i][c][k]);
                    o[3 * r + c][k] = alpha * acc;
                }
        for (int k = 0; k < nq; k++)
            for (int r = 0; r < 9; r++) dw[(q0 + k) * 9 + r] += o[r][k];
    }
}

// v = B^T d B for tiles [t0, t0+nt) of channel ci of x (B, Ci, H, W), into
// runs `plane` apart. The tiles' a x a inputs are gathered, a run of tiles
// in one row of tiles at a time, from the a rows of that row of tiles
// (copied, zero-padded, once per run).
static void WG_FN(input_block)(float *v, int64_t plane, const float *x, int ci, int Ci, int H, int W, int TH,
                               int t0, int nt) {
    enum { m = WG_M, A = WG_A };
    const int TW = (W + m - 1) / m, WP = m * TW + 2;
    float d[A][A][WG_TB], t[A][A][WG_TB];
    float rows[A][WP]; // the a input rows of the current row of tiles, zero-padded
    wg_pos p = wg_tile(t0, TW, TH);
    for (int u = 0; u < nt;) {
        const int n = DALLE_MIN(nt - u, TW - p.tx); // the block's tiles in this row of tiles
        const int y0 = m * p.tr - 1;
        const float *xc = x + (p.img * Ci + ci) * H * W;
        for (int i = 0; i < A; i++) {
            memset(rows[i], 0, sizeof(float) * WP);
            if (y0 + i >= 0 && y0 + i < H) memcpy(rows[i] + 1, xc + (int64_t)(y0 + i) * W, sizeof(float) * W);
        }
        // tile c of the run reads columns m c .. m c + a - 1 of the rows: its
        // first m by de-interleaving the run's columns, its last a - m (= 2)
        // as the next tile's first ones
        for (int i = 0; i < A; i++) {
            const float *seg = rows[i] + m * p.tx;
            for (int c = 0; c < n; c++)
                for (int k = 0; k < m; k++) d[i][k][u + c] = seg[m * c + k];
            for (int k = 0; k < A - m; k++) {
                for (int c = 0; c + 1 < n; c++) d[i][m + k][u + c] = d[i][k][u + c + 1];
                d[i][m + k][u + n - 1] = seg[m * n + k];
            }
        }
        u += n;
        wg_advance(&p, n, TW, TH);
    }
#pragma GCC unroll 8
    for (int i = 0; i < A; i++) // B^T d
#pragma GCC unroll 8
        for (int j = 0; j < A; j++) {
            float *ti = t[i][j];
            for (int u = 0; u < nt; u++) {
                float acc = 0;
                for (int k = 0; k < A; k++) WG_MAC(acc, WG_FN(BT)[i][k], d[k][j][u]);
                ti[u] = acc;
            }
        }
#pragma GCC unroll 8
    for (int i = 0; i < A; i++) // (B^T d) B
#pragma GCC unroll 8
        for (int j = 0; j < A; j++) {
            float *vij = v + (i * A + j) * plane;
            for (int u = 0; u < nt; u++) {
                float acc = 0;
                for (int k = 0; k < A; k++) WG_MAC(acc, WG_FN(BT)[j][k], t[i][k][u]);
                vij[u] = acc;
            }
        }
}

// The outputs of tiles [t0, t0+nt) of channel co of out (B, Co, H, W) =
// alpha*(A^T M A + bias) + beta*out (beta = 0 overwrites), from the runs of
// mc `plane` apart; each tile's m x m outputs are clipped at the image's edge.
static void WG_FN(output_block)(float *out, const float *mc, int64_t plane, float bias, int co, int Co, int H,
                                int W, int TH, int t0, int nt, float alpha, float beta) {
    enum { m = WG_M, A = WG_A };
    const int TW = (W + m - 1) / m;
    float t[m][A][WG_TB], y[m][m][WG_TB];
#pragma GCC unroll 8
    for (int i = 0; i < m; i++) // A^T M
#pragma GCC unroll 8
        for (int j = 0; j < A; j++) {
            float *ti = t[i][j];
            for (int u = 0; u < nt; u++) {
                float acc = 0;
                for (int k = 0; k < A; k++) WG_MAC(acc, WG_FN(AT)[i][k], mc[(k * A + j) * plane + u]);
                ti[u] = acc;
            }
        }
#pragma GCC unroll 8
    for (int i = 0; i < m; i++) // (A^T M) A, plus the bias, times alpha
#pragma GCC unroll 8
        for (int q = 0; q < m; q++) {
            float *yi = y[i][q];
            for (int u = 0; u < nt; u++) {
                float acc = bias;
                for (int k = 0; k < A; k++) WG_MAC(acc, WG_FN(AT)[q][k], t[i][k][u]);
                yi[u] = alpha * acc;
            }
        }
    float yr[m][m * WG_TB]; // y interleaved: row i of tile u at yr[i][m u ..]
    for (int i = 0; i < m; i++)
        for (int u = 0; u < nt; u++)
            for (int q = 0; q < m; q++) yr[i][m * u + q] = y[i][q][u];
    // a run of tiles in one row of tiles writes each of its m rows in one
    // piece, clipped at the image's edge
    wg_pos p = wg_tile(t0, TW, TH);
    for (int u = 0; u < nt;) {
        const int n = DALLE_MIN(nt - u, TW - p.tx), x0 = m * p.tx, nx = DALLE_MIN(m * n, W - x0);
        float *oc = out + (p.img * Co + co) * H * W + x0;
        for (int i = 0; i < m && m * p.tr + i < H; i++) {
            float *o = oc + (int64_t)(m * p.tr + i) * W;
            const float *src = yr[i] + m * u;
            if (beta == 0.0f)
                for (int x = 0; x < nx; x++) o[x] = src[x];
            else
                for (int x = 0; x < nx; x++) o[x] = src[x] + beta * o[x];
        }
        u += n;
        wg_advance(&p, n, TW, TH);
    }
}

// dm = A dY A^T for the output-gradient tiles [t0, t0+nt) of channel co of
// dout (B, Co, H, W), zero beyond the image (A = AT^T), into runs `plane`
// apart.
static void WG_FN(dout_block)(float *dm, int64_t plane, const float *dout, int co, int Co, int H, int W, int TH,
                              int t0, int nt) {
    enum { m = WG_M, A = WG_A };
    const int TW = (W + m - 1) / m;
    float dy[m][m][WG_TB], s[A][m][WG_TB];
    float seg[m * WG_TB]; // one row of a run of tiles, zero beyond the image
    wg_pos t = wg_tile(t0, TW, TH);
    for (int u = 0; u < nt;) { // a run of tiles in one row of tiles, row by row de-interleaved
        const int n = DALLE_MIN(nt - u, TW - t.tx), x0 = m * t.tx, nx = DALLE_MIN(m * n, W - x0);
        const float *gc = dout + (t.img * Co + co) * H * W + x0;
        for (int p = 0; p < m; p++) {
            const int in = m * t.tr + p < H;
            if (in) memcpy(seg, gc + (int64_t)(m * t.tr + p) * W, sizeof(float) * (size_t)nx);
            for (int x = in ? nx : 0; x < m * n; x++) seg[x] = 0.0f;
            for (int c = 0; c < n; c++)
                for (int q = 0; q < m; q++) dy[p][q][u + c] = seg[m * c + q];
        }
        u += n;
        wg_advance(&t, n, TW, TH);
    }
#pragma GCC unroll 8
    for (int i = 0; i < A; i++) // A dY
#pragma GCC unroll 8
        for (int q = 0; q < m; q++) {
            float *si = s[i][q];
            for (int u = 0; u < nt; u++) {
                float acc = 0;
                for (int p = 0; p < m; p++) WG_MAC(acc, WG_FN(AT)[p][i], dy[p][q][u]);
                si[u] = acc;
            }
        }
#pragma GCC unroll 8
    for (int i = 0; i < A; i++) // (A dY) A^T
#pragma GCC unroll 8
        for (int j = 0; j < A; j++) {
            float *dij = dm + (i * A + j) * plane;
            for (int u = 0; u < nt; u++) {
                float acc = 0;
                for (int q = 0; q < m; q++) WG_MAC(acc, WG_FN(AT)[q][j], s[i][q][u]);
                dij[u] = acc;
            }
        }
}

// V (E, C, Tc) of the Tc tiles from tc0 of x (B, C, H, W), blocks on the threads.
static void WG_FN(transform_input)(float *V, const float *x, int C, int H, int W, int TH, int tc0, int Tc) {
    const int nb = (Tc + WG_TB - 1) / WG_TB;
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < C; c++)
        for (int blk = 0; blk < nb; blk++) {
            const int t0 = blk * WG_TB;
            WG_FN(input_block)(V + (int64_t)c * Tc + t0, (int64_t)C * Tc, x, c, C, H, W, TH, tc0 + t0,
                               DALLE_MIN(WG_TB, Tc - t0));
        }
}

// dM (E, C, Tc) of the Tc output-gradient tiles from tc0 of dout (B, C, H, W).
static void WG_FN(transform_dout)(float *dM, const float *dout, int C, int H, int W, int TH, int tc0, int Tc) {
    const int nb = (Tc + WG_TB - 1) / WG_TB;
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < C; c++)
        for (int blk = 0; blk < nb; blk++) {
            const int t0 = blk * WG_TB;
            WG_FN(dout_block)(dM + (int64_t)c * Tc + t0, (int64_t)C * Tc, dout, c, C, H, W, TH, tc0 + t0,
                              DALLE_MIN(WG_TB, Tc - t0));
        }
}

// The outputs of the Tc tiles from tc0 of out (B, Co, H, W), from M (E, Co, Tc).
static void WG_FN(transform_output)(float *out, const float *M, const float *b, int Co, int H, int W, int TH,
                                    int tc0, int Tc, float alpha, float beta) {
    const int nb = (Tc + WG_TB - 1) / WG_TB;
#pragma omp parallel for collapse(2) schedule(static)
    for (int co = 0; co < Co; co++)
        for (int blk = 0; blk < nb; blk++) {
            const int t0 = blk * WG_TB;
            WG_FN(output_block)(out, M + (int64_t)co * Tc + t0, (int64_t)Co * Tc, b ? b[co] : 0.0f, co, Co, H, W,
                                TH, tc0 + t0, DALLE_MIN(WG_TB, Tc - t0), alpha, beta);
        }
}

static void WG_FN(forward)(float *out, const float *in, const float *w, const float *b, int B, int Ci, int Co,
                           int H, int W, float alpha, float beta, float *scratch) {
    const int m = WG_M, E = WG_A * WG_A, TW = (W + m - 1) / m, TH = (H + m - 1) / m, T = B * TH * TW;
    float *U = scratch; // (E, Co, Ci)
    WG_FN(transform_weights)(U, w, Co, Ci);
    if (winograd_fused(Ci, Co)) {
        // each thread runs its blocks of WG_TB tiles through all three steps,
        // with its V (E, Ci, nt) and M (E, Co, nt) in its own cache
        const int nb = (T + WG_TB - 1) / WG_TB;
#pragma omp parallel num_threads(wg_team())
        {
            float *V = U + (int64_t)E * Co * Ci + (int64_t)omp_get_thread_num() * E * (Ci + Co) * WG_TB;
            float *M = V + (int64_t)E * Ci * WG_TB;
#pragma omp for schedule(static)
            for (int blk = 0; blk < nb; blk++) {
                const int t0 = blk * WG_TB, nt = DALLE_MIN(WG_TB, T - t0);
                for (int ci = 0; ci < Ci; ci++)
                    WG_FN(input_block)(V + (int64_t)ci * nt, (int64_t)Ci * nt, in, ci, Ci, H, W, TH, t0, nt);
                for (int e = 0; e < E; e++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, nt, Ci, 1.0f, U + (int64_t)e * Co * Ci,
                                Ci, V + (int64_t)e * Ci * nt, nt, 0.0f, M + (int64_t)e * Co * nt, nt);
                for (int co = 0; co < Co; co++)
                    WG_FN(output_block)(out, M + (int64_t)co * nt, (int64_t)Co * nt, b ? b[co] : 0.0f, co, Co, H, W,
                                        TH, t0, nt, alpha, beta);
            }
        }
        return;
    }
    // chunks of rows of tiles run across image boundaries: small images batch
    // up into GEMMs of at least 256 tiles
    const int Tc_max = TW * winograd_chunk_tile_rows(Ci, Co, H, W, m);
    float *V = U + (int64_t)E * Co * Ci;   // (E, Ci, Tc)
    float *M = V + (int64_t)E * Ci * Tc_max; // (E, Co, Tc)
    for (int tc0 = 0; tc0 < T; tc0 += Tc_max) {
        const int Tc = DALLE_MIN(Tc_max, T - tc0);
        WG_FN(transform_input)(V, in, Ci, H, W, TH, tc0, Tc);
#pragma omp parallel for schedule(dynamic)
        for (int e = 0; e < E; e++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, Tc, Ci, 1.0f, U + (int64_t)e * Co * Ci, Ci,
                        V + (int64_t)e * Ci * Tc, Tc, 0.0f, M + (int64_t)e * Co * Tc, Tc);
        WG_FN(transform_output)(out, M, b, Co, H, W, TH, tc0, Tc, alpha, beta);
    }
}

// dw (Co, Ci, 3, 3) += alpha * the weight gradient of the forward above:
// dU_e = sum over tiles of dM_e V_e^T (E GEMMs, deep in tiles), then
// dw = G^T dU G per filter.
static void WG_FN(backward_filter)(float *dw, const float *dout, const float *in, int B, int Ci, int Co, int H,
                                   int W, float alpha, float *scratch) {
    const int m = WG_M, E = WG_A * WG_A, TW = (W + m - 1) / m, TH = (H + m - 1) / m, T = B * TH * TW;
    const int64_t plane = (int64_t)Co * Ci;
    float *dU = scratch; // (E, Co, Ci)
    if (winograd_fused(Ci, Co)) {
        // each thread sums its blocks' products into a dU of its own (the
        // first thread's is dU), then the threads' dU are added in order
        const int nb = (T + WG_TB - 1) / WG_TB, nth = wg_slots(); // the team has at most nth threads
        float *part = dU + E * plane; // (nth - 1, E, Co, Ci)
#pragma omp parallel num_threads(wg_team())
        {
            const int th = omp_get_thread_num(), team = omp_get_num_threads();
            float *dUt = th ? part + (th - 1) * E * plane : dU;
            float *V = part + (nth - 1) * E * plane + (int64_t)th * E * (Ci + Co) * WG_TB;
            float *dM = V + (int64_t)E * Ci * WG_TB;
            memset(dUt, 0, sizeof(float) * (size_t)(E * plane));
#pragma omp for schedule(static)
            for (int blk = 0; blk < nb; blk++) {
                const int t0 = blk * WG_TB, nt = DALLE_MIN(WG_TB, T - t0);
                for (int ci = 0; ci < Ci; ci++)
                    WG_FN(input_block)(V + (int64_t)ci * nt, (int64_t)Ci * nt, in, ci, Ci, H, W, TH, t0, nt);
                for (int co = 0; co < Co; co++)
                    WG_FN(dout_block)(dM + (int64_t)co * nt, (int64_t)Co * nt, dout, co, Co, H, W, TH, t0, nt);
                for (int e = 0; e < E; e++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, Ci, nt, 1.0f, dM + (int64_t)e * Co * nt,
                                nt, V + (int64_t)e * Ci * nt, nt, 1.0f, dUt + (int64_t)e * plane, Ci);
            }
#pragma omp for schedule(static)
            for (int64_t q = 0; q < E * plane; q++)
                for (int k = 0; k < team - 1; k++) dU[q] += part[k * E * plane + q];
        }
    } else {
        const int Tc_max = TW * winograd_chunk_tile_rows(Ci, Co, H, W, m);
        float *V = dU + E * plane;               // (E, Ci, Tc)
        float *dM = V + (int64_t)E * Ci * Tc_max; // (E, Co, Tc)
        memset(dU, 0, sizeof(float) * (size_t)(E * plane));
        for (int tc0 = 0; tc0 < T; tc0 += Tc_max) {
            const int Tc = DALLE_MIN(Tc_max, T - tc0);
            WG_FN(transform_input)(V, in, Ci, H, W, TH, tc0, Tc);
            WG_FN(transform_dout)(dM, dout, Co, H, W, TH, tc0, Tc);
#pragma omp parallel for schedule(dynamic)
            for (int e = 0; e < E; e++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, Ci, Tc, 1.0f, dM + (int64_t)e * Co * Tc, Tc,
                            V + (int64_t)e * Ci * Tc, Tc, 1.0f, dU + (int64_t)e * plane, Ci);
        }
    }
    WG_FN(transform_dweights)(dw, dU, Co, Ci, alpha);
}
