
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_lf_module.h"


static ngx_int_t ngx_http_lf_trace_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_lf_ctx_cleanup(void *data);
static void ngx_http_lf_traceparent(ngx_http_request_t *r,
    ngx_http_lf_ctx_t *ctx);
static uint64_t ngx_http_lf_random(void);

static ngx_int_t ngx_http_lf_add_variables(ngx_conf_t *cf);
static void *ngx_http_lf_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_lf_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_lf_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_lf_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_lf_check_endpoint(ngx_str_t *base);
static ngx_http_lf_dest_t *ngx_http_lf_add_dest(ngx_conf_t *cf,
    ngx_http_lf_loc_conf_t *llcf);
static char *ngx_http_lf_metadata(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_lf_dialect(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_lf_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_lf_init_process(ngx_cycle_t *cycle);
static void ngx_http_lf_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_lf_protocols[] = {
    { ngx_string("otlp"), NGX_LF_PROTO_OTLP },
    { ngx_string("ingestion"), NGX_LF_PROTO_INGESTION },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_lf_commands[] = {

    { ngx_string("langfuse_trace"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, enable),
      NULL },

    { ngx_string("langfuse_endpoint"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, endpoint),
      NULL },

    { ngx_string("langfuse_public_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, public_key),
      NULL },

    { ngx_string("langfuse_secret_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_lf_secret_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("langfuse_secret_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_lf_secret_key_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("langfuse_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, ssl_verify),
      NULL },

    { ngx_string("langfuse_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, ssl_trusted_certificate),
      NULL },

    { ngx_string("langfuse_protocol"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, protocol),
      &ngx_http_lf_protocols },

    { ngx_string("langfuse_dialect"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_lf_dialect,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("langfuse_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, max_body_size),
      NULL },

    { ngx_string("langfuse_trace_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, trace_name),
      NULL },

    { ngx_string("langfuse_user_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, user_id),
      NULL },

    { ngx_string("langfuse_session_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, session_id),
      NULL },

    { ngx_string("langfuse_tags"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, tags),
      NULL },

    { ngx_string("langfuse_environment"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, environment),
      NULL },

    { ngx_string("langfuse_release"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_lf_loc_conf_t, release),
      NULL },

    { ngx_string("langfuse_metadata"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_lf_metadata,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("langfuse_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_lf_status,
      0,
      0,
      NULL },

    { ngx_string("langfuse_flush_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_lf_main_conf_t, flush_interval),
      NULL },

    { ngx_string("langfuse_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_lf_main_conf_t, connect_timeout),
      NULL },

    { ngx_string("langfuse_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_lf_main_conf_t, timeout),
      NULL },

    { ngx_string("langfuse_check_credentials"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_lf_main_conf_t, check_credentials),
      NULL },

    { ngx_string("langfuse_batch_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_lf_main_conf_t, batch_size),
      NULL },

    { ngx_string("langfuse_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_lf_main_conf_t, queue_size),
      NULL },

    { ngx_string("langfuse_retries"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_lf_main_conf_t, retries),
      NULL },

    { ngx_string("langfuse_spool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_lf_spool,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_lf_module_ctx = {
    ngx_http_lf_add_variables,             /* preconfiguration */
    ngx_http_lf_init,                      /* postconfiguration */

    ngx_http_lf_create_main_conf,          /* create main configuration */
    ngx_http_lf_init_main_conf,            /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_lf_create_loc_conf,           /* create location configuration */
    ngx_http_lf_merge_loc_conf             /* merge location configuration */
};


ngx_module_t  ngx_http_langfuse_module = {
    NGX_MODULE_V1,
    &ngx_http_lf_module_ctx,               /* module context */
    ngx_http_lf_commands,                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_lf_init_process,              /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_lf_exit_process,              /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_lf_trace_id_name = ngx_string("langfuse_trace_id");

static ngx_str_t  ngx_http_lf_zone_name = ngx_string("langfuse");

static uint64_t   ngx_http_lf_rng[2];


ngx_http_lf_ctx_t *
ngx_http_lf_get_ctx(ngx_http_request_t *r, ngx_uint_t create)
{
    size_t                   n;
    const u_char            *model;
    ngx_pool_cleanup_t      *cln;
    ngx_http_lf_ctx_t       *ctx;
    ngx_http_lf_loc_conf_t  *llcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_langfuse_module);

    if (ctx) {
        return ctx;
    }

    /*
     * an internal redirect (error_page) clears module contexts: the
     * one this request already has lives on in its pool cleanup
     */

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_lf_ctx_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_langfuse_module);
            return ctx;
        }
    }

    if (!create) {
        return NULL;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_langfuse_module);

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_lf_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_lf_ctx_t));

    ngx_lf_record_init(&ctx->rec, llcf->max_body_size);

    cln->handler = ngx_http_lf_ctx_cleanup;

    ctx->llcf = llcf;
    ctx->rec.dialect = llcf->dialect;

    if (ctx->rec.dialect == NGX_LF_DIALECT_AUTO) {
        ctx->rec.dialect = ngx_lf_dialect_from_path(r->uri.data, r->uri.len);
    }

    if (ctx->rec.dialect == NGX_LF_DIALECT_GEMINI) {
        /* Gemini names the model in the path, not in the body */
        n = ngx_lf_dialect_path_model(r->uri.data, r->uri.len, &model);
        (void) ngx_lf_buf_append(&ctx->rec.request_model, model, n);
    }

    ngx_http_lf_traceparent(r, ctx);

    if (ctx->trace_id[0] == '\0') {
        ngx_http_lf_random_hex(ctx->trace_id, 32);
    }

    ngx_http_lf_random_hex(ctx->span_id, 16);

    ngx_http_set_ctx(r, ctx, ngx_http_langfuse_module);

    return ctx;
}


ngx_http_lf_dest_t *
ngx_http_lf_find_dest(ngx_http_lf_main_conf_t *lmcf, uint32_t id)
{
    ngx_uint_t           i;
    ngx_http_lf_dest_t  *dest;

    dest = lmcf->dests.elts;

    for (i = 0; i < lmcf->dests.nelts; i++) {
        if (dest[i].id == id) {
            return &dest[i];
        }
    }

    return NULL;
}


static void
ngx_http_lf_ctx_cleanup(void *data)
{
    ngx_http_lf_ctx_t  *ctx = data;

    ngx_lf_parser_destroy(ctx->request_parser);
    ngx_lf_parser_destroy(ctx->response_parser);

    if (ctx->decoding) {
        ngx_lf_decode_free(&ctx->decode);
    }

    ngx_lf_record_free(&ctx->rec);
}


/* W3C trace context: "00-<32 hex trace>-<16 hex parent>-<2 hex flags>" */

static void
ngx_http_lf_traceparent(ngx_http_request_t *r, ngx_http_lf_ctx_t *ctx)
{
    u_char           *p;
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == 11
            && ngx_strncasecmp(h[i].key.data, (u_char *) "traceparent", 11)
               == 0)
        {
            break;
        }
    }

    p = h[i].value.data;

    /* version 00 is exactly 55 characters; later ones may add fields */
    if (h[i].value.len < 55 || p[2] != '-' || p[35] != '-' || p[52] != '-'
        || ngx_strncmp(p, "ff", 2) == 0
        || (ngx_strncmp(p, "00", 2) == 0 && h[i].value.len != 55)
        || (h[i].value.len > 55 && p[55] != '-'))
    {
        return;
    }

    for (n = 0; n < 55; n++) {
        if (n == 2 || n == 35 || n == 52) {
            continue;
        }

        if (!((p[n] >= '0' && p[n] <= '9') || (p[n] >= 'a' && p[n] <= 'f')))
        {
            return;
        }
    }

    /* all-zero ids are invalid */
    if (ngx_strncmp(p + 3, "00000000000000000000000000000000", 32) == 0
        || ngx_strncmp(p + 36, "0000000000000000", 16) == 0)
    {
        return;
    }

    ngx_memcpy(ctx->trace_id, p + 3, 32);
    ctx->trace_id[32] = '\0';
    ngx_memcpy(ctx->parent_id, p + 36, 16);
    ctx->parent_id[16] = '\0';
}


void
ngx_http_lf_random_hex(u_char *buf, size_t len)
{
    size_t    i;
    uint64_t  v;

    v = 0;

    for (i = 0; i < len; i++) {
        if (i % 16 == 0) {
            v = ngx_http_lf_random();
        }

        buf[i] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    }

    buf[len] = '\0';
}


/* xorshift128+: ids need to be unique, not secret */

static uint64_t
ngx_http_lf_random(void)
{
    uint64_t  a, b;

    a = ngx_http_lf_rng[0];
    b = ngx_http_lf_rng[1];

    ngx_http_lf_rng[0] = b;
    a ^= a << 23;
    ngx_http_lf_rng[1] = a ^ b ^ (a >> 17) ^ (b >> 26);

    return ngx_http_lf_rng[1] + b;
}


int64_t
ngx_http_lf_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


static ngx_int_t
ngx_http_lf_trace_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_lf_ctx_t       *ctx;
    ngx_http_lf_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_langfuse_module);

    ctx = ngx_http_lf_get_ctx(r->main, llcf->enable);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = 32;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = ctx->trace_id;

    return NGX_OK;
}


static ngx_int_t
ngx_http_lf_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_lf_trace_id_name,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_lf_trace_id_variable;

    return NGX_OK;
}


static void *
ngx_http_lf_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_lf_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_lf_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     lmcf->shm_zone = NULL;
     *     lmcf->sh = NULL;
     *     lmcf->shpool = NULL;
     */

    if (ngx_array_init(&lmcf->dests, cf->pool, 2,
                       sizeof(ngx_http_lf_dest_t))
        != NGX_OK)
    {
        return NULL;
    }

    lmcf->flush_interval = NGX_CONF_UNSET_MSEC;
    lmcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    lmcf->timeout = NGX_CONF_UNSET_MSEC;
    lmcf->check_credentials = NGX_CONF_UNSET;
    lmcf->batch_size = NGX_CONF_UNSET_UINT;
    lmcf->retries = NGX_CONF_UNSET_UINT;
    lmcf->queue_size = NGX_CONF_UNSET_SIZE;
    lmcf->spool = NGX_CONF_UNSET_PTR;

    return lmcf;
}


static char *
ngx_http_lf_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_lf_main_conf_t *lmcf = conf;

    ngx_conf_init_msec_value(lmcf->flush_interval, 1000);
    ngx_conf_init_msec_value(lmcf->connect_timeout, 5000);
    ngx_conf_init_msec_value(lmcf->timeout, 15000);
    ngx_conf_init_value(lmcf->check_credentials, 0);
    ngx_conf_init_uint_value(lmcf->batch_size, 100);
    ngx_conf_init_uint_value(lmcf->retries, 5);
    ngx_conf_init_size_value(lmcf->queue_size, 16 * 1024 * 1024);
    ngx_conf_init_ptr_value(lmcf->spool, NULL);

    if (lmcf->flush_interval == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_flush_interval\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (lmcf->connect_timeout == 0 || lmcf->timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_%stimeout\" must be positive",
                           lmcf->timeout ? "connect_" : "");
        return NGX_CONF_ERROR;
    }

    if (lmcf->connect_timeout > lmcf->timeout) {
        /* curl would give up at the total timeout anyway */
        lmcf->connect_timeout = lmcf->timeout;
    }

    if (lmcf->batch_size == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_batch_size\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (lmcf->retries > 20) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_retries\" of %ui is too many, "
                           "at most 20 are allowed", lmcf->retries);
        return NGX_CONF_ERROR;
    }

    if (lmcf->queue_size < 8 * ngx_pagesize) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_queue_size\" of %uz is too small, "
                           "at least %uz is needed",
                           lmcf->queue_size, 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_lf_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_lf_loc_conf_t  *llcf;

    llcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_lf_loc_conf_t));
    if (llcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     llcf->endpoint = { 0, NULL };
     *     llcf->public_key = { 0, NULL };
     *     llcf->secret_key = { 0, NULL };
     *     llcf->ssl_trusted_certificate = { 0, NULL };
     *     llcf->trace_name = NULL;
     *     llcf->user_id = NULL;
     *     llcf->session_id = NULL;
     *     llcf->tags = NULL;
     *     llcf->environment = NULL;
     *     llcf->release = NULL;
     *     llcf->metadata = NULL;
     *     llcf->dest = NULL;
     */

    llcf->enable = NGX_CONF_UNSET;
    llcf->ssl_verify = NGX_CONF_UNSET;
    llcf->protocol = NGX_CONF_UNSET_UINT;
    llcf->dialect = NGX_CONF_UNSET_UINT;
    llcf->max_body_size = NGX_CONF_UNSET_SIZE;

    return llcf;
}


static char *
ngx_http_lf_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_lf_loc_conf_t *prev = parent;
    ngx_http_lf_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_str_value(conf->endpoint, prev->endpoint, "");
    ngx_conf_merge_str_value(conf->public_key, prev->public_key, "");
    ngx_conf_merge_str_value(conf->secret_key, prev->secret_key, "");
    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate, "");
    ngx_conf_merge_value(conf->ssl_verify, prev->ssl_verify, 1);
    ngx_conf_merge_uint_value(conf->protocol, prev->protocol,
                              NGX_LF_PROTO_OTLP);
    ngx_conf_merge_uint_value(conf->dialect, prev->dialect,
                              NGX_LF_DIALECT_AUTO);
    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size,
                              1024 * 1024);

    if (conf->max_body_size < 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_max_body_size\" of %uz is too "
                           "small, at least 1k is needed",
                           conf->max_body_size);
        return NGX_CONF_ERROR;
    }

    if (conf->trace_name == NULL) {
        conf->trace_name = prev->trace_name;
    }

    if (conf->user_id == NULL) {
        conf->user_id = prev->user_id;
    }

    if (conf->session_id == NULL) {
        conf->session_id = prev->session_id;
    }

    if (conf->tags == NULL) {
        conf->tags = prev->tags;
    }

    if (conf->environment == NULL) {
        conf->environment = prev->environment;
    }

    if (conf->release == NULL) {
        conf->release = prev->release;
    }

    if (conf->metadata == NULL) {
        conf->metadata = prev->metadata;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    if (conf->endpoint.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_trace\" is on but "
                           "\"langfuse_endpoint\" is not set");
        return NGX_CONF_ERROR;
    }

    if (conf->public_key.len == 0 || conf->secret_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_trace\" is on but \"%s\" is not set",
                           conf->public_key.len ? "langfuse_secret_key"
                                                : "langfuse_public_key");
        return NGX_CONF_ERROR;
    }

    conf->dest = ngx_http_lf_add_dest(cf, conf);
    if (conf->dest == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Every distinct endpoint, key pair and protocol is one destination.
 * Its id, kept with each queued event, survives a reload as long as
 * the endpoint, the public key and the protocol stay.
 */

/* the paths are appended to it: it must end where a path may begin */

static ngx_int_t
ngx_http_lf_check_endpoint(ngx_str_t *base)
{
    u_char      *p, *host, *last;
    ngx_uint_t   port;

    host = ngx_strlchr(base->data, base->data + base->len, ':') + 3;
    last = base->data + base->len;

    for (p = base->data; p < last; p++) {
        if (*p <= ' ' || *p == '?' || *p == '#' || *p == 0x7f) {
            return NGX_ERROR;
        }
    }

    for (p = host; p < last && *p != '/'; p++) {
        if (*p == ':' && *host != '[') {
            break;
        }
    }

    if (p == host) {
        return NGX_ERROR;
    }

    if (p < last && *p == ':') {
        port = 0;

        for (p++; p < last && *p != '/'; p++) {
            if (*p < '0' || *p > '9') {
                return NGX_ERROR;
            }

            port = port * 10 + (*p - '0');

            if (port > 65535) {
                return NGX_ERROR;
            }
        }

        if (port == 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_http_lf_dest_t *
ngx_http_lf_add_dest(ngx_conf_t *cf, ngx_http_lf_loc_conf_t *llcf)
{
    u_char                   *p;
    size_t                    len;
    uint32_t                  crc;
    ngx_str_t                 plain, encoded, base, url;
    ngx_uint_t                i;
    const char               *path;
    ngx_http_lf_dest_t       *dest;
    ngx_http_lf_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_langfuse_module);

    base = llcf->endpoint;

    while (base.len && base.data[base.len - 1] == '/') {
        base.len--;
    }

    if (!(base.len > 7
          && ngx_strncasecmp(base.data, (u_char *) "http://", 7) == 0)
        && !(base.len > 8
             && ngx_strncasecmp(base.data, (u_char *) "https://", 8) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"langfuse_endpoint\" \"%V\": "
                           "an http:// or https:// URL is expected",
                           &llcf->endpoint);
        return NULL;
    }

    if (ngx_http_lf_check_endpoint(&base) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"langfuse_endpoint\" \"%V\": "
                           "a base URL without spaces, query or fragment, "
                           "with a port up to 65535, is expected",
                           &llcf->endpoint);
        return NULL;
    }

    path = llcf->protocol == NGX_LF_PROTO_OTLP
           ? "/api/public/otel/v1/traces" : "/api/public/ingestion";

    url.len = base.len + ngx_strlen(path);
    url.data = ngx_pnalloc(cf->pool, url.len + 1);
    if (url.data == NULL) {
        return NULL;
    }

    p = ngx_cpymem(url.data, base.data, base.len);
    p = ngx_cpymem(p, path, ngx_strlen(path));
    *p = '\0';

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, url.data, url.len);
    ngx_crc32_update(&crc, (u_char *) "\n", 1);
    ngx_crc32_update(&crc, llcf->public_key.data, llcf->public_key.len);
    ngx_crc32_final(crc);

    dest = lmcf->dests.elts;

    for (i = 0; i < lmcf->dests.nelts; i++) {
        if (dest[i].id != crc) {
            continue;
        }

        if (dest[i].url.len == url.len
            && ngx_strncmp(dest[i].url.data, url.data, url.len) == 0
            && dest[i].public_key.len == llcf->public_key.len
            && ngx_strncmp(dest[i].public_key.data, llcf->public_key.data,
                           llcf->public_key.len) == 0
            && dest[i].secret_key.len == llcf->secret_key.len
            && ngx_strncmp(dest[i].secret_key.data, llcf->secret_key.data,
                           llcf->secret_key.len) == 0)
        {
            if (dest[i].ssl_verify != llcf->ssl_verify
                || dest[i].ca_file.len != llcf->ssl_trusted_certificate.len
                || ngx_strncmp(dest[i].ca_file.data,
                               llcf->ssl_trusted_certificate.data,
                               dest[i].ca_file.len) != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "conflicting TLS settings for "
                                   "\"langfuse_endpoint\" \"%V\" with "
                                   "\"langfuse_public_key\" \"%V\"",
                                   &llcf->endpoint, &llcf->public_key);
                return NULL;
            }

            return &dest[i];
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_public_key\" \"%V\" is used with "
                           "two different secret keys for \"%V\"",
                           &llcf->public_key, &llcf->endpoint);
        return NULL;
    }

    dest = ngx_array_push(&lmcf->dests);
    if (dest == NULL) {
        return NULL;
    }

    dest->endpoint = base;
    dest->url = url;

    dest->projects_url.len = base.len + sizeof("/api/public/projects") - 1;
    dest->projects_url.data = ngx_pnalloc(cf->pool,
                                          dest->projects_url.len + 1);
    if (dest->projects_url.data == NULL) {
        return NULL;
    }

    ngx_sprintf(dest->projects_url.data, "%V/api/public/projects%Z", &base);
    dest->public_key = llcf->public_key;
    dest->secret_key = llcf->secret_key;
    dest->protocol = llcf->protocol;
    dest->ssl_verify = llcf->ssl_verify;
    dest->id = crc;

    if (llcf->ssl_trusted_certificate.len) {
        dest->ca_file = llcf->ssl_trusted_certificate;

        if (ngx_conf_full_name(cf->cycle, &dest->ca_file, 1) != NGX_OK) {
            return NULL;
        }

    } else {
        ngx_str_null(&dest->ca_file);
    }

    if (!dest->ssl_verify) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"langfuse_ssl_verify\" is off: traces to "
                           "\"%V\" go to whoever answers for that host",
                           &base);
    }

    plain.len = llcf->public_key.len + 1 + llcf->secret_key.len;
    plain.data = ngx_pnalloc(cf->pool, plain.len);
    if (plain.data == NULL) {
        return NULL;
    }

    p = ngx_cpymem(plain.data, llcf->public_key.data, llcf->public_key.len);
    *p++ = ':';
    ngx_memcpy(p, llcf->secret_key.data, llcf->secret_key.len);

    len = sizeof("Authorization: Basic ") - 1
          + ngx_base64_encoded_length(plain.len);

    dest->auth_header.data = ngx_http_lf_secret_alloc(cf, len + 1);
    if (dest->auth_header.data == NULL) {
        return NULL;
    }

    p = ngx_cpymem(dest->auth_header.data, "Authorization: Basic ",
                   sizeof("Authorization: Basic ") - 1);

    encoded.data = p;
    ngx_encode_base64(&encoded, &plain);

    p[encoded.len] = '\0';
    dest->auth_header.len = (p - dest->auth_header.data) + encoded.len;

    ngx_explicit_memzero(plain.data, plain.len);

    return dest;
}


static char *
ngx_http_lf_metadata(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_lf_loc_conf_t *llcf = conf;

    ngx_str_t                         *value;
    ngx_http_lf_meta_t                *meta;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (llcf->metadata == NULL) {
        llcf->metadata = ngx_array_create(cf->pool, 4,
                                          sizeof(ngx_http_lf_meta_t));
        if (llcf->metadata == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0 || value[1].len > 200) {
        return "has an empty or too long key";
    }

    meta = ngx_array_push(llcf->metadata);
    if (meta == NULL) {
        return NGX_CONF_ERROR;
    }

    meta->key = value[1];

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &meta->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_lf_dialect(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_lf_loc_conf_t *llcf = conf;

    ngx_str_t  *value;

    if (llcf->dialect != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    llcf->dialect = ngx_lf_dialect_from_name(value[1].data, value[1].len);

    if (llcf->dialect == NGX_LF_DIALECT_UNKNOWN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"langfuse_dialect\" \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_lf_init(ngx_conf_t *cf)
{
    ngx_http_lf_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_langfuse_module);

    if (lmcf->dests.nelts == 0) {
        /* no location traces: no filters, no zone, no cost */
        return NGX_OK;
    }

    lmcf->shm_zone = ngx_shared_memory_add(cf, &ngx_http_lf_zone_name,
                                           lmcf->queue_size,
                                           &ngx_http_langfuse_module);
    if (lmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    lmcf->shm_zone->init = ngx_http_lf_queue_init_zone;
    lmcf->shm_zone->data = lmcf;

    return ngx_http_lf_capture_init(cf);
}


static ngx_int_t
ngx_http_lf_init_process(ngx_cycle_t *cycle)
{
    ngx_fd_t                  fd;
    ngx_http_lf_main_conf_t  *lmcf;

    lmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_langfuse_module);

    if (lmcf == NULL || lmcf->dests.nelts == 0) {
        return NGX_OK;
    }

    ngx_http_lf_rng[0] = (uint64_t) ngx_pid << 32 ^ (uint64_t) ngx_time();
    ngx_http_lf_rng[1] = (uint64_t) ngx_current_msec * 0x9e3779b97f4a7c15;

    fd = ngx_open_file("/dev/urandom", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd != NGX_INVALID_FILE) {
        if (read(fd, ngx_http_lf_rng, sizeof(ngx_http_lf_rng))
            != (ssize_t) sizeof(ngx_http_lf_rng))
        {
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                          "langfuse: reading /dev/urandom failed, "
                          "trace ids are seeded from time and pid");
        }

        ngx_close_file(fd);
    }

    if (ngx_http_lf_rng[0] == 0 && ngx_http_lf_rng[1] == 0) {
        ngx_http_lf_rng[0] = 1;
    }

    return ngx_http_lf_export_init_process(cycle);
}


static void
ngx_http_lf_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_lf_export_exit_process(cycle);
}
