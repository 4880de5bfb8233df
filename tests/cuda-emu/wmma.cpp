// wmma.cpp (tests/cuda-emu): the warp matrix functions that include/mma.h
// declares, on the CPU. Each call is a collective of the warp
// (emu_warp_collective: all 32 lanes, the same arguments); loads and stores
// check CUDA's alignment rules; mma_sync computes the product once per warp
// (the first lane to run), and every other lane checks that it holds the
// same operands and copies the result.
#include <cuda_runtime.h>
#include <mma.h>
#include <stdio.h>
#include <string.h>

// The arguments of a load or store, hashed into the tag the lanes compare.
static uint64_t tag_of(const void *p, unsigned ldm, int rows, int col_major) {
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)ldm << 20 | (uint64_t)rows << 8 | (uint64_t)col_major) * 0xC2B2AE3D27D4EB4Full;
    return h;
}

// CUDA's rules for mptr and ldm (the wmma section of the programming guide):
// a 256-bit aligned pointer, ldm a multiple of 16 bytes (4 floats), and at
// least the length of a stored row (or column).
static void check_layout(const void *p, unsigned ldm, int rows, int cols, int col_major, const char *op) {
    if ((uintptr_t)p % 32 != 0)
        emu_kernel_fail("wmma::%s: pointer %p is not 256-bit (32-byte) aligned (offset %u bytes past it)", op, p,
                        (unsigned)((uintptr_t)p % 32));
    if (ldm % 4 != 0) emu_kernel_fail("wmma::%s: ldm %u is not a multiple of 4 floats (16 bytes)", op, ldm);
    const int line = col_major ? rows : cols;
    if (ldm < (unsigned)line)
        emu_kernel_fail("wmma::%s: ldm %u is less than the %d elements of a %s", op, ldm, line,
                        col_major ? "column" : "row");
}

void emu_wmma_load(float *dst, int rows, int cols, const float *p, unsigned ldm, int col_major, const char *op) {
    emu_warp_collective(op, tag_of(p, ldm, rows, col_major));
    check_layout(p, ldm, rows, cols, col_major, op);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            dst[i * cols + j] = col_major ? p[(size_t)j * ldm + i] : p[(size_t)i * ldm + j];
}

void emu_wmma_store(float *p, const float *src, int rows, int cols, unsigned ldm, int col_major, const char *op) {
    emu_warp_collective(op, tag_of(p, ldm, rows, col_major));
    check_layout(p, ldm, rows, cols, col_major, op);
    // every lane writes the whole tile: the same values, since mma_sync
    // checks that the lanes' fragments agree
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            (col_major ? p[(size_t)j * ldm + i] : p[(size_t)i * ldm + j]) = src[i * cols + j];
}

// The value the tensor cores read from a TF32 operand: the upper 19 bits.
static double tf32_operand(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7F800000u) != 0x7F800000u) u &= 0xFFFFE000u;
    memcpy(&v, &u, 4);
    return v;
}

// One slot per warp: the operands and result of its latest mma_sync.
typedef struct {
    uint64_t key;
    float a[16 * 8], b[8 * 16], c[16 * 16], d[16 * 16];
} mma_slot;
static mma_slot g_slots[32];

void emu_wmma_mma(float *d, const float *a, const float *b, const float *c) {
    const uint64_t key = emu_warp_collective("mma_sync", 0);
    mma_slot *s = &g_slots[emu_warp_index()];
    if (s->key != key) { // the first lane of the warp to get here computes
        s->key = key;
        memcpy(s->a, a, sizeof s->a);
        memcpy(s->b, b, sizeof s->b);
        memcpy(s->c, c, sizeof s->c);
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 16; j++) {
                double acc = 0;
                for (int k = 0; k < 8; k++) acc += tf32_operand(a[i * 8 + k]) * tf32_operand(b[k * 16 + j]);
                s->d[i * 16 + j] = (float)(acc + (double)c[i * 16 + j]);
            }
    } else if (memcmp(s->a, a, sizeof s->a) || memcmp(s->b, b, sizeof s->b) || memcmp(s->c, c, sizeof s->c)) {
        emu_kernel_fail("wmma::mma_sync: this lane's fragments differ from those of another lane of its warp (a "
                        "fragment changed in some lanes only: its layout is unspecified)");
    }
    memcpy(d, s->d, sizeof s->d); // d may be c: read above
}
