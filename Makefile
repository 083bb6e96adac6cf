# megakernel build. Plain GNU make; sources are found by wildcard so a new file in
# src/<stage>/, kernels/, tools/mk/ or tests/ needs no edit here.
#
#   make            library, `mk` CLI, kernels (when nvcc is found)
#   make test       dependencies, then every test (tests/run.sh), ends "N passed, N failed"
#   make run        dependencies, then the main job (see README)
#   make BUILD=dir  build elsewhere (parallel work trees, device builds)
#
# Third-party C libraries (jansson, pcre2, utf8proc) are linked statically so the
# binary runs on the GPU image, which lacks them; libmicrohttpd and its TLS stack are
# copied next to the binary (build/lib, found through an $ORIGIN rpath).

BUILD     ?= build
CC        ?= gcc
PYTHON    ?= python3
NVCC      ?= $(shell command -v nvcc 2>/dev/null)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_GENCODE ?= -gencode=arch=compute_90a,code=sm_90a
FUZZ_CC   ?= clang
V         ?= 0
Q         := $(if $(filter 1,$(V)),,@)

ifeq ($(origin CC),default)
CC := gcc
endif

WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CSTD     := -std=c11 -D_GNU_SOURCE
INCS     := -Iinclude -Isrc
OPT      ?= -O2 -g
CFLAGS   += $(CSTD) $(OPT) $(WARN) $(INCS) -pthread -fno-strict-aliasing
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

STATIC_LIBS := -Wl,-Bstatic -ljansson -lpcre2-8 -lutf8proc -Wl,-Bdynamic
DYN_LIBS    := -lmicrohttpd -lm -lpthread -ldl -lrt
RPATH       := -Wl,-rpath,'$$ORIGIN/lib' -Wl,-rpath,'$$ORIGIN/../lib'

