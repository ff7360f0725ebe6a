
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_lf_module.h"
#include "ngx_lf_json.h"


/*
 * "langfuse_status": the counters of every destination and the queue,
 * as JSON or (with ?format=prometheus) as Prometheus text.  Nothing
 * secret is shown: endpoints and public keys only.
 */

/*
 * The page's size: the queue and spool part, then per destination at
 * most this many lines, each with its labels escaped (twice their size
 * at most) and a metric name and value
 */
#define NGX_HTTP_LF_STATUS_BASE         4096
#define NGX_HTTP_LF_STATUS_LINES        64
#define NGX_HTTP_LF_STATUS_LINE         128


typedef struct {
    const char                 *name;
    const char                 *label;      /* Prometheus label value */
    size_t                      offset;
} ngx_http_lf_counter_t;


static ngx_int_t ngx_http_lf_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_lf_status_json(ngx_http_request_t *r,
    ngx_http_lf_main_conf_t *lmcf, ngx_http_lf_shctx_t *snap,
    ngx_buf_t *b);
static ngx_int_t ngx_http_lf_status_prometheus(ngx_http_request_t *r,
    ngx_http_lf_main_conf_t *lmcf, ngx_http_lf_shctx_t *snap,
    ngx_buf_t *b);
static unsigned ngx_http_lf_status_key(yajl_gen g, const char *key);
static unsigned ngx_http_lf_status_string(yajl_gen g, u_char *p,
    size_t len);
static u_char *ngx_http_lf_status_labels(u_char *p, u_char *last,
    ngx_http_lf_dest_t *dest, uint32_t id);


#define ngx_http_lf_counter(name, label, field)                             \
    { name, label, offsetof(ngx_http_lf_stats_t, field) }

static ngx_http_lf_counter_t  ngx_http_lf_event_counters[] = {
    ngx_http_lf_counter("captured", "captured", captured),
    ngx_http_lf_counter("queued", "queued", queued),
    ngx_http_lf_counter("sent", "sent", sent),
    ngx_http_lf_counter("retried", "retried", retried),
    ngx_http_lf_counter("rejected", "rejected", rejected),
    ngx_http_lf_counter("failed", "failed", failed),
    ngx_http_lf_counter("spooled", "spooled", spooled),
    ngx_http_lf_counter("replayed", "replayed", replayed),
    { NULL, NULL, 0 }
};


static ngx_http_lf_counter_t  ngx_http_lf_drop_counters[] = {
    ngx_http_lf_counter("queue_full", "queue_full", dropped_queue_full),
    ngx_http_lf_counter("too_large", "too_large", dropped_too_large),
    ngx_http_lf_counter("no_destination", "no_destination",
                        dropped_no_destination),
    ngx_http_lf_counter("serialize", "serialize", dropped_serialize),
    ngx_http_lf_counter("spool_full", "spool_full", dropped_spool_full),
    ngx_http_lf_counter("spool_error", "spool_error", dropped_spool_error),
    { NULL, NULL, 0 }
};


static ngx_http_lf_counter_t  ngx_http_lf_parse_counters[] = {
    ngx_http_lf_counter("request", "request", parse_errors_request),
    ngx_http_lf_counter("response", "response", parse_errors_response),
    { NULL, NULL, 0 }
};


static ngx_http_lf_counter_t  ngx_http_lf_error_counters[] = {
    ngx_http_lf_counter("network", "network", errors_network),
    ngx_http_lf_counter("http_3xx", "http_3xx", errors_http_3xx),
    ngx_http_lf_counter("http_429", "http_429", errors_http_429),
    ngx_http_lf_counter("http_4xx", "http_4xx", errors_http_4xx),
    ngx_http_lf_counter("http_5xx", "http_5xx", errors_http_5xx),
    { NULL, NULL, 0 }
};


