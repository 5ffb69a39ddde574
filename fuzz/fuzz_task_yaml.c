/* libFuzzer harness: PXDesign YAML task files (src/io/yaml.c + src/io/task.c). */
#include "fuzz_task_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_task(data, size, 0); }
