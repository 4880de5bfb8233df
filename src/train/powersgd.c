// powersgd.c: PowerSGD gradient compression (powersgd.h). The products go
// through BLAS (cblas_sgemm), the QR through LAPACK (OpenBLAS ships it).
#include "train/powersgd.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "dalle/dalle.h"

// LAPACK (Fortran calling convention; in libopenblas).
void sgeqrf_(const int *m, const int *n, float *a, const int *lda, float *tau, float *work, const int *lwork,
             int *info);
void sorgqr_(const int *m, const int *n, const int *k, float *a, const int *lda, const float *tau, float *work,
             const int *lwork, int *info);

// Keys the Q's apart from the other draws of the run (initialisation, data order).
#define PSGD_SEED_SALT 0x5053474451304bULL

static int by_offset(const void *a, const void *b) {
    const psgd_matrix *x = a, *y = b;
    return (x->off > y->off) - (x->off < y->off);
}

int powersgd_init(powersgd *p, int r, int64_t n, const int64_t (*mats)[3], int n_mat, uint64_t seed) {
    memset(p, 0, sizeof *p);
    if (r < 1) return dalle_seterr("PowerSGD: rank %d, expected at least 1", r);
    p->rank = r;
    p->n = n;
    p->n_mat = n_mat;
    if (!(p->mat = dalle_calloc((size_t)(n_mat ? n_mat : 1), sizeof *p->mat))) return DALLE_ERR;
    int64_t max_nm = 1, max_nr = 1, max_r = 1, q0 = 0;
    for (int i = 0; i < n_mat; i++) {
        psgd_matrix *t = &p->mat[i];
        t->off = mats[i][0], t->n = mats[i][1], t->m = mats[i][2];
        if (t->n < 1 || t->m < 1 || t->off < 0 || t->off + t->n * t->m > n || t->n > INT32_MAX || t->m > INT32_MAX) {
            dalle_seterr("PowerSGD: matrix %d (%lld x %lld at %lld) outside the gradient of %lld floats", i,
                         (long long)t->n, (long long)t->m, (long long)t->off, (long long)n);
            powersgd_free(p); // after the message, which reads *t
            return DALLE_ERR;
        }
        t->r = (int)DALLE_MIN((int64_t)r, DALLE_MIN(t->n, t->m));
        t->at_q0 = q0; // Q's place in the order given, so that its draw does not depend on the sort
        q0 += t->m * t->r;
    }
    qsort(p->mat, (size_t)n_mat, sizeof *p->mat, by_offset);
    for (int i = 0; i < n_mat; i++) {
        psgd_matrix *t = &p->mat[i];
        if (i && t->off < p->mat[i - 1].off + p->mat[i - 1].n * p->mat[i - 1].m) {
            dalle_seterr("PowerSGD: the matrices at %lld and %lld overlap", (long long)p->mat[i - 1].off,
                         (long long)t->off);
            powersgd_free(p);
            return DALLE_ERR;
        }
        t->at_e = p->n_err, t->at_p = p->n_p, t->at_q = p->n_q;
        p->n_err += t->n * t->m, p->n_p += t->n * t->r, p->n_q += t->m * t->r;
        max_nm = DALLE_MAX(max_nm, t->n * t->m), max_nr = DALLE_MAX(max_nr, t->n * t->r);
        max_r = DALLE_MAX(max_r, (int64_t)t->r);
    }
    p->n_plain = n - p->n_err;
    p->lwork = (int)(64 * max_r); // at least the optimal n*nb of sgeqrf and sorgqr (nb <= 64)
    p->err = dalle_calloc((size_t)DALLE_MAX(p->n_err, 1), sizeof(float));
    p->q0 = dalle_malloc(sizeof(float) * (size_t)DALLE_MAX(p->n_q, 1));
    p->buf = dalle_malloc(sizeof(float) * (size_t)(p->n_plain + p->n_p + p->n_q + 1));
    p->work = dalle_malloc(sizeof(float) * (size_t)max_nm);
    p->qr = dalle_malloc(sizeof(float) * (size_t)(max_nr + max_r + p->lwork));
    if (!p->err || !p->q0 || !p->buf || !p->work || !p->qr) {
        powersgd_free(p);
        return DALLE_ERR;
    }
    // matrix i (in the order given) draws from its own counter range
    for (int i = 0; i < n_mat; i++) {
        const psgd_matrix *t = &p->mat[i];
        rng_t g = {seed ^ PSGD_SEED_SALT, 0};
        int k = 0;
        while (mats[k][0] != t->off) k++;
        g.counter = (uint64_t)k << 40;
        rng_normal(&g, p->q0 + t->at_q0, t->m * t->r, 0.0f, 1.0f);
    }
    return DALLE_OK;
}