HOST_SRC := $(wildcard src/*/*.c)
ifneq ($(NVCC),)
  HAVE_CUDA := 1
  CUDA_SRC  := $(wildcard kernels/*.cu src/runtime/*.cu)
  HOST_SRC  := $(filter-out src/runtime/nocuda.c,$(HOST_SRC))
  CFLAGS    += -DMK_HAVE_CUDA=1 -I$(CUDA_HOME)/include
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -lstdc++
  NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_GENCODE) -Iinclude -Isrc -Ikernels -lineinfo \
               -Xptxas -warn-spills -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter \
               -DMK_HAVE_CUDA=1 --expt-relaxed-constexpr
else
  HAVE_CUDA :=
  CUDA_SRC  :=
  HOST_SRC  := $(filter-out %_cuda.c,$(HOST_SRC))
  CUDA_LIBS :=
endif

HOST_OBJ      := $(HOST_SRC:%.c=$(BUILD)/obj/%.o)
HOST_OBJ_SAN  := $(HOST_SRC:%.c=$(BUILD)/asan/obj/%.o)
CUDA_OBJ      := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
MK_SRC        := $(wildcard tools/mk/*.c)
MK_OBJ        := $(MK_SRC:%.c=$(BUILD)/obj/%.o)
MK_OBJ_SAN    := $(MK_SRC:%.c=$(BUILD)/asan/obj/%.o)
UNIT_SRC      := $(wildcard tests/unit/test_*.c)
UNIT_BIN      := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan/tests/%)
GPU_TEST_SRC  := $(if $(HAVE_CUDA),$(wildcard tests/gpu/test_*.cu tests/gpu/test_*.c))
GPU_TEST_BIN  := $(patsubst tests/gpu/%,$(BUILD)/tests/%,$(basename $(GPU_TEST_SRC)))
GPU_BENCH_SRC := $(if $(HAVE_CUDA),$(wildcard bench/gpu_*.c))
GPU_BENCH_BIN := $(GPU_BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC      := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN      := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_LIB_SRC  := $(filter src/util/% src/load/% src/tokenizer/% src/graph/% src/compile/%,$(HOST_SRC))

# The commit `mk` is built from (mk bench's JSON lines say which code they measured, also
# where the binary runs outside its tree): "-dirty" with uncommitted changes, "unknown"
# without git. The file is rewritten only when the commit changes.
BUILD_COMMIT := $(shell c=$$(git rev-parse --short HEAD 2>/dev/null) && { git diff --quiet HEAD -- 2>/dev/null || c=$$c-dirty; }; echo $${c:-unknown})
COMMIT_SRC   := $(BUILD)/gen/build_commit.c
COMMIT_OBJ   := $(BUILD)/obj/gen/build_commit.o

LIB     := $(BUILD)/libmk.a
LIB_SAN := $(BUILD)/asan/libmk.a
MK      := $(BUILD)/mk
MK_SAN  := $(BUILD)/asan/mk
LDLIBS  := $(STATIC_LIBS) $(CUDA_LIBS) $(DYN_LIBS)

.PHONY: all deps test test-build run clean fuzz gpu-tests devlibs examples FORCE
all: $(MK) devlibs

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo '  CC      $<'
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo '  CC/SAN  $<'
	$(Q)$(CC) $(CFLAGS) $(SANFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	@echo '  NVCC    $<'
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(HOST_OBJ) $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	@echo '  AR      $@'
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIB_SAN): $(HOST_OBJ_SAN) $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	@echo '  AR      $@'
	$(Q)rm -f $@ && ar rcs $@ $^

$(COMMIT_SRC): FORCE
	@mkdir -p $(dir $@)
	@printf 'const char mk_build_commit[] = "%s";\n' '$(BUILD_COMMIT)' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(COMMIT_OBJ): $(COMMIT_SRC)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(MK): $(MK_OBJ) $(COMMIT_OBJ) $(LIB)
	@echo '  LD      $@'
	$(Q)$(CC) $(CFLAGS) $(MK_OBJ) $(COMMIT_OBJ) $(LIB) $(LDLIBS) $(RPATH) -o $@

$(MK_SAN): $(MK_OBJ_SAN) $(COMMIT_OBJ) $(LIB_SAN)
	@echo '  LD      $@'
	$(Q)$(CC) $(CFLAGS) $(SANFLAGS) $(MK_OBJ_SAN) $(COMMIT_OBJ) $(LIB_SAN) $(LDLIBS) $(RPATH) -o $@

$(BUILD)/asan/tests/%: tests/unit/%.c $(LIB_SAN) tests/unit/check.h
	@mkdir -p $(dir $@)
	@echo '  LD      $@'
	$(Q)$(CC) $(CFLAGS) $(SANFLAGS) -Itests/unit $< $(LIB_SAN) $(LDLIBS) $(RPATH) -o $@

$(BUILD)/tests/%: tests/gpu/%.cu $(LIB) tests/unit/check.h
	@mkdir -p $(dir $@)
	@echo '  LD      $@'
	$(Q)$(NVCC) $(NVCCFLAGS) -Itests/unit $< $(LIB) -Xlinker -Bstatic -ljansson -lpcre2-8 -lutf8proc -Xlinker -Bdynamic -lcublasLt -lmicrohttpd -Xlinker -rpath='$$ORIGIN/../lib' -o $@

$(BUILD)/tests/%: tests/gpu/%.c $(LIB) tests/unit/check.h
	@mkdir -p $(dir $@)
	@echo '  LD      $@'
	$(Q)$(CC) $(CFLAGS) -Itests/unit $< $(LIB) $(LDLIBS) $(RPATH) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	@echo '  LD      $@'
	$(Q)$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) $(RPATH) -o $@

# libFuzzer targets: the parsers are compiled once with clang's fuzzer instrumentation.
FUZZ_FLAGS := $(CSTD) -O1 -g $(INCS) -fsanitize=fuzzer-no-link,address,undefined
FUZZ_OBJ   := $(FUZZ_LIB_SRC:%.c=$(BUILD)/fuzz/obj/%.o)
.SECONDARY: $(FUZZ_OBJ)
$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo '  FUZZCC  $<'
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	@echo '  FUZZ    $@'
	$(Q)$(FUZZ_CC) $(CSTD) -O1 -g $(INCS) -fsanitize=fuzzer,address,undefined $< $(FUZZ_OBJ) \
	    $(STATIC_LIBS) -lm -lpthread -o $@

# Copy libmicrohttpd and the TLS libraries it pulls in next to the binaries, so the
# build runs on a machine that has glibc but not these Debian packages (the GPU image).
devlibs: $(BUILD)/lib/.stamp
$(BUILD)/lib/.stamp: $(MK)
	@mkdir -p $(BUILD)/lib
	@ldd $(MK) | awk '/=> \// {print $$3}' | grep -v '^$(abspath $(BUILD))/lib/' | grep -vE '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libcublas[A-Za-z]*|libcudart|ld-linux[^/]*)\.so' | \
	    xargs -r -I{} cp -L {} $(BUILD)/lib/
	@touch $@

# examples/*.c: programs using only the public headers (README's C API example).
EXAMPLE_BIN := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
$(BUILD)/examples/%: examples/%.c $(LIB)
	@mkdir -p $(dir $@)
	@echo '  LD      $@'
	$(Q)$(CC) $(CSTD) $(OPT) $(WARN) -Iinclude -pthread $< $(LIB) $(LDLIBS) $(RPATH) -o $@
examples: $(EXAMPLE_BIN)

fuzz: $(FUZZ_BIN)
test-build: $(MK) $(MK_SAN) devlibs $(UNIT_BIN) $(GPU_TEST_BIN) $(GPU_BENCH_BIN) $(FUZZ_BIN) $(EXAMPLE_BIN)
gpu-tests: $(MK) devlibs $(GPU_TEST_BIN) $(GPU_BENCH_BIN)

deps:
	@scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory -j2 test-build
	@BUILD=$(BUILD) PYTHON=$(PYTHON) tests/run.sh

# The main job. Without MODEL= a small random-weight Qwen3 is synthesized (and said so).
MODEL  ?=
PROMPT ?= Write a haiku about a GPU.
N      ?= 32
run: deps
	@$(MAKE) --no-print-directory -j2 $(MK) devlibs
	@BUILD=$(BUILD) MODEL="$(MODEL)" PROMPT="$(PROMPT)" N="$(N)" scripts/run.sh

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
