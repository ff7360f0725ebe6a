
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_lf_module.h"


/*
 * The filters only look: every buffer goes on to the next filter as it
 * came, whatever happens to the copy that is parsed here.
 */


static ngx_int_t ngx_http_lf_request_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_lf_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_lf_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_lf_response_feed(ngx_http_request_t *r,
    ngx_http_lf_ctx_t *ctx, u_char *p, size_t len);
static int ngx_http_lf_decoded(void *data, const u_char *p, size_t len);
static ngx_int_t ngx_http_lf_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_lf_queue_record(ngx_http_request_t *r,
    ngx_http_lf_ctx_t *ctx);
static void ngx_http_lf_value(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_lf_str_t *out);
static ngx_uint_t ngx_http_lf_log_allowed(void);
static void ngx_http_lf_parse_failed(ngx_http_request_t *r,
    ngx_lf_parser_t *parser, const char *what);


static ngx_http_request_body_filter_pt   ngx_http_next_request_body_filter;
static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_int_t
ngx_http_lf_request_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t               *b;
    ngx_chain_t             *cl;
    ngx_http_lf_ctx_t       *ctx;
    ngx_http_lf_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_langfuse_module);

    if (!llcf->enable || r != r->main) {
        return ngx_http_next_request_body_filter(r, in);
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "langfuse request body filter");

    ctx = ngx_http_lf_get_ctx(r, 1);

    if (ctx == NULL || ctx->request_done) {
        return ngx_http_next_request_body_filter(r, in);
    }

    if (ctx->request_parser == NULL) {
        ctx->request_parser = ngx_lf_request_parser_create(&ctx->rec);

        if (ctx->request_parser == NULL) {
            ctx->request_done = 1;
            return ngx_http_next_request_body_filter(r, in);
        }
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            (void) ngx_lf_parser_feed(ctx->request_parser, b->pos,
                                      b->last - b->pos);
        }

        if (b->last_buf) {
            ctx->request_done = 1;

            if (ngx_lf_parser_finish(ctx->request_parser) != 0) {
                ngx_http_lf_parse_failed(r, ctx->request_parser,
                                         "request");
            }

            break;
        }
    }

    return ngx_http_next_request_body_filter(r, in);
}


static ngx_int_t
ngx_http_lf_header_filter(ngx_http_request_t *r)
{
    ngx_str_t               *type;
    ngx_table_elt_t         *ce;
    ngx_lf_encoding_e        encoding;
    ngx_http_lf_ctx_t       *ctx;
    ngx_http_lf_loc_conf_t  *llcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_langfuse_module);

    /*
     * a traced call redirected into an untraced location (error_page)
     * stays traced: its context lives on in the request's pool
     */

    if (!llcf->enable && !r->internal) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_lf_get_ctx(r, llcf->enable);

    if (ctx == NULL || ctx->response_started) {
        return ngx_http_next_header_filter(r);
    }

    llcf = ctx->llcf;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "langfuse header filter, status %ui",
                   r->headers_out.status);

    ctx->response_started = 1;

    if (r->header_only || r->method == NGX_HTTP_HEAD) {
        /* no body will come, and no answer to trace */
        ctx->response_done = 1;
        ctx->rec.output_unknown = 1;
        return ngx_http_next_header_filter(r);
    }

    encoding = NGX_LF_ENC_IDENTITY;
    ce = r->headers_out.content_encoding;

    if (ce && ce->hash) {
        encoding = ngx_lf_decode_encoding(ce->value.data, ce->value.len);
    }

    if (encoding == NGX_LF_ENC_UNKNOWN) {
        if (ngx_http_lf_log_allowed()) {
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "langfuse: response content encoding \"%V\" "
                          "is not supported, the output is not captured",
                          &ce->value);
        }

        ctx->body_off = 1;
        ctx->rec.output_unknown = 1;
        return ngx_http_next_header_filter(r);
    }

    type = &r->headers_out.content_type;

    ctx->response_parser = ngx_lf_response_parser_create(&ctx->rec,
                               type->len >= 17
                               && ngx_strncasecmp(type->data,
                                      (u_char *) "text/event-stream", 17)
                                  == 0);

    if (ctx->response_parser == NULL) {
        ctx->body_off = 1;
        return ngx_http_next_header_filter(r);
    }

    if (encoding != NGX_LF_ENC_IDENTITY) {
        if (ngx_lf_decode_init(&ctx->decode, encoding,
                               64 * llcf->max_body_size,
                               ngx_http_lf_decoded, ctx)
            != 0)
        {
            ctx->body_off = 1;
            return ngx_http_next_header_filter(r);
        }

        ctx->decoding = 1;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "langfuse capture of trace %s: \"%V\", encoding %d",
                   ctx->trace_id, type, (int) encoding);

    /* the parser needs the bytes of file buffers too */
    r->filter_need_in_memory = 1;

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_lf_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t          *b;
    ngx_chain_t        *cl;
    ngx_http_lf_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_langfuse_module);

    if (ctx == NULL || !ctx->response_started || ctx->response_done) {
        return ngx_http_next_body_filter(r, in);
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "langfuse body filter");

    /* the end is watched even when the body itself is not parsed */

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos && !ctx->body_off
            && ctx->response_parser)
        {
            ngx_http_lf_response_feed(r, ctx, b->pos, b->last - b->pos);
        }

        if (b->last_buf) {
            ctx->response_done = 1;
            break;
        }
    }

    return ngx_http_next_body_filter(r, in);
}