/* named by the status they count, the last one for all others */
static ngx_http_lf_counter_t  ngx_http_lf_status_counters[] = {
    ngx_http_lf_counter("400", "400", errors_status[0]),
    ngx_http_lf_counter("401", "401", errors_status[1]),
    ngx_http_lf_counter("403", "403", errors_status[2]),
    ngx_http_lf_counter("404", "404", errors_status[3]),
    ngx_http_lf_counter("408", "408", errors_status[4]),
    ngx_http_lf_counter("413", "413", errors_status[5]),
    ngx_http_lf_counter("429", "429", errors_status[6]),
    ngx_http_lf_counter("500", "500", errors_status[7]),
    ngx_http_lf_counter("502", "502", errors_status[8]),
    ngx_http_lf_counter("503", "503", errors_status[9]),
    ngx_http_lf_counter("504", "504", errors_status[10]),
    ngx_http_lf_counter("other", "other", errors_status[11]),
    { NULL, NULL, 0 }
};


static ngx_http_lf_counter_t  ngx_http_lf_batch_counters[] = {
    ngx_http_lf_counter("sent", "sent", batches_sent),
    ngx_http_lf_counter("failed", "failed", batches_failed),
    { NULL, NULL, 0 }
};


size_t
ngx_http_lf_status_counter(long status)
{
    ngx_http_lf_counter_t  *c;

    for (c = ngx_http_lf_status_counters; c[1].name; c++) {
        if (ngx_atoi((u_char *) c->name, 3) == status) {
            break;
        }
    }

    return c->offset;
}


