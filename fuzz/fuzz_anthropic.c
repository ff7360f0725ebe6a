
/*
 * Copyright (C) The nginx-langfuse authors
 */


/* the anthropic parser; a clear bit 0 of the first byte sniffs the shape */

#define FUZZ_DIALECT  NGX_LF_DIALECT_ANTHROPIC

#include "fuzz_dialect.c"
