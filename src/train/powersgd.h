// powersgd.h: PowerSGD compression of the gradient all-reduce (Vogels et
// al. 2019, as the paper uses it across machines: SPEC §3 "Distribution"),
// for the all-reduce mode of data-parallel training (train/dp.h).
//
// The flat gradient (n floats) holds some weight matrices M (n_i x m_i, row
// major, at known offsets) and other entries (embeddings, heads, gains,
// biases). Each step, on every rank k: M_k += E_k (error feedback: the
// residual this rank's approximation left last step); P = mean_k M_k Q
// (all-reduced together with the plain mean of the other entries);
// P = orth(P + 1e-6 I) (Householder QR, LAPACK sgeqrf/sorgqr); Q' = mean_k
// M_k^T P (all-reduced); the gradient used is M^ = P Q'^T, the same on every
// rank, and E_k = M_k - M^. Q is the paper's: a fixed Gaussian matrix per
// tensor, drawn from Philox keyed by the run's seed and the tensor's index
// (every rank draws the same without communication), never updated.
//
// By linearity M^ depends on the ranks' errors only through their mean, and
// that mean evolves exactly as a single rank's error would: K ranks compute
// the same run as one rank (to rounding), and a checkpoint may be resumed on
// another number of ranks by giving each the mean error.
#pragma once
#include <stdint.h>

#include "train/comm.h"

// One compressed matrix.
typedef struct {
    int64_t off;        // into the flat gradient
    int64_t n, m;       // rows, columns
    int r;              // rank used: min(rank, n, m)
    int64_t at_e;       // into err
    int64_t at_p, at_q; // into the P part and the Q part of the buffer
    int64_t at_q0;      // into q0
} psgd_matrix;

typedef struct {
    int rank;           // asked for (each matrix uses at most its min(n, m))
    int n_mat;
    psgd_matrix *mat;   // (n_mat) by increasing offset
    int64_t n;          // floats of the flat gradient
    int64_t n_err;      // sum of n*m: the compressed floats
    int64_t n_plain;    // n - n_err: the floats all-reduced as they are
    int64_t n_p, n_q;   // sums of n*r and m*r
    float *err;         // (n_err) this rank's error feedback, matrix after matrix
    float *q0;          // (n_q) the fixed Gaussian Q of each matrix (m x r)
    float *buf;         // (n_plain + n_p + n_q) what is all-reduced: the plain entries, the P's, the Q's
    float *work;        // (max n*m) M^ of one matrix
    float *qr;          // (max n*r + r + lwork) the column-major copy of P, tau and LAPACK's workspace
    int lwork;
} powersgd;

// Compression at rank r (>= 1) of the n_mat matrices mats[i] = {offset,
// rows, columns} (non-overlapping, inside [0, n)) of a flat gradient of n
// floats; the error starts at zero, the Q's are drawn from seed. DALLE_ERR
// on bad sizes or out-of-memory.
int powersgd_init(powersgd *p, int r, int64_t n, const int64_t (*mats)[3], int n_mat, uint64_t seed);
void powersgd_free(powersgd *p);

// Collective (K = comm_size(c), c NULL: one rank): grad (n), this rank's
// gradient, becomes the mean gradient as PowerSGD approximates it: the
// entries outside the matrices their plain mean over the ranks, each matrix
// M^ as above, and this rank's error is updated. When M^ is not finite (some
// rank's gradient was not) the error is left as it was.
int powersgd_reduce(powersgd *p, comm *c, float *grad);

// Floats each rank contributes to the all-reduces of one step (n_plain +
// n_p + n_q), against n uncompressed.
int64_t powersgd_floats(const powersgd *p);

// P (n x r, row major) = an orthonormal basis of the columns of P + 1e-6 I
// (Householder QR). qr (n*r + r + lwork floats) is workspace. DALLE_ERR when
// LAPACK fails.
int powersgd_orthogonalise(float *P, int64_t n, int r, float *qr, int lwork);
