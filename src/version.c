/* The library's version, as compiled (the header's macros may come from another release). */
#include "pxdiff.h"

const char *px_version(void) { return PXDIFF_VERSION; }
int px_version_number(void) { return PXDIFF_VERSION_NUMBER; }