static void
ngx_http_lf_response_feed(ngx_http_request_t *r, ngx_http_lf_ctx_t *ctx,
    u_char *p, size_t len)
{
    int  rc;

    if (ctx->first_byte_ms == 0) {
        ctx->first_byte_ms = ngx_http_lf_now_ms();
    }

    if (ctx->decoding) {
        rc = ngx_lf_decode_feed(&ctx->decode, p, len);

        if (rc < 0) {
            if (ngx_http_lf_log_allowed()) {
                ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                              "langfuse: response body does not decode, "
                              "the rest of the output is not captured");
            }

            ctx->body_off = 1;
            ctx->decode_failed = 1;
            ctx->rec.output_unknown = 1;
        }

    } else {
        (void) ngx_lf_parser_feed(ctx->response_parser, p, len);
    }

    if (ctx->rec.content_seen && ctx->first_token_ms == 0) {
        ctx->first_token_ms = ngx_http_lf_now_ms();
    }
}


static int
ngx_http_lf_decoded(void *data, const u_char *p, size_t len)
{
    ngx_http_lf_ctx_t  *ctx = data;

    (void) ngx_lf_parser_feed(ctx->response_parser, p, len);

    return 0;
}


static ngx_int_t
ngx_http_lf_log_handler(ngx_http_request_t *r)
{
    uint32_t                  id;
    ngx_http_lf_ctx_t        *ctx;
    ngx_http_lf_loc_conf_t   *llcf;
    ngx_http_lf_main_conf_t  *lmcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_langfuse_module);

    if (!llcf->enable && !r->internal) {
        return NGX_OK;
    }

    ctx = ngx_http_lf_get_ctx(r, 0);

    if (ctx == NULL || ctx->logged) {
        return NGX_OK;
    }

    llcf = ctx->llcf;

    ctx->logged = 1;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_langfuse_module);

    if (ctx->request_parser && !ctx->request_done) {
        /* the client went away before its body ended */
        (void) ngx_lf_parser_finish(ctx->request_parser);
    }

    if (ctx->response_parser
        && ngx_lf_parser_finish(ctx->response_parser)
           != 0)
    {
        ngx_http_lf_parse_failed(r, ctx->response_parser, "response");
    }

    id = llcf->dest->id;

    if (ctx->rec.request_error) {
        ngx_http_lf_stat(lmcf, id, parse_errors_request, 1);
    }

    if (ctx->rec.response_error || ctx->decode_failed) {
        ngx_http_lf_stat(lmcf, id, parse_errors_response, 1);
    }

    if (ctx->rec.dialect == NGX_LF_DIALECT_UNKNOWN) {
        /*
         * neither the path nor the answer's shape tell an LLM call
         * (a model list, a health check): nothing to trace
         */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "langfuse: not an LLM call");
        return NGX_OK;
    }

    ngx_http_lf_stat(lmcf, id, captured, 1);

    if (ngx_http_lf_queue_record(r, ctx) != NGX_OK) {
        ngx_http_lf_stat(lmcf, id, dropped_serialize, 1);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_lf_queue_record(ngx_http_request_t *r, ngx_http_lf_ctx_t *ctx)
{
    size_t                    len;
    yajl_gen                  g;
    ngx_int_t                 rc;
    ngx_uint_t                i, attempt;
    ngx_lf_kv_t              *kv;
    ngx_lf_span_t             span;
    const u_char             *text;
    ngx_http_lf_meta_t       *meta;
    ngx_http_lf_loc_conf_t   *llcf;
    ngx_http_lf_main_conf_t  *lmcf;

    llcf = ctx->llcf;
    lmcf = ngx_http_get_module_main_conf(r, ngx_http_langfuse_module);

    ngx_memzero(&span, sizeof(ngx_lf_span_t));

    ngx_memcpy(span.trace_id, ctx->trace_id, sizeof(span.trace_id));
    ngx_memcpy(span.span_id, ctx->span_id, sizeof(span.span_id));
    ngx_memcpy(span.parent_id, ctx->parent_id, sizeof(span.parent_id));

    if (llcf->dest->protocol == NGX_LF_PROTO_INGESTION) {
        for (i = 0; i < 2; i++) {
            ngx_http_lf_random_hex((u_char *) span.event_id[i], 32);

            /* the shape of a version 4 UUID */
            ngx_memmove(span.event_id[i] + 24, span.event_id[i] + 20, 12);
            ngx_memmove(span.event_id[i] + 19, span.event_id[i] + 16, 4);
            ngx_memmove(span.event_id[i] + 14, span.event_id[i] + 12, 4);
            ngx_memmove(span.event_id[i] + 9, span.event_id[i] + 8, 4);
            span.event_id[i][8] = '-';
            span.event_id[i][13] = '-';
            span.event_id[i][14] = '4';
            span.event_id[i][18] = '-';
            span.event_id[i][19] = "89ab"[span.event_id[i][19] & 3];
            span.event_id[i][23] = '-';
            span.event_id[i][36] = '\0';
        }
    }

    span.start_ms = (int64_t) r->start_sec * 1000 + r->start_msec;
    span.end_ms = ngx_http_lf_now_ms();
    span.first_ms = ctx->first_token_ms ? ctx->first_token_ms
                                        : ctx->first_byte_ms;

    if (ctx->rec.response_sse && ctx->first_token_ms == 0) {
        /* a stream without a single token has no completion start */
        span.first_ms = 0;
    }

    span.status = r->headers_out.status;

    /* a stream is whole when it said so: [DONE] or a finish reason */
    span.complete = ctx->response_done
                    && (!ctx->rec.response_sse || ctx->rec.stream_done
                        || ctx->rec.finish_reason.len
                        || ctx->rec.error_event);

    ngx_http_lf_value(r, llcf->trace_name, &span.name);

    if (span.name.len == 0) {
        span.name.data = (u_char *) ngx_lf_dialect_operation(ctx->rec.dialect);
        span.name.len = ngx_strlen(span.name.data);
    }

    ngx_http_lf_value(r, llcf->user_id, &span.user);

    if (span.user.len == 0) {
        span.user.data = ctx->rec.user.data;
        span.user.len = ctx->rec.user.len;
    }

    ngx_http_lf_value(r, llcf->session_id, &span.session);
    ngx_http_lf_value(r, llcf->tags, &span.tags);
    ngx_http_lf_value(r, llcf->environment, &span.environment);
    ngx_http_lf_value(r, llcf->release, &span.release);

    span.method.data = r->method_name.data;
    span.method.len = r->method_name.len;
    span.uri.data = r->uri.data;
    span.uri.len = r->uri.len;

    if (llcf->metadata) {
        kv = ngx_pcalloc(r->pool, llcf->metadata->nelts * sizeof(ngx_lf_kv_t));
        if (kv == NULL) {
            return NGX_ERROR;
        }

        meta = llcf->metadata->elts;

        for (i = 0; i < llcf->metadata->nelts; i++) {
            kv[i].key.data = meta[i].key.data;
            kv[i].key.len = meta[i].key.len;
            ngx_http_lf_value(r, &meta[i].value, &kv[i].value);
        }

        span.metadata = kv;
        span.nmetadata = llcf->metadata->nelts;
    }

    /*
     * an event over the limit is written again with its texts cut,
     * shorter each time; usage and the rest stay whole
     */

    for (attempt = 0; /* void */ ; attempt++) {
        g = yajl_gen_alloc(NULL);
        if (g == NULL) {
            return NGX_ERROR;
        }

        if (ngx_lf_event_write(g, llcf->dest->protocol, &ctx->rec, &span)
            != 0
            || ngx_lf_event_text(g, llcf->dest->protocol, &text, &len)
               != 0)
        {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "langfuse: writing the event failed");
            yajl_gen_free(g);
            return NGX_ERROR;
        }

        if (len <= NGX_HTTP_LF_EVENT_MAX || attempt == 4) {
            break;
        }

        yajl_gen_free(g);

        ngx_lf_record_trim(&ctx->rec, NGX_HTTP_LF_EVENT_MAX >> (2 + attempt));
    }

    rc = ngx_http_lf_queue_push(lmcf, llcf->dest->id, text, len,
                                r->connection->log);

    yajl_gen_free(g);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "langfuse queued trace %s, rc %i", ctx->trace_id, rc);

    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


static void
ngx_http_lf_value(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    ngx_lf_str_t *out)
{
    ngx_str_t  value;

    out->data = NULL;
    out->len = 0;

    if (cv == NULL) {
        return;
    }

    if (ngx_http_complex_value(r, cv, &value) != NGX_OK) {
        return;
    }

    out->data = value.data;
    out->len = value.len;
}


/* one notice a second per worker: a broken upstream must not flood */

static ngx_uint_t
ngx_http_lf_log_allowed(void)
{
    static time_t  logged;

    if (logged == ngx_time()) {
        return 0;
    }

    logged = ngx_time();

    return 1;
}


static void
ngx_http_lf_parse_failed(ngx_http_request_t *r, ngx_lf_parser_t *parser,
    const char *what)
{
    if (!ngx_http_lf_log_allowed()) {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "langfuse: %s body of \"%V\" is not an LLM API body "
                  "(%s), kept as text", what, &r->uri,
                  ngx_lf_parser_error(parser));
}


ngx_int_t
ngx_http_lf_capture_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_lf_log_handler;

    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_lf_request_body_filter;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_lf_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_lf_body_filter;

    return NGX_OK;
}
