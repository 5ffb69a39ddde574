/* libFuzzer harness: safetensors files (header JSON, offsets). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return px_fuzz_one("st", data, size);
}
