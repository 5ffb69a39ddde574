# pxdiff build. `make` builds build/pxdiff and build/libpxdiff.so; `make test` runs every test.
# `make` never installs anything: `make deps` installs the missing Debian packages (OpenBLAS,
# pkg-config; python3-torch, numpy and pytest for the reference tests) with apt-get and sets
# up the test venv, through scripts/ensure-deps.sh.
#   OPT=...       optimisation flags (default -O3, plus -march=x86-64-v3 -mtune=native on x86_64)
#   BLAS=name     the cblas to link, by its pkg-config name (default openblas; -l<name> when
#                 pkg-config does not know it)
#   PXDIFF_NO_CUDA=1  no CUDA backend even when nvcc is found
CC      ?= cc
BUILD   ?= build
UNAME_S := $(shell uname -s)
UNAME_M := $(shell uname -m)
# x86-64-v3 (AVX2, FMA) only where the host is x86_64: aarch64 (e.g. GH200) and macOS get
# the compiler's baseline for their architecture.
ifeq ($(UNAME_S)-$(UNAME_M),Linux-x86_64)
  OPT   ?= -O3 -march=x86-64-v3 -mtune=native
else
  OPT   ?= -O3
endif
BLAS    ?= openblas

CFLAGS_BASE := -std=c11 -fno-trapping-math -Wall -Wextra -Wno-unused-parameter -fPIC -Iinclude -Isrc $(EXTRA_CFLAGS)
# -fno-trapping-math lets branch-free math (sigmoid, exp) vectorize; it changes no result.
# Each object also writes the headers it includes (.d next to the .o, read below): a changed
# header rebuilds exactly the objects that include it. -MP keeps a deleted header from
# breaking the build.
DEPFLAGS = -MMD -MP -MF $(@:.o=.d)
ifeq ($(UNAME_S),Darwin)
  # Accelerate's cblas on macOS.
  BLAS_CFLAGS := -DPX_BLAS_ACCELERATE -DACCELERATE_NEW_LAPACK
  BLAS_LIBS   := -framework Accelerate
  OMP_FLAGS   := -Xpreprocessor -fopenmp
  OMP_LIBS    := -lomp
  SO_FLAGS    := -dynamiclib
else
  # The cblas as pkg-config describes it (include and library dirs differ between Debian's
  # OpenBLAS variants); -l$(BLAS) when pkg-config is missing or does not know it.
  BLAS_PC_CFLAGS := $(shell pkg-config --cflags $(BLAS) 2>/dev/null)
  BLAS_PC_LIBS   := $(shell pkg-config --libs $(BLAS) 2>/dev/null)
  BLAS_CFLAGS := $(if $(filter openblas,$(BLAS)),-DPX_BLAS_OPENBLAS) $(BLAS_PC_CFLAGS)
  BLAS_LIBS   := $(or $(strip $(BLAS_PC_LIBS)),-l$(BLAS))
  OMP_FLAGS   := -fopenmp
  OMP_LIBS    := -fopenmp
  SO_FLAGS    := -shared
  SO_VERSION_SCRIPT = $(BUILD)/libpxdiff.ver
  SO_EXPORTS  = -Wl,--version-script=$(SO_VERSION_SCRIPT)
endif
CFLAGS  := $(CFLAGS_BASE) $(OPT) $(BLAS_CFLAGS) $(OMP_FLAGS)
LDLIBS  := $(BLAS_LIBS) $(OMP_LIBS) -lm $(LDLIBS_EXTRA)

