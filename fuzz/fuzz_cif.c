/* libFuzzer harness: mmCIF targets (src/io/cif_read.c). */
#include "fuzz_structure_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_structure(data, size, 0); }
