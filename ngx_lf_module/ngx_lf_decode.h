
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _NGX_LF_DECODE_H_INCLUDED_
#define _NGX_LF_DECODE_H_INCLUDED_


#include "ngx_lf_buf.h"


/*
 * Streaming Content-Encoding decoder for a copy of the response: the
 * client always gets the original bytes.  Output goes to a callback in
 * small pieces, so memory stays fixed whatever the compression ratio;
 * total output is capped at max_output (a bomb stops there).
 */

typedef enum {
    NGX_LF_ENC_IDENTITY = 0,
    NGX_LF_ENC_GZIP,
    NGX_LF_ENC_DEFLATE,        /* zlib-wrapped or raw, detected */
    NGX_LF_ENC_BR,
    NGX_LF_ENC_UNKNOWN
} ngx_lf_encoding_e;


typedef int (*ngx_lf_decode_out_pt)(void *ctx, const u_char *p, size_t n);


typedef struct {
    ngx_lf_encoding_e       encoding;
    ngx_lf_decode_out_pt    out;
    void                   *ctx;

    void                   *state;      /* z_stream or brotli state */
    size_t                  max_output;
    size_t                  produced;

    unsigned                started:1;
    unsigned                finished:1; /* end of compressed stream */
    unsigned                failed:1;   /* corrupt input */
    unsigned                capped:1;   /* max_output reached */
    unsigned                stopped:1;  /* input is ignored from now on */
} ngx_lf_decode_t;


/* maps a Content-Encoding value; empty or "identity" is IDENTITY */
ngx_lf_encoding_e ngx_lf_decode_encoding(const u_char *p, size_t len);

/*
 * max_output 0 means no cap; out gets at most 16 KiB a call and may be
 * NULL (then only "produced" counts).  An UNKNOWN encoding sets failed.
 * Returns 0 or -1 on memory exhaustion.
 */
int ngx_lf_decode_init(ngx_lf_decode_t *d, ngx_lf_encoding_e encoding,
    size_t max_output, ngx_lf_decode_out_pt out, void *ctx);
/*
 * returns 0 (more input welcome), 1 (stream ended or capped; further
 * input is ignored), -1 corrupt input (failed set), -2 out of memory,
 * or the callback's non-zero return (stopped set, later feeds return 1).
 * gzip sets finished at the end of each member but returns 0, as
 * another member may follow; bytes that are not one are ignored like
 * gzip(1) does (stopped set, 1 returned).
 */
int ngx_lf_decode_feed(ngx_lf_decode_t *d, const u_char *p, size_t n);
void ngx_lf_decode_free(ngx_lf_decode_t *d);


#endif /* _NGX_LF_DECODE_H_INCLUDED_ */
