
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _NGX_LF_BUF_H_INCLUDED_
#define _NGX_LF_BUF_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


/*
 * A growable byte string with a hard cap.  The parsers are plain C so
 * that unit tests and fuzzers run them without nginx; their memory is
 * released by the owner (a pool cleanup inside nginx).
 */

typedef struct {
    u_char    *data;
    size_t     len;
    size_t     size;
    size_t     max;            /* cap on len, 0 means no cap */
    unsigned   truncated:1;    /* bytes were dropped at the cap */
} ngx_lf_buf_t;


void ngx_lf_buf_init(ngx_lf_buf_t *b, size_t max);
/* returns 0, or -1 when memory is exhausted; bytes past max are dropped */
int ngx_lf_buf_append(ngx_lf_buf_t *b, const u_char *p, size_t n);
int ngx_lf_buf_set(ngx_lf_buf_t *b, const u_char *p, size_t n);
void ngx_lf_buf_reset(ngx_lf_buf_t *b);
void ngx_lf_buf_free(ngx_lf_buf_t *b);

/*
 * Copies len bytes to out replacing each invalid UTF-8 sequence with
 * U+FFFD; a sequence cut at the end is dropped.  out must hold 3 * len
 * bytes.  Returns the output length.
 */
size_t ngx_lf_utf8_sanitize(u_char *out, const u_char *p, size_t len);


#endif /* _NGX_LF_BUF_H_INCLUDED_ */