void powersgd_free(powersgd *p) {
    dalle_free(p->mat);
    dalle_free(p->err);
    dalle_free(p->q0);
    dalle_free(p->buf);
    dalle_free(p->work);
    dalle_free(p->qr);
    memset(p, 0, sizeof *p);
}

int64_t powersgd_floats(const powersgd *p) { return p->n_plain + p->n_p + p->n_q; }

int powersgd_orthogonalise(float *P, int64_t n, int r, float *qr, int lwork) {
    // LAPACK is column major: a (n x r, leading dimension n) = P, then + 1e-6 I
    float *a = qr, *tau = qr + n * r, *work = tau + r;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < r; j++) a[i + j * n] = P[i * r + j];
    for (int j = 0; j < r && j < n; j++) a[j + j * n] += 1e-6f;
    int M = (int)n, N = r, info = 0;
    sgeqrf_(&M, &N, a, &M, tau, work, &lwork, &info);
    if (!info) sorgqr_(&M, &N, &N, a, &M, tau, work, &lwork, &info);
    if (info) return dalle_seterr("PowerSGD: LAPACK QR of a %d x %d matrix failed (info %d)", M, N, info);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < r; j++) P[i * r + j] = a[i + j * n];
    return DALLE_OK;
}

// The plain entries (outside every matrix) between matrix i-1 and matrix i
// (i = n_mat: after the last): [*lo, *lo + return).
static int64_t plain_range(const powersgd *p, int i, int64_t *lo) {
    *lo = i ? p->mat[i - 1].off + p->mat[i - 1].n * p->mat[i - 1].m : 0;
    return (i < p->n_mat ? p->mat[i].off : p->n) - *lo;
}

static int all_finite(const float *x, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * 0.0f; // NaN or inf anywhere makes it NaN
    return s == 0;
}

int powersgd_reduce(powersgd *p, comm *c, float *grad) {
    const int K = comm_size(c);
    const float inv = 1.0f / (float)K;
    float *plain = p->buf, *P = plain + p->n_plain, *Q = P + p->n_p;
    // the plain entries, and P = (M + E) Q0 of each matrix (M + E left in grad)
    int64_t at = 0, lo, len;
    for (int i = 0; i <= p->n_mat; i++) {
        len = plain_range(p, i, &lo);
        memcpy(plain + at, grad + lo, sizeof(float) * (size_t)len);
        at += len;
        if (i == p->n_mat) break;
        const psgd_matrix *t = &p->mat[i];
        float *M = grad + t->off;
        const float *E = p->err + t->at_e;
        for (int64_t j = 0; j < t->n * t->m; j++) M[j] += E[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)t->n, t->r, (int)t->m, 1.0f, M, (int)t->m,
                    p->q0 + t->at_q0, t->r, 0.0f, P + t->at_p, t->r);
    }
    if (K > 1) {
        if (comm_allreduce_sum(c, p->buf, p->n_plain + p->n_p)) return DALLE_ERR;
        for (int64_t j = 0; j < p->n_plain + p->n_p; j++) p->buf[j] *= inv;
    }
    at = 0;
    for (int i = 0; i <= p->n_mat; i++) {
        len = plain_range(p, i, &lo);
        memcpy(grad + lo, plain + at, sizeof(float) * (size_t)len);
        at += len;
    }
    // P orthonormal (where finite: a rank's non-finite gradient makes all skip the step)
    int finite = all_finite(P, p->n_p);
    for (int i = 0; i < p->n_mat && finite; i++) {
        const psgd_matrix *t = &p->mat[i];
        if (powersgd_orthogonalise(P + t->at_p, t->n, t->r, p->qr, p->lwork)) return DALLE_ERR;
    }
    for (int i = 0; i < p->n_mat; i++) {
        const psgd_matrix *t = &p->mat[i];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)t->m, t->r, (int)t->n, 1.0f, grad + t->off,
                    (int)t->m, P + t->at_p, t->r, 0.0f, Q + t->at_q, t->r);
    }
    if (K > 1) {
        if (comm_allreduce_sum(c, Q, p->n_q)) return DALLE_ERR;
        for (int64_t j = 0; j < p->n_q; j++) Q[j] *= inv;
    }
    finite = finite && all_finite(Q, p->n_q);
    // M^ = P Q^T; E = (M + E) - M^
    for (int i = 0; i < p->n_mat; i++) {
        const psgd_matrix *t = &p->mat[i];
        float *M = grad + t->off, *E = p->err + t->at_e, *A = p->work;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)t->n, (int)t->m, t->r, 1.0f, P + t->at_p, t->r,
                    Q + t->at_q, t->r, 0.0f, A, (int)t->m);
        int64_t nm = t->n * t->m;
        if (finite)
            for (int64_t j = 0; j < nm; j++) E[j] = M[j] - A[j];
        memcpy(M, A, sizeof(float) * (size_t)nm);
    }
    return DALLE_OK;
}
