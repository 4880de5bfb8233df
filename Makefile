# dalle.c: the build.
#   make            build/libdalle.a and build/dalle (CPU; optional parts reported ✓/✗)
#   make test       setup, build, every test, then the same tests under ASan+UBSan (CPU only)
#   make test-cuda  the CUDA backend against the CPU on a GPU (tests/cuda/); skips without one
#   make test-cuda-emu  the same tests on the CPU, the kernels emulated (tests/cuda-emu/; part of check)
#   make demo       setup, build, and the demo (see README)
#   make bench      the benchmark programs (print ratios against PyTorch), and bench/bench-dp
#   make fuzz       libFuzzer targets in build-fuzz/ (clang); FUZZ_SECONDS=600 make fuzz-run
#   make SAN=1      the sanitizer build in build-san/
# BLAS=openmp|pthread picks Debian's OpenBLAS variant (openmp measured faster
# here, see README).

CC      ?= cc
BLAS    ?= openmp
ARCH    := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BLASDIR := /usr/lib/$(ARCH)/openblas-$(BLAS)

ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
else
BUILD   ?= build
OPT     := -O3 -g -march=native -fno-math-errno -fno-trapping-math
endif

# Renderers of the built-in datasets (FreeType + HarfBuzz for emoji, librsvg for
# clip art), libxml2 (CLDR annotations, SVG metadata), libmicrohttpd (dalle serve).
PKGS    := freetype2 harfbuzz librsvg-2.0 libxml-2.0 libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  := -std=c17 -D_DEFAULT_SOURCE -Wall -Wextra -Werror=implicit-function-declaration \
           $(OPT) -fopenmp -Iinclude -Isrc -I/usr/include/cjson $(PKG_CFLAGS) -MMD -MP $(EXTRA_CFLAGS)
LDLIBS  := -L$(BLASDIR) -Wl,-rpath,$(BLASDIR) -lopenblas -lpng -ljpeg -lcjson -lz $(PKG_LIBS) -lm -ldl -fopenmp
LDFLAGS := $(OPT)

# Optional parts: found or not, the CPU build never needs them.
# The CUDA backend (src/backend/cuda/) is a shared library that `--device cuda`
# loads at run time (dlopen): nothing else links CUDA. Built where nvcc is
# found, for Hopper (sm_90a) and, as the portable fallback, sm_80 code plus
# its PTX; not in the sanitizer build.
NVCC       ?= nvcc
HAVE_NVCC  := $(shell command -v $(NVCC) >/dev/null 2>&1 && echo 1)
CUDA_ARCH  ?= -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=[sm_80,compute_80]
NVCCFLAGS  := -std=c++17 -O3 -lineinfo $(CUDA_ARCH) -Iinclude -Isrc -Xcompiler -fPIC,-Wall,-Wextra \
              -Xcudafe --diag_suppress=177 $(EXTRA_NVCCFLAGS)
CUDA_LIBS  := -lcublasLt -lcublas -lcudnn -lnccl
CUDA_SO    := $(if $(and $(HAVE_NVCC),$(if $(SAN),,1),$(wildcard src/backend/cuda/cuda.cu)),$(BUILD)/libdalle-cuda.so)
# OpenMPI (Debian's libopenmpi-dev): data-parallel training under mpirun
# (src/train/comm.c); without it a run has one rank.
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)
HAVE_MPI   := $(if $(MPI_LIBS),1)
ifneq ($(MAKECMDGOALS),clean)
$(info dalle.c build ($(BUILD)): OpenBLAS $(BLAS) ✓ | CUDA $(if $(CUDA_SO),✓ ($(CUDA_SO): --device cuda),✗ (no nvcc$(if $(SAN), or sanitizer build))) | MPI $(if $(HAVE_MPI),✓ (OpenMPI: mpirun -np K dalle train),✗ (no libopenmpi-dev: one rank)))
endif
ifeq ($(HAVE_MPI),1)
LDLIBS += $(MPI_LIBS)
$(BUILD)/src/train/comm.o: CFLAGS += -DDALLE_MPI $(MPI_CFLAGS)
endif

