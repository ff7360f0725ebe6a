
/*
 * Copyright (C) The nginx-langfuse authors
 */


/* the gemini parser; a clear bit 0 of the first byte sniffs the shape */

#define FUZZ_DIALECT  NGX_LF_DIALECT_GEMINI

#include "fuzz_dialect.c"
