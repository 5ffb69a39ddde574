# pxdiff build. `make` builds build/pxdiff and build/libpxdiff.so; `make test` runs every test.
# `make` never installs anything: `make deps` installs the missing Debian packages (OpenBLAS,
# pkg-config; python3-torch, numpy and pytest for the reference tests) with apt-get and sets
# up the test venv, through scripts/ensure-deps.sh.
#   OPT=...       optimisation flags (default -O3, plus -march=x86-64-v3 -mtune=native on x86_64)
#   BLAS=name     the cblas to link, by its pkg-config name (-l<name> when pkg-config does not
#                 know it; BLAS=accelerate on macOS). Without it the build takes the first this
#                 machine has (scripts/detect-blas.sh, cached in $(BUILD)/blas.mk): Accelerate
#                 on macOS, else MKL's cblas, BLIS, OpenBLAS, -lblas. `pxdiff info` names it.
#   PXDIFF_NO_CUDA=1  no CUDA backend even when nvcc is found
# (the rules for the BLAS choice and the flags stamp come before `all`)
.DEFAULT_GOAL := all
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

CFLAGS_BASE := -std=c11 -fno-trapping-math -Wall -Wextra -Wno-unused-parameter -fPIC -Iinclude -Isrc $(EXTRA_CFLAGS)
# -fno-trapping-math lets branch-free math (sigmoid, exp) vectorize; it changes no result.
# Each object also writes the headers it includes (.d next to the .o, read below): a changed
# header rebuilds exactly the objects that include it. -MP keeps a deleted header from
# breaking the build.
DEPFLAGS = -MMD -MP -MF $(@:.o=.d)
ifeq ($(UNAME_S),Darwin)
  OMP_FLAGS   := -Xpreprocessor -fopenmp
  OMP_LIBS    := -lomp
  SO_FLAGS    := -dynamiclib
else
  OMP_FLAGS   := -fopenmp
  OMP_LIBS    := -fopenmp
  SO_FLAGS    := -shared
  SO_VERSION_SCRIPT = $(BUILD)/libpxdiff.ver
  SO_EXPORTS  = -Wl,--version-script=$(SO_VERSION_SCRIPT)
endif
# The cblas. BLAS_KIND becomes a define (PX_BLAS_<KIND>, cpu/blas.h) that `pxdiff info`
# reports beside the library found loaded at run time.
#  - BLAS=accelerate: Accelerate (macOS);
#  - BLAS=<a name pkg-config knows>: as pkg-config describes it (include and library dirs
#    differ between Debian's OpenBLAS variants), the kind read from the name;
#  - BLAS=mkl|blis|openblas|blas otherwise, or no BLAS: scripts/detect-blas.sh finds it (that
#    kind only, or the first the machine has), checked by a test link and cached in
#    $(BUILD)/blas.mk until BLAS changes (delete the file to detect again after installing
#    another library);
#  - any other name: -l$(BLAS).
BLAS_REQUEST := $(or $(strip $(BLAS)),auto)
BLAS_PC      := $(if $(filter auto accelerate,$(BLAS_REQUEST)),,$(shell pkg-config --exists $(BLAS) 2>/dev/null && echo yes))
ifeq ($(BLAS_REQUEST),accelerate)
  BLAS_KIND   := accelerate
  BLAS_CFLAGS := -DPX_BLAS_ACCELERATE -DACCELERATE_NEW_LAPACK
  BLAS_LIBS   := -framework Accelerate
else ifeq ($(BLAS_PC)$(filter auto mkl blis openblas blas,$(BLAS_REQUEST)),)
  BLAS_KIND   := blas
  BLAS_CFLAGS := -DPX_BLAS_GENERIC
  BLAS_LIBS   := -l$(BLAS)
