// mma.h (tests/cuda-emu): a CPU stand-in for CUDA's warp matrix functions
// (nvcuda::wmma), the subset the backend uses: TF32 fragments of shape
// m16n16k8 (matrix_a 16x8, matrix_b 8x16, row or column major), the fp32
// accumulator 16x16, fill_fragment, load_matrix_sync, store_matrix_sync,
// mma_sync and __float_to_tf32 (wmma.cpp implements the functions).
//
// A fragment's layout is opaque in CUDA; here every lane holds the whole
// matrix (x[] has 128 or 256 elements: loops over num_elements still touch
// each element once per lane, so element-wise code works unchanged). The
// _sync functions are warp collectives: each is a barrier of the warp (as a
// shuffle is), every lane must pass the same pointer, ldm and layout (a
// difference aborts), and mma_sync checks that every lane holds the same
// operands. load/store abort on a pointer that is not 256-bit aligned or an
// ldm that is not a multiple of 4 floats (CUDA's rules: a GPU gives wrong
// results or faults there). mma_sync reads its operands as the tensor cores
// do (the low 13 mantissa bits ignored: round with __float_to_tf32 first)
// and sums the exact products in double, rounding once to fp32.
#pragma once
#include <stdint.h>
#include <string.h>

// The emulator's side (wmma.cpp): rows x cols floats of dst from p (element
// (i, j) at p[i*ldm + j] row major, p[j*ldm + i] column major); the store
// back; d = a b + c on the m16n16k8 shapes; `op` names the call in messages.
void emu_wmma_load(float *dst, int rows, int cols, const float *p, unsigned ldm, int col_major, const char *op);
void emu_wmma_store(float *p, const float *src, int rows, int cols, unsigned ldm, int col_major, const char *op);
void emu_wmma_mma(float *d, const float *a, const float *b, const float *c);

namespace nvcuda {
namespace wmma {

struct matrix_a;
struct matrix_b;
struct accumulator;
struct row_major;
struct col_major;
namespace precision {
struct tf32;
}
enum layout_t { mem_row_major, mem_col_major };

// The shapes and types the stand-in has: any other fails to compile.
template <typename Use, int m, int n, int k, typename T, typename Layout = void> class fragment;

template <int N> struct emu_frag {
    enum { num_elements = N };
    float x[N];
};
template <typename L>
class fragment<matrix_a, 16, 16, 8, precision::tf32, L> : public emu_frag<16 * 8> {};
template <typename L>
class fragment<matrix_b, 16, 16, 8, precision::tf32, L> : public emu_frag<8 * 16> {};
template <> class fragment<accumulator, 16, 16, 8, float, void> : public emu_frag<16 * 16> {};

template <typename L> struct emu_is_col { enum { value = 0 }; };
template <> struct emu_is_col<col_major> { enum { value = 1 }; };

// The nearest TF32 value (10 mantissa bits), ties away from zero, as
// cvt.rna.tf32.f32; infinities and NaN unchanged. Returned as a float.
inline float __float_to_tf32(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7F800000u) != 0x7F800000u) u = (u + 0x1000u) & 0xFFFFE000u;
    memcpy(&v, &u, 4);
    return v;
}

template <typename Use, int m, int n, int k, typename T, typename L>
inline void fill_fragment(fragment<Use, m, n, k, T, L> &f, float v) {
    for (int i = 0; i < f.num_elements; i++) f.x[i] = v;
}

template <typename L>
inline void load_matrix_sync(fragment<matrix_a, 16, 16, 8, precision::tf32, L> &f, const float *p, unsigned ldm) {
    emu_wmma_load(f.x, 16, 8, p, ldm, emu_is_col<L>::value, "load_matrix_sync (matrix_a)");
}
template <typename L>
inline void load_matrix_sync(fragment<matrix_b, 16, 16, 8, precision::tf32, L> &f, const float *p, unsigned ldm) {
    emu_wmma_load(f.x, 8, 16, p, ldm, emu_is_col<L>::value, "load_matrix_sync (matrix_b)");
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 8, float> &f, const float *p, unsigned ldm, layout_t l) {
    emu_wmma_load(f.x, 16, 16, p, ldm, l == mem_col_major, "load_matrix_sync (accumulator)");
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 8, float> &f, unsigned ldm, layout_t l) {
    emu_wmma_store(p, f.x, 16, 16, ldm, l == mem_col_major, "store_matrix_sync");
}
template <typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 8, float> &d,
                     const fragment<matrix_a, 16, 16, 8, precision::tf32, LA> &a,
                     const fragment<matrix_b, 16, 16, 8, precision::tf32, LB> &b,
                     const fragment<accumulator, 16, 16, 8, float> &c) {
    emu_wmma_mma(d.x, a.x, b.x, c.x);
}

} // namespace wmma
} // namespace nvcuda
