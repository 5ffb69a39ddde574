/* libFuzzer harness: torch.save archives (zip + restricted unpickler). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return px_fuzz_one("pt", data, size); }
