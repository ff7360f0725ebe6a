
/*
 * Copyright (C) The nginx-langfuse authors
 */


/* the embeddings parser; a clear bit 0 of the first byte sniffs the shape */

#define FUZZ_DIALECT  NGX_LF_DIALECT_OPENAI_EMBEDDINGS

#include "fuzz_dialect.c"