LIB_SRC := $(wildcard src/*.c src/io/*.c src/featurize/*.c src/model/*.c src/cpu/*.c src/sample/*.c)
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))

# The CUDA backend is built whenever nvcc is found (no GPU needed to build);
# PXDIFF_NO_CUDA=1 turns it off. sm_80 and sm_90 code plus compute_90 PTX for newer GPUs.
NVCC ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
ifneq ($(strip $(NVCC)),)
ifneq ($(PXDIFF_NO_CUDA),1)
  CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
  CUDA_SRC  := $(wildcard src/cuda/*.cu)
  CUDA_OBJ  := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRC))
  CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
               -gencode arch=compute_90,code=compute_90
  NVCCFLAGS := -O3 -std=c++17 -Xcompiler -fPIC -Iinclude -Isrc -DPX_HAVE_CUDA $(CUDA_ARCH) $(NVCC_EXTRA)
  CFLAGS    += -DPX_HAVE_CUDA
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
  LIB_OBJ   += $(CUDA_OBJ)
endif
endif
# Only the API leaves libpxdiff.so: everything is hidden but what a header declares with
# PXDIFF_API (include/pxdiff.h). The library's own objects also see the declarations of its
# test hooks (pxdiff_testing.h, included by pxdiff.h under this macro), so those are exported
# too. The CLI and the C tests link libpxdiff.a and see everything.
$(LIB_OBJ): CFLAGS += -DPXDIFF_BUILDING_LIBRARY -fvisibility=hidden
ifneq ($(strip $(CUDA_OBJ)),)
$(CUDA_OBJ): NVCCFLAGS += -DPXDIFF_BUILDING_LIBRARY -Xcompiler -fvisibility=hidden
endif
CLI_SRC := $(wildcard src/cli/*.c)
CLI_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRC))
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)

.PHONY: all deps test test-c test-py test-san clean bench sanitize fuzz
all: $(BUILD)/libpxdiff.so $(BUILD)/libpxdiff.a $(BUILD)/pxdiff

# The only target that installs anything (apt-get through sudo when not root; pip into the
# test venv $(BUILD)/venv-test, which sees Debian's torch).
deps:
	@sh scripts/ensure-deps.sh build
	@PXDIFF_TEST_VENV=$(BUILD)/venv-test sh scripts/ensure-deps.sh test

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/libpxdiff.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libpxdiff.so: $(LIB_OBJ) $(SO_VERSION_SCRIPT)
	$(CC) $(SO_FLAGS) -o $@ $(LIB_OBJ) $(SO_EXPORTS) $(LDLIBS)

# Only px_* leave the shared library: the C++ template instantiations of the CUDA backend
# (std:: containers) would otherwise be exported as weak symbols despite -fvisibility=hidden.
$(BUILD)/libpxdiff.ver:
	@mkdir -p $(dir $@)
	printf '{\n  global: px_*;\n  local: *;\n};\n' >$@

$(BUILD)/pxdiff: $(CLI_OBJ) $(BUILD)/libpxdiff.a
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/libpxdiff.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libpxdiff.a
	@mkdir -p $(dir $@) $(BUILD)/obj/tests
	$(CC) $(CFLAGS) -MMD -MP -MF $(BUILD)/obj/tests/$*.d -MT $@ -Itests -o $@ $< $(BUILD)/libpxdiff.a $(LDLIBS)

test: all $(TEST_BIN)
	@sh scripts/run-tests.sh $(BUILD)

test-c: all $(TEST_BIN)
	@sh scripts/run-tests.sh $(BUILD) c

bench: all
	PYTHONPATH=python:tests/ref /usr/bin/python3 bench/bench_cpu.py

# The built-in demo: pxdiff design on PXDesign's quick-start target with SYNTHETIC weights (no
# downloads), PXDesign's output tree in build/demo (replaced on every `make demo`).
.PHONY: demo
demo: all
	$(BUILD)/pxdiff demo -o $(BUILD)/demo --overwrite

# The whole suite (C tests, then the Python tests with the runtimes preloaded) under
# AddressSanitizer + UndefinedBehaviorSanitizer, in a separate build dir.
SAN_VARS = BUILD=build-san OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDLIBS_EXTRA="-fsanitize=address,undefined"
sanitize:
	$(MAKE) $(SAN_VARS) test-san

test-san: all $(TEST_BIN)
	@sh scripts/run-tests.sh $(BUILD) sanitize

# Short libFuzzer pass over the readers (FUZZ_SECS per target; needs clang).
fuzz:
	sh fuzz/run.sh $(or $(FUZZ_SECS),20)

clean:
	rm -rf build build-san build-fuzz

# Headers each object and test includes, as the compiler recorded them. An object compiled
# before it had a .d (a build dir from an older Makefile) depends on every header until it
# is rebuilt once, so that no stale object survives a header change.
LEGACY_OBJ := $(foreach o,$(LIB_OBJ) $(CLI_OBJ),$(if $(wildcard $(o:.o=.d)),,$(o)))
$(LEGACY_OBJ): $(wildcard include/*.h src/*.h src/*/*.h)
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(patsubst tests/%.c,$(BUILD)/obj/tests/%.d,$(TEST_SRC))
