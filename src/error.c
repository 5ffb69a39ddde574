#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char px_err_msg[1024];

const char *px_last_error(void) { return px_err_msg; }

void px_clear_error(void) { px_err_msg[0] = 0; }

int px_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(px_err_msg, sizeof px_err_msg, fmt, ap);
  va_end(ap);
  /* One line: a message never carries a newline. */
  for (char *p = px_err_msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  return code;
}