char *
ngx_http_lf_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_lf_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_lf_status_handler(ngx_http_request_t *r)
{
    size_t                    size;
    ngx_int_t                 rc;
    ngx_str_t                 format;
    ngx_buf_t                *b;
    ngx_uint_t                i;
    ngx_chain_t               out;
    ngx_http_lf_dest_t       *dest;
    ngx_http_lf_shctx_t      *snap;
    ngx_http_lf_main_conf_t  *lmcf;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_langfuse_module);

    /* a copy taken under the lock, formatted without it */

    snap = ngx_pcalloc(r->pool, sizeof(ngx_http_lf_shctx_t));
    if (snap == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (lmcf->sh) {
        ngx_shmtx_lock(&lmcf->shpool->mutex);
        ngx_memcpy(snap, lmcf->sh, sizeof(ngx_http_lf_shctx_t));
        ngx_shmtx_unlock(&lmcf->shpool->mutex);

        ngx_http_lf_in_flight_prune(snap);
    }

    size = NGX_HTTP_LF_STATUS_BASE;
    dest = lmcf->dests.elts;

    for (i = 0; i < lmcf->dests.nelts; i++) {
        size += NGX_HTTP_LF_STATUS_LINES
                * (NGX_HTTP_LF_STATUS_LINE
                   + 2 * (dest[i].url.len + dest[i].public_key.len));
    }

    /* counters of destinations that a reload removed are shown too */
    size += (NGX_HTTP_LF_MAX_DESTS - ngx_min(lmcf->dests.nelts,
                                             NGX_HTTP_LF_MAX_DESTS))
            * NGX_HTTP_LF_STATUS_LINES * NGX_HTTP_LF_STATUS_LINE;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK
        && format.len == 10
        && ngx_strncmp(format.data, "prometheus", 10) == 0)
    {
        rc = ngx_http_lf_status_prometheus(r, lmcf, snap, b);
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4");

    } else {
        rc = ngx_http_lf_status_json(r, lmcf, snap, b);
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_lf_status_json(ngx_http_request_t *r,
    ngx_http_lf_main_conf_t *lmcf, ngx_http_lf_shctx_t *snap, ngx_buf_t *b)
{
    size_t                  len;
    yajl_gen                g;
    ngx_int_t               rc;
    unsigned                gs;
    ngx_uint_t              i, k, n;
    const u_char           *text;
    ngx_http_lf_dest_t     *dest;
    ngx_http_lf_stats_t    *st;
    ngx_http_lf_counter_t  *c;

    static const char  *groups[] = { "dropped", "parse_errors", "errors",
                                     "errors_by_status", "batches" };
    ngx_http_lf_counter_t  *lists[] = { ngx_http_lf_drop_counters,
                                        ngx_http_lf_parse_counters,
                                        ngx_http_lf_error_counters,
                                        ngx_http_lf_status_counters,
                                        ngx_http_lf_batch_counters };

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return NGX_ERROR;
    }

    gs = yajl_gen_map_open(g);

    gs |= ngx_http_lf_status_key(g, "version");
    gs |= ngx_http_lf_status_key(g, NGX_LF_VERSION);

    gs |= ngx_http_lf_status_key(g, "queue");
    gs |= yajl_gen_map_open(g);
    gs |= ngx_http_lf_status_key(g, "events");
    gs |= yajl_gen_integer(g, snap->count);
    gs |= ngx_http_lf_status_key(g, "bytes");
    gs |= yajl_gen_integer(g, snap->bytes);
    gs |= ngx_http_lf_status_key(g, "size");
    gs |= yajl_gen_integer(g, lmcf->shm_zone ? lmcf->shm_zone->shm.size
                                             : 0);
    gs |= ngx_http_lf_status_key(g, "free");
    gs |= yajl_gen_integer(g, lmcf->shpool ? lmcf->shpool->pfree
                                             * ngx_pagesize
                                           : 0);
    gs |= yajl_gen_map_close(g);

    gs |= ngx_http_lf_status_key(g, "spool");

    if (lmcf->spool) {
        gs |= yajl_gen_map_open(g);
        gs |= ngx_http_lf_status_key(g, "path");
        gs |= ngx_http_lf_status_string(g, lmcf->spool->path.data,
                                        lmcf->spool->path.len);
        gs |= ngx_http_lf_status_key(g, "max_size");
        gs |= yajl_gen_integer(g, lmcf->spool->max_size);
        gs |= ngx_http_lf_status_key(g, "files");
        gs |= yajl_gen_integer(g, snap->spool_files);
        gs |= ngx_http_lf_status_key(g, "bytes");
        gs |= yajl_gen_integer(g, snap->spool_bytes);
        gs |= yajl_gen_map_close(g);

    } else {
        gs |= yajl_gen_null(g);
    }

    gs |= ngx_http_lf_status_key(g, "destinations");
    gs |= yajl_gen_array_open(g);

    n = ngx_min(snap->ndests, NGX_HTTP_LF_MAX_DESTS);

    for (i = 0; i < n; i++) {
        st = &snap->dests[i];
        dest = ngx_http_lf_find_dest(lmcf, st->dest);

        gs |= yajl_gen_map_open(g);

        gs |= ngx_http_lf_status_key(g, "endpoint");

        if (dest) {
            gs |= ngx_http_lf_status_string(g, dest->url.data,
                                            dest->url.len);
            gs |= ngx_http_lf_status_key(g, "public_key");
            gs |= ngx_http_lf_status_string(g, dest->public_key.data,
                                            dest->public_key.len);
            gs |= ngx_http_lf_status_key(g, "protocol");
            gs |= ngx_http_lf_status_key(g, dest->protocol
                                            == NGX_LF_PROTO_OTLP
                                            ? "otlp" : "ingestion");

        } else {
            /* configured before a reload that removed it */
            gs |= yajl_gen_null(g);
        }

        for (c = ngx_http_lf_event_counters; c->name; c++) {
            gs |= ngx_http_lf_status_key(g, c->name);
            gs |= yajl_gen_integer(g,
                                   *(uint64_t *) ((u_char *) st + c->offset));
        }

        for (k = 0; k < sizeof(groups) / sizeof(groups[0]); k++) {
            gs |= ngx_http_lf_status_key(g, groups[k]);
            gs |= yajl_gen_map_open(g);

            for (c = lists[k]; c->name; c++) {
                gs |= ngx_http_lf_status_key(g, c->name);
                gs |= yajl_gen_integer(g,
                                   *(uint64_t *) ((u_char *) st + c->offset));
            }

            gs |= yajl_gen_map_close(g);
        }

        gs |= ngx_http_lf_status_key(g, "in_flight");
        gs |= yajl_gen_integer(g, ngx_http_lf_in_flight_total(snap, i));

        gs |= ngx_http_lf_status_key(g, "last_success");

        if (st->last_success) {
            gs |= yajl_gen_integer(g, st->last_success);

        } else {
            gs |= yajl_gen_null(g);
        }

        gs |= ngx_http_lf_status_key(g, "last_error");

        if (st->last_failure) {
            gs |= yajl_gen_map_open(g);
            gs |= ngx_http_lf_status_key(g, "time");
            gs |= yajl_gen_integer(g, st->last_failure);
            gs |= ngx_http_lf_status_key(g, "message");
            gs |= ngx_http_lf_status_string(g, st->last_error,
                                            st->last_error_len);
            gs |= yajl_gen_map_close(g);

        } else {
            gs |= yajl_gen_null(g);
        }

        gs |= yajl_gen_map_close(g);
    }

    gs |= yajl_gen_array_close(g);
    gs |= yajl_gen_map_close(g);

    rc = NGX_ERROR;

    /* every status was or-ed into gs: one failure fails the page */
    if (gs == yajl_gen_status_ok
        && yajl_gen_get_buf(g, &text, &len) == yajl_gen_status_ok
        && len + 1 <= (size_t) (b->end - b->last))
    {
        b->last = ngx_cpymem(b->last, text, len);
        *b->last++ = '\n';
        rc = NGX_OK;
    }

    yajl_gen_free(g);

    return rc;
}


