/* Thread-local last-error message (px_last_error in pxdiff.h). */
#ifndef PX_ERROR_H
#define PX_ERROR_H

#include "pxdiff.h"

/* Format a one-line message into the thread's error slot; returns `code` so callers
 * can write `return px_fail(PX_ERR_INPUT, "...")`. */
int px_fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void px_clear_error(void);

#endif
