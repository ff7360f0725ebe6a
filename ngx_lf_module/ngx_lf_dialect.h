
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _NGX_LF_DIALECT_H_INCLUDED_
#define _NGX_LF_DIALECT_H_INCLUDED_


#include "ngx_lf_record.h"
#include "ngx_lf_json.h"
#include "ngx_lf_sse.h"


/*
 * Extraction of one LLM call from the bytes of its request and its
 * (decoded) response, whatever pieces they come in.  One parser reads
 * one body; it fills the shared record.
 */

#define NGX_LF_PARAMS_MAX       65536
#define NGX_LF_RAW_MAX          16384


typedef struct ngx_lf_parser_s  ngx_lf_parser_t;


ngx_lf_dialect_e ngx_lf_dialect_from_path(const u_char *path, size_t len);
/* the model named in a Gemini URL path ("models/NAME:generateContent") */
size_t ngx_lf_dialect_path_model(const u_char *path, size_t len,
    const u_char **model);
ngx_lf_dialect_e ngx_lf_dialect_from_name(const u_char *name, size_t len);
/* the default trace name: "chat.completions", ... */
const char *ngx_lf_dialect_operation(ngx_lf_dialect_e dialect);

ngx_lf_parser_t *ngx_lf_request_parser_create(ngx_lf_record_t *rec);
ngx_lf_parser_t *ngx_lf_response_parser_create(ngx_lf_record_t *rec,
    int sse);

/* returns 0, or -1 once the body proved unparsable (already recorded) */
int ngx_lf_parser_feed(ngx_lf_parser_t *p, const u_char *data,
    size_t len);
/* the body ended (or was cut: what it held so far is kept) */
int ngx_lf_parser_finish(ngx_lf_parser_t *p);
void ngx_lf_parser_destroy(ngx_lf_parser_t *p);

/* why the parse failed, "" when it did not */
const char *ngx_lf_parser_error(ngx_lf_parser_t *p);


#endif /* _NGX_LF_DIALECT_H_INCLUDED_ */
