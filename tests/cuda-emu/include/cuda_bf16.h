// cuda_bf16.h (tests/cuda-emu): the bf16 type as storage only (the upper
// 16 bits of an fp32 value); the backend passes it by pointer to cuBLASLt.
#pragma once
#include <stdint.h>

typedef struct {
    uint16_t x;
} __nv_bfloat16;
