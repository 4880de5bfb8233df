// attention.cu: (stub, being written)
#include "backend/cuda/cuda.h"

void cuda_register_attention_ops(backend_ops *ops) { (void)ops; }