LIB_SRC  := $(wildcard src/core/*.c src/backend/*.c src/backend/cpu/*.c src/dvae/*.c src/train/*.c src/data/*.c src/text/*.c src/prior/*.c src/clip/*.c src/generate/*.c src/serve/*.c)
CLI_SRC  := $(wildcard tools/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC:= $(wildcard bench/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.SECONDARY:
.PHONY: all setup test check check-san test-cuda demo bench fuzz fuzz-run clean
all: $(BUILD)/libdalle.a $(BUILD)/dalle $(CUDA_SO)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS) -c $< -o $@

# The CUDA backend: its .cu files and the host-side C it shares with the CPU
# build (compiled again, position-independent, into the library).
CUDA_SRC  := $(wildcard src/backend/cuda/*.cu)
CUDA_CSRC := $(wildcard src/backend/cuda/*.c src/backend/attn_blocks.c)
CUDA_OBJ  := $(CUDA_SRC:%.cu=$(BUILD)/%.o) $(CUDA_CSRC:%.c=$(BUILD)/%.pic.o)
$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	@echo "  NVCC $<"
	@$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/%.pic.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC (pic) $<"
	@$(CC) $(CFLAGS) -fPIC -c $< -o $@
$(BUILD)/libdalle-cuda.so: $(CUDA_OBJ)
	@echo "  LINK $@"
	@$(NVCC) -shared $(CUDA_ARCH) $^ -o $@ $(CUDA_LIBS)

$(BUILD)/libdalle.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/dalle: $(CLI_OBJ) $(BUILD)/libdalle.a
	$(CC) $(LDFLAGS) $(CLI_OBJ) $(BUILD)/libdalle.a $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libdalle.a
	$(CC) $(LDFLAGS) $< $(BUILD)/libdalle.a $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libdalle.a
	$(CC) $(LDFLAGS) $< $(BUILD)/libdalle.a $(LDLIBS) -o $@

setup:
	@scripts/setup

# The test programs, then the CLI smoke tests; tests/run prints the total.
check: all $(TESTS) ext/text-corpus.txt
	@tests/run $(BUILD)

# The tokenizer's parity corpus, rebuilt from Debian packages (see the script).
ext/text-corpus.txt: scripts/text-corpus tests/data/text-corpus.manifest
	@scripts/text-corpus $@

check-san:
	@$(MAKE) --no-print-directory SAN=1 check

# The CUDA backend on a GPU (docs/cuda.md): every tests/cuda/test_cuda_*
# program (the ops and collectives against the CPU backend; each skips
# without a GPU), then tests/cuda/steps.sh (the CLI with --device cuda
# against --device cpu). Without nvcc, or without a usable GPU, it says so
# and exits 0.
CUDA_TESTS := $(patsubst tests/cuda/%.c,$(BUILD)/tests/cuda/%,$(wildcard tests/cuda/test_cuda_*.c))
test-cuda:
ifeq ($(CUDA_SO),)
	@echo "test-cuda: skipped: the CUDA backend is not built here (no nvcc$(if $(SAN), or sanitizer build))"
else
	@$(MAKE) --no-print-directory all $(CUDA_TESTS)
	@export DALLE_CUDA_LIB=$(abspath $(CUDA_SO)); \
	dev=$$($(BUILD)/dalle info --device cuda 2>&1 >/dev/null | sed 's/^dalle: --device cuda: //; s/; running on the CPU$$//'); \
	[ -z "$$dev" ] || echo "test-cuda: no GPU ($$dev): the programs below skip"; \
	pass=0; fail=0; failed=""; \
	for t in $(CUDA_TESTS) steps.sh; do \
	    echo "== $$(basename $$t)"; \
	    if [ $$t = steps.sh ]; then out=$$(bash tests/cuda/steps.sh $(BUILD) 2>&1); else out=$$($$t 2>&1); fi; rc=$$?; \
	    echo "$$out"; \
	    line=$$(echo "$$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$$' | tail -1); \
	    [ -z "$$line" ] || { pass=$$((pass + $${line%% passed*})); f=$${line#*passed, }; fail=$$((fail + $${f%% failed*})); }; \
	    if [ $$rc -ne 0 ]; then failed="$$failed $$(basename $$t)"; [ -n "$$line" ] && [ "$${f%% failed*}" != 0 ] || fail=$$((fail + 1)); fi; \
	done; \
	[ -z "$$failed" ] || echo "failing:$$failed"; \
	echo "test-cuda: $$pass passed, $$fail failed$${dev:+ (no GPU: skipped)}"; \
	[ -z "$$failed" ]
endif

# The CUDA tests on the CPU emulator: make test-cuda-emu, also run by check (tests/cuda-emu/emu.mk).
include tests/cuda-emu/emu.mk

test: setup
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory check-san

demo: setup
	@$(MAKE) --no-print-directory all
	@scripts/demo $(BUILD)

bench: all $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done
	@echo "== bench/bench-dp"; if command -v mpirun >/dev/null; then bench/bench-dp $(BUILD)/dalle; else echo "skipped: no mpirun"; fi

FUZZ_TARGETS := $(patsubst fuzz/%.c,build-fuzz/%,$(wildcard fuzz/fuzz_*.c))
FUZZ_LIB_SRC := $(filter-out src/backend/cpu/%,$(wildcard src/core/*.c src/text/*.c)) src/data/shard.c src/data/dataset.c src/data/build.c
fuzz: $(FUZZ_TARGETS)
build-fuzz/%: fuzz/%.c $(FUZZ_LIB_SRC)
	@mkdir -p build-fuzz
	clang -std=c17 -D_DEFAULT_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc \
	  -I/usr/include/cjson $^ -lpng -ljpeg -lcjson -lz -lm -o $@
FUZZ_SECONDS ?= 60
fuzz-run: fuzz
	@for t in $(FUZZ_TARGETS); do n=$$(basename $$t); mkdir -p build-fuzz/corpus-$$n; \
	  cp -n fuzz/corpus/$$n/* build-fuzz/corpus-$$n/ 2>/dev/null; \
	  echo "== $$n for $(FUZZ_SECONDS)s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build-fuzz/corpus-$$n || exit 1; done

clean:
	rm -rf build build-san build-fuzz

-include $(CUDA_OBJ:.o=.d) $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TESTS:=.d) $(BENCHES:=.d)
