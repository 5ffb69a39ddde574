/* The `sample` command (cmd_sample.c). */
#ifndef PX_CLI_CMD_SAMPLE_H
#define PX_CLI_CMD_SAMPLE_H

#include "pxdiff.h"

int cmd_sample(int argc, char **argv);
/* The model's precision for messages: "tf32", or at fp16 / bf16 "fp16, 16-bit GEMM inputs
 * in 24/24 token blocks" (blocks that fp16's range cannot hold run TF32). Static buffer. */
const char *cmd_precision_label(const px_model *m);

#endif
