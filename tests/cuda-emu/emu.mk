# tests/cuda-emu/emu.mk (included by the Makefile): `make test-cuda-emu` runs
# the CUDA backend's tests (tests/cuda/test_cuda_ops, test_cuda_transformer, and
# tests/test_clip on the emulated backend)
# on the CPU, with no nvcc and no GPU: the backend's own .cu files (all but
# comm_nccl.cu: no NCCL here) are built by g++ against the stand-ins in
# tests/cuda-emu/include (the CUDA runtime and kernel language, cuBLASLt,
# cuDNN) into $(BUILD)/cuda-emu/libdalle-cuda.so, which the test programs
# load as they would the GPU's. The .cu files reach g++ through a sed that
# rewrites the two things it cannot parse (include/cuda_runtime.h says how).

EMU_CXX      := $(shell command -v $(CXX) 2>/dev/null)
EMU_DIR      := $(BUILD)/cuda-emu
EMU_CU       := $(filter-out src/backend/cuda/comm_nccl.cu,$(wildcard src/backend/cuda/*.cu))
EMU_GEN      := $(patsubst src/%,$(EMU_DIR)/src/%,$(EMU_CU) $(wildcard src/backend/cuda/*.cuh))
EMU_OBJ      := $(patsubst src/backend/cuda/%.cu,$(EMU_DIR)/%.o,$(EMU_CU)) \
                $(patsubst tests/cuda-emu/%.cpp,$(EMU_DIR)/%.o,$(wildcard tests/cuda-emu/*.cpp)) \
                $(EMU_DIR)/attn_blocks.o
EMU_LIB      := $(EMU_DIR)/libdalle-cuda.so
EMU_TESTS    := $(BUILD)/tests/cuda/test_cuda_ops $(BUILD)/tests/cuda/test_cuda_transformer
EMU_CXXFLAGS := -std=c++17 $(OPT) -fPIC -ffp-contract=off -Wall -Wextra -Wno-unknown-pragmas \
                -I$(EMU_DIR)/src -Itests/cuda-emu/include -Isrc -Iinclude -MMD -MP

.PHONY: test-cuda-emu
ifeq ($(EMU_CXX),)
test-cuda-emu:
	@echo "test-cuda-emu: skipped: no C++ compiler ($(CXX)) for the CUDA emulator"
else
test-cuda-emu: $(EMU_LIB) $(EMU_TESTS) $(BUILD)/tests/test_clip
	@tests/cuda-emu/run $(BUILD)
endif

# `make check` runs it (about 45 s here, build included), but not the
# sanitizer pass: the emulator works under ASan+UBSan (its fibers are
# announced to ASan, and a kernel's access past the end of a buffer is
# reported at its line), but takes about 70 s there: `make SAN=1 test-cuda-emu`.
ifneq ($(SAN),1)
check: test-cuda-emu
endif

# kernel<<<grid, block, smem, stream>>>(  ->  emu_launch(emu_config(grid, block, smem, stream), "kernel", kernel,
# extern __shared__ T name[];            ->  T *const name = (T *)emu_dynamic_shared();
# (an __align__(N) after __shared__ is dropped: the emulator's buffer is 128-byte aligned)
# (each launch's <<<...>>>( on one line; #line keeps messages on the original lines)
$(EMU_DIR)/src/%: src/%
	@mkdir -p $(dir $@)
	@sed -e '1i #line 1 "$<"' \
	  -e 's/\([A-Za-z_][A-Za-z0-9_]*\(<[A-Za-z0-9_, ]*>\)\{0,1\}\)<<<\(.*\)>>>(/emu_launch(emu_config(\3), "\1", \1, /' \
	  -e 's/extern __shared__ __align__([0-9]*) /extern __shared__ /' \
	  -e 's/extern __shared__ \(.*\) \([A-Za-z_][A-Za-z0-9_]*\)\[\];/\1 *const \2 = (\1 *)emu_dynamic_shared();/' \
	  $< > $@

# (nvcc never showed the host compiler the device code: its int/unsigned
# comparisons with threadIdx are left alone)
$(EMU_DIR)/%.o: $(EMU_DIR)/src/backend/cuda/%.cu | $(EMU_GEN)
	@echo "  CXX (emu) $(<:$(EMU_DIR)/%=%)"
	@$(CXX) $(EMU_CXXFLAGS) -Wno-sign-compare -x c++ -c $< -o $@

$(EMU_DIR)/%.o: tests/cuda-emu/%.cpp
	@mkdir -p $(dir $@)
	@echo "  CXX $<"
	@$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

$(EMU_DIR)/attn_blocks.o: src/backend/attn_blocks.c
	@mkdir -p $(dir $@)
	@echo "  CC (pic) $<"
	@$(CC) $(CFLAGS) -fPIC -c $< -o $@

$(EMU_LIB): $(EMU_OBJ)
	@echo "  LINK $@"
	@$(CXX) -shared $(OPT) $^ -o $@

-include $(EMU_OBJ:.o=.d) $(EMU_TESTS:=.d)
