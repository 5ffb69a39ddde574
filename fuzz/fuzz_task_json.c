/* libFuzzer harness: PXDesign JSON task lists (src/io/json.c + src/io/task.c). */
#include "fuzz_task_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_task(data, size, 1); }