else ifeq ($(BLAS_PC),yes)
  BLAS_KIND   := $(or $(if $(filter openblas%,$(BLAS)),openblas),$(if $(filter mkl%,$(BLAS)),mkl),$(if $(filter blis%,$(BLAS)),blis),blas)
  BLAS_DEFINE := $(if $(filter blas,$(BLAS_KIND)),-DPX_BLAS_GENERIC,-DPX_BLAS_$(shell echo $(BLAS_KIND) | tr a-z A-Z))
  BLAS_CFLAGS := $(BLAS_DEFINE) $(shell pkg-config --cflags $(BLAS) 2>/dev/null)
  BLAS_LIBS   := $(shell pkg-config --libs $(BLAS) 2>/dev/null)
else
  # `make deps` and `make clean` need no BLAS (deps installs one).
  ifneq ($(filter-out clean deps,$(or $(MAKECMDGOALS),all)),)
    include $(BUILD)/blas.mk
    # made for another BLAS= than this one: detect again (make then restarts)
    ifneq ($(BLAS_FOR),$(BLAS_REQUEST))
$(BUILD)/blas.mk: px-blas-changed
    endif
  endif
endif
.PHONY: px-blas-changed
$(BUILD)/blas.mk: scripts/detect-blas.sh
	@mkdir -p $(dir $@)
	sh scripts/detect-blas.sh "$(CC)" $(BLAS_REQUEST) >$@.tmp && mv $@.tmp $@

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

# The flags stamp: everything that decides what an object or a binary contains (compilers,
# flags, BLAS, CUDA or not) in one line, $(BUILD)/.flags. When the line differs from the one
# stored, the stamp is rewritten and every object and binary, which depend on it, is rebuilt:
# a build dir never mixes objects of two configurations (e.g. after BLAS=, OPT= or
# PXDIFF_NO_CUDA=1 changed). Under make -n / -q it only reports that.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_LINE  := $(strip cc=$(CC) cflags=$(CFLAGS) ldlibs=$(LDLIBS) blas=$(BLAS_KIND) nvcc=$(if $(CUDA_OBJ),$(NVCC) $(NVCCFLAGS),none))
ifneq ($(strip $(shell cat $(FLAGS_STAMP) 2>/dev/null)),$(FLAGS_LINE))
$(FLAGS_STAMP): px-flags-changed
endif
.PHONY: px-flags-changed
$(FLAGS_STAMP):
	@mkdir -p $(dir $@)
	@printf '%s\n' '$(subst ','\'',$(FLAGS_LINE))' >$@
	@echo "pxdiff: configuration: BLAS $(BLAS_KIND) ($(BLAS_LIBS)), CUDA $(if $(CUDA_OBJ),$(NVCC),off); objects rebuilt"
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

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/libpxdiff.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $(LIB_OBJ)

$(BUILD)/libpxdiff.so: $(LIB_OBJ) $(SO_VERSION_SCRIPT) $(FLAGS_STAMP)
	@echo "pxdiff: BLAS: $(BLAS_KIND) ($(BLAS_LIBS))"
	$(CC) $(SO_FLAGS) -o $@ $(LIB_OBJ) $(SO_EXPORTS) $(LDLIBS)

# Only px_* leave the shared library: the C++ template instantiations of the CUDA backend
# (std:: containers) would otherwise be exported as weak symbols despite -fvisibility=hidden.
$(BUILD)/libpxdiff.ver:
	@mkdir -p $(dir $@)
	printf '{\n  global: px_*;\n  local: *;\n};\n' >$@

$(BUILD)/pxdiff: $(CLI_OBJ) $(BUILD)/libpxdiff.a $(FLAGS_STAMP)
	@echo "pxdiff: BLAS: $(BLAS_KIND) ($(BLAS_LIBS))"
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/libpxdiff.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libpxdiff.a $(FLAGS_STAMP)
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
# AddressSanitizer + UndefinedBehaviorSanitizer, in a separate build dir. -O2: the suite runs
# the model (the demo builds 139 M synthetic weights) and at -O1 this phase was over half of
# CI's 30 minutes; the checks are the same at either level.
SAN_VARS = BUILD=build-san OPT="-O2 -g -fno-omit-frame-pointer" \
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
