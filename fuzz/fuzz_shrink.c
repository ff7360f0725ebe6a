
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "ngx_lf_event.h"


/*
 * The first input byte picks the cap (16 times it, plus one); the rest
 * is an event text.  Whatever the text, a cut event must come out as
 * valid JSON, never longer than the text plus one note per cut, and the
 * envelopes found in it must lie inside it, in order, with their ids.
 */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 cut, n;
    size_t              cap, len;
    yajl_gen            g;
    yajl_handle         h;
    const u_char       *text;
    ngx_lf_envelope_t   env[2];

    if (size < 1) {
        return 0;
    }

    n = ngx_lf_event_envelopes(data + 1, size - 1, env);

    if (n < 0 || n > 2
        || (n >= 1 && (env[0].data != data + 1
                       || env[0].len > size - 1
                       || env[0].id != env[0].data + 7))
        || (n == 2 && (env[1].data != env[0].data + env[0].len + 1
                       || env[1].data + env[1].len != data + size
                       || env[1].id != env[1].data + 7)))
    {
        abort();
    }

    cap = (size_t) data[0] * 16 + 1;

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return 0;
    }

    cut = ngx_lf_event_shrink(g, data + 1, size - 1, cap);

    if (cut > 0 && yajl_gen_get_buf(g, &text, &len) == yajl_gen_status_ok) {
        h = yajl_alloc(NULL, NULL, NULL);

        if (h == NULL) {
            abort();
        }

        if (yajl_parse(h, text, len) != yajl_status_ok
            || yajl_complete_parse(h) != yajl_status_ok)
        {
            /* a cut event that is not JSON */
            abort();
        }

        yajl_free(h);
    }

    yajl_gen_free(g);

    return 0;
}