static ngx_int_t
ngx_http_lf_status_prometheus(ngx_http_request_t *r,
    ngx_http_lf_main_conf_t *lmcf, ngx_http_lf_shctx_t *snap, ngx_buf_t *b)
{
    u_char                 *p, *last;
    ngx_uint_t              i, k, n;
    ngx_http_lf_dest_t     *dest;
    ngx_http_lf_stats_t    *st;
    ngx_http_lf_counter_t  *c;

    static const char  *metrics[] = {
        "nginx_langfuse_events_total", "state",
        "LLM calls by what became of them",
        "nginx_langfuse_dropped_total", "cause",
        "LLM calls dropped before export, by cause",
        "nginx_langfuse_parse_errors_total", "body",
        "bodies that were not an LLM API body",
        "nginx_langfuse_export_errors_total", "reason",
        "failed export attempts, by reason",
        "nginx_langfuse_export_errors_by_status_total", "status",
        "export attempts answered with an error, by HTTP status",
        "nginx_langfuse_batches_total", "state",
        "export requests, by outcome"
    };
    ngx_http_lf_counter_t  *lists[] = { ngx_http_lf_event_counters,
                                        ngx_http_lf_drop_counters,
                                        ngx_http_lf_parse_counters,
                                        ngx_http_lf_error_counters,
                                        ngx_http_lf_status_counters,
                                        ngx_http_lf_batch_counters };

    p = b->last;
    last = b->end;

    n = ngx_min(snap->ndests, NGX_HTTP_LF_MAX_DESTS);

    for (k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        p = ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s counter\n",
                         metrics[3 * k], metrics[3 * k + 2], metrics[3 * k]);

        for (i = 0; i < n; i++) {
            st = &snap->dests[i];
            dest = ngx_http_lf_find_dest(lmcf, st->dest);

            for (c = lists[k]; c->name; c++) {
                p = ngx_slprintf(p, last, "%s{", metrics[3 * k]);
                p = ngx_http_lf_status_labels(p, last, dest, st->dest);
                p = ngx_slprintf(p, last, ",%s=\"%s\"} %uL\n",
                                 metrics[3 * k + 1], c->label,
                                 *(uint64_t *) ((u_char *) st + c->offset));
            }
        }
    }

    p = ngx_slprintf(p, last, "# HELP nginx_langfuse_in_flight "
                     "export requests under way\n"
                     "# TYPE nginx_langfuse_in_flight gauge\n");

    for (i = 0; i < n; i++) {
        st = &snap->dests[i];
        dest = ngx_http_lf_find_dest(lmcf, st->dest);

        p = ngx_slprintf(p, last, "nginx_langfuse_in_flight{");
        p = ngx_http_lf_status_labels(p, last, dest, st->dest);
        p = ngx_slprintf(p, last, "} %uL\n",
                         ngx_http_lf_in_flight_total(snap, i));
    }

    p = ngx_slprintf(p, last, "# HELP nginx_langfuse_last_success_seconds "
                     "unix time of the last accepted export\n"
                     "# TYPE nginx_langfuse_last_success_seconds gauge\n");

    for (i = 0; i < n; i++) {
        st = &snap->dests[i];
        dest = ngx_http_lf_find_dest(lmcf, st->dest);

        p = ngx_slprintf(p, last, "nginx_langfuse_last_success_seconds{");
        p = ngx_http_lf_status_labels(p, last, dest, st->dest);
        p = ngx_slprintf(p, last, "} %T\n", st->last_success);
    }

    p = ngx_slprintf(p, last,
                     "# HELP nginx_langfuse_queue_events events queued\n"
                     "# TYPE nginx_langfuse_queue_events gauge\n"
                     "nginx_langfuse_queue_events %ui\n"
                     "# HELP nginx_langfuse_queue_bytes bytes queued\n"
                     "# TYPE nginx_langfuse_queue_bytes gauge\n"
                     "nginx_langfuse_queue_bytes %uz\n"
                     "# HELP nginx_langfuse_queue_size_bytes zone size\n"
                     "# TYPE nginx_langfuse_queue_size_bytes gauge\n"
                     "nginx_langfuse_queue_size_bytes %uz\n"
                     "# HELP nginx_langfuse_queue_free_bytes free pages\n"
                     "# TYPE nginx_langfuse_queue_free_bytes gauge\n"
                     "nginx_langfuse_queue_free_bytes %uz\n",
                     snap->count, snap->bytes,
                     lmcf->shm_zone ? lmcf->shm_zone->shm.size : 0,
                     lmcf->shpool ? lmcf->shpool->pfree * ngx_pagesize : 0);

    if (lmcf->spool) {
        p = ngx_slprintf(p, last,
                         "# HELP nginx_langfuse_spool_files batches in "
                         "the spool\n"
                         "# TYPE nginx_langfuse_spool_files gauge\n"
                         "nginx_langfuse_spool_files %ui\n"
                         "# HELP nginx_langfuse_spool_bytes bytes in "
                         "the spool\n"
                         "# TYPE nginx_langfuse_spool_bytes gauge\n"
                         "nginx_langfuse_spool_bytes %O\n"
                         "# HELP nginx_langfuse_spool_size_bytes its "
                         "max_size\n"
                         "# TYPE nginx_langfuse_spool_size_bytes gauge\n"
                         "nginx_langfuse_spool_size_bytes %O\n",
                         snap->spool_files, snap->spool_bytes,
                         lmcf->spool->max_size);
    }

    if (p == last) {
        /* cut: more destinations than the page holds */
        return NGX_ERROR;
    }

    b->last = p;

    return NGX_OK;
}


