
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _FUZZ_PIECE_H_INCLUDED_
#define _FUZZ_PIECE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * The size of the next piece a fuzz target feeds: the whole rest, a
 * fixed size from bits 2-5 of the selector, or pseudo-random sizes up
 * to spread drawn from *x (seeded with the selector).
 */

static inline size_t
fuzz_piece(unsigned sel, int whole, uint32_t *x, size_t left, size_t spread)
{
    size_t  n;

    if (whole) {
        n = left;

    } else if ((sel >> 2) & 0x0f) {
        n = (sel >> 2) & 0x0f;

    } else {
        *x = *x * 1103515245 + 12345;
        n = 1 + (*x >> 16) % spread;
    }

    return n < left ? n : left;
}


#endif /* _FUZZ_PIECE_H_INCLUDED_ */
