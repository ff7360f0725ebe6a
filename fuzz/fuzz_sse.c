
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_lf_sse.h"
#include "fuzz_piece.h"


/*
 * The first input byte picks the caps and how the rest is cut into
 * pieces:
 *
 *   bits 0-1  max_event: 16, 256, 4096 or 65536
 *   bits 2-5  piece size 1..15, or 0: pseudo-random sizes 1..64
 *   bit 6     the handler stops after the third event
 *   bit 7     max_line is 24 rather than what init sets
 *
 * The stream is framed twice, in one piece and in pieces, and both must
 * give the same events: the split must never matter.
 */

typedef struct {
    uint64_t                hash;
    uint64_t                events;
    size_t                  max_event;
    size_t                  max_line;
    int                     stop;
} fuzz_log_t;


static void
fuzz_hash(uint64_t *h, const u_char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        *h = (*h ^ p[i]) * 0x100000001b3ULL;
    }

    /* the length too, so that "ab"+"c" differs from "a"+"bc" */
    *h = (*h ^ n) * 0x100000001b3ULL;
}


static int
fuzz_handler(void *ctx, const u_char *event, size_t event_len,
    const u_char *data, size_t data_len, int data_truncated)
{
    u_char       t;
    fuzz_log_t  *log;

    log = ctx;

    if (event == NULL || data == NULL || data_len > log->max_event
        || event_len > log->max_line)
    {
        abort();
    }

    /* touch every byte, so that ASan sees a bad pointer */
    fuzz_hash(&log->hash, event, event_len);
    fuzz_hash(&log->hash, data, data_len);

    t = (u_char) data_truncated;
    fuzz_hash(&log->hash, &t, 1);

    log->events++;

    return (log->stop && log->events >= 3) ? 1 : 0;
}


static void
fuzz_frame(const uint8_t *data, size_t size, uint8_t sel, int whole,
    fuzz_log_t *log, uint64_t *oversized, int *finish)
{
    size_t         n, off, max_event;
    uint32_t       x;
    ngx_lf_sse_t   s;

    static const size_t  caps[4] = { 16, 256, 4096, 65536 };

    max_event = caps[sel & 3];

    memset(log, 0, sizeof(fuzz_log_t));
    log->hash = 0xcbf29ce484222325ULL;
    log->max_event = max_event;
    log->stop = (sel >> 6) & 1;

    ngx_lf_sse_init(&s, max_event, fuzz_handler, log);

    if (sel & 0x80) {
        s.max_line = 24;
    }

    log->max_line = s.max_line;

    x = sel;
    off = 0;

    while (off < size) {
        n = fuzz_piece(sel, whole, &x, size - off, 64);

        if (ngx_lf_sse_feed(&s, data + off, n) == -1) {
            /* malloc failure under the fuzzer's rss limit */
            abort();
        }

        off += n;

        /* memory stays bounded whatever the input */
        if (s.line.size > s.max_line || s.data.size > max_event
            || s.event.size > s.max_line)
        {
            abort();
        }
    }

    *finish = ngx_lf_sse_finish(&s);
    *oversized = s.oversized;

    if (s.events != log->events) {
        abort();
    }

    ngx_lf_sse_free(&s);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int         f1, f2;
    uint8_t     sel;
    uint64_t    o1, o2;
    fuzz_log_t  l1, l2;

    if (size == 0) {
        return 0;
    }

    sel = data[0];
    data++;
    size--;

    fuzz_frame(data, size, sel, 1, &l1, &o1, &f1);
    fuzz_frame(data, size, sel, 0, &l2, &o2, &f2);

    if (l1.hash != l2.hash || l1.events != l2.events || o1 != o2
        || f1 != f2)
    {
        abort();
    }

    return 0;
}