static unsigned
ngx_http_lf_status_key(yajl_gen g, const char *key)
{
    return yajl_gen_string(g, (const u_char *) key, ngx_strlen(key));
}


static unsigned
ngx_http_lf_status_string(yajl_gen g, u_char *p, size_t len)
{
    return ngx_lf_json_gen_string(g, p, len) == 0 ? yajl_gen_status_ok
                                                  : yajl_gen_invalid_string;
}


/* endpoint and public key, escaped as Prometheus label values */

static u_char *
ngx_http_lf_status_labels(u_char *p, u_char *last, ngx_http_lf_dest_t *dest,
    uint32_t id)
{
    size_t      i, k;
    ngx_str_t  *v[2];

    if (dest == NULL) {
        return ngx_slprintf(p, last, "endpoint=\"unknown-%uD\","
                            "public_key=\"\"", id);
    }

    v[0] = &dest->url;
    v[1] = &dest->public_key;

    for (k = 0; k < 2; k++) {
        p = ngx_slprintf(p, last, k ? ",public_key=\"" : "endpoint=\"");

        for (i = 0; i < v[k]->len && p < last - 2; i++) {
            if (v[k]->data[i] == '"' || v[k]->data[i] == '\\') {
                *p++ = '\\';
                *p++ = v[k]->data[i];

            } else if (v[k]->data[i] == '\n') {
                *p++ = '\\';
                *p++ = 'n';

            } else {
                *p++ = v[k]->data[i];
            }
        }

        p = ngx_slprintf(p, last, "\"");
    }

    return p;
}
