/* libFuzzer harness: PDB targets (src/io/pdb_read.c, on the shared steps of structure_common.c). */
#include "fuzz_structure_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_structure(data, size, 1); }
