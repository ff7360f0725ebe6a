
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <curl/curl.h>
#include <zlib.h>

#include "ngx_http_lf_module.h"


/*
 * Export with libcurl's multi interface driven by the worker's own
 * event loop: curl says which sockets to watch and when to wake it,
 * nginx events and timers do the watching.  Nothing here blocks.
 */

#define NGX_HTTP_LF_MAX_INFLIGHT        2
#define NGX_HTTP_LF_CONNECT_TIMEOUT     5000
#define NGX_HTTP_LF_TIMEOUT             15000
#define NGX_HTTP_LF_RESPONSE_MAX        1024
#define NGX_HTTP_LF_EXIT_DRAIN          5000
#define NGX_HTTP_LF_TICK                100


typedef struct {
    ngx_queue_t                 queue;
    CURL                       *easy;
    struct curl_slist          *headers;
    u_char                     *body;
    size_t                      body_len;
    ngx_uint_t                  count;
    ngx_http_lf_dest_t         *dest;
    u_char                      response[NGX_HTTP_LF_RESPONSE_MAX];
    size_t                      response_len;
    char                        error[CURL_ERROR_SIZE];
} ngx_http_lf_batch_t;


typedef struct {
    CURLM                      *multi;
    ngx_http_lf_main_conf_t    *lmcf;
    ngx_log_t                  *log;
    ngx_event_t                 flush;
    ngx_event_t                 timeout;
    ngx_event_t                 deadline;   /* of a quitting worker */
    ngx_uint_t                  inflight;
    ngx_queue_t                 batches;    /* in flight */
    ngx_queue_t                 sockets;    /* ngx_connection_t of curl */
    ngx_msec_t                  exit_start;
    ngx_msec_t                  last_flush;
    time_t                      error_logged;
    ngx_uint_t                  errors_unlogged;
} ngx_http_lf_exporter_t;


static uint64_t ngx_http_lf_inflight_events(ngx_http_lf_exporter_t *ex);
static void ngx_http_lf_flush_handler(ngx_event_t *ev);
static void ngx_http_lf_deadline_handler(ngx_event_t *ev);
static void ngx_http_lf_send_batches(ngx_http_lf_exporter_t *ex);
static ngx_int_t ngx_http_lf_send(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_dest_t *dest, u_char *events, size_t len,
    ngx_uint_t count);
static u_char *ngx_http_lf_gzip(ngx_http_lf_dest_t *dest, u_char *events,
    size_t len, size_t *out_len, ngx_log_t *log);
static ngx_http_lf_dest_t *ngx_http_lf_find_dest(
    ngx_http_lf_main_conf_t *lmcf, uint32_t id);
static int ngx_http_lf_socket_cb(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_http_lf_timer_cb(CURLM *multi, long timeout_ms,
    void *userp);
static void ngx_http_lf_socket_handler(ngx_event_t *ev);
static void ngx_http_lf_timeout_handler(ngx_event_t *ev);
static void ngx_http_lf_check_done(ngx_http_lf_exporter_t *ex);
static void ngx_http_lf_batch_done(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, CURLcode code);
static void ngx_http_lf_batch_free(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch);
static size_t ngx_http_lf_write_cb(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static void ngx_http_lf_log_failure(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, const char *reason, long status);


static ngx_http_lf_exporter_t  ngx_http_lf_exporter;


ngx_int_t
ngx_http_lf_export_init_process(ngx_cycle_t *cycle)
{
    CURLcode                  code;
    ngx_http_lf_exporter_t   *ex;
    ngx_http_lf_main_conf_t  *lmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    lmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_langfuse_module);

    ex = &ngx_http_lf_exporter;
    ngx_memzero(ex, sizeof(ngx_http_lf_exporter_t));

    ex->lmcf = lmcf;
    ex->log = cycle->log;

    ngx_queue_init(&ex->batches);
    ngx_queue_init(&ex->sockets);

    code = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (code != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "langfuse: curl_global_init() failed: %s",
                      curl_easy_strerror(code));
        return NGX_OK;
    }

    ex->multi = curl_multi_init();
    if (ex->multi == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "langfuse: curl_multi_init() failed");
        return NGX_OK;
    }

    curl_multi_setopt(ex->multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_http_lf_socket_cb);
    curl_multi_setopt(ex->multi, CURLMOPT_SOCKETDATA, ex);
    curl_multi_setopt(ex->multi, CURLMOPT_TIMERFUNCTION,
                      ngx_http_lf_timer_cb);
    curl_multi_setopt(ex->multi, CURLMOPT_TIMERDATA, ex);

    ex->timeout.handler = ngx_http_lf_timeout_handler;
    ex->timeout.data = ex;
    ex->timeout.log = cycle->log;

    /*
     * not cancelable: a quitting worker waits for its next tick to
     * flush the queue, and the transfers in flight hold it through the
     * curl timeout event until they end
     */

    ex->flush.handler = ngx_http_lf_flush_handler;
    ex->flush.data = ex;
    ex->flush.log = cycle->log;

    ex->deadline.handler = ngx_http_lf_deadline_handler;
    ex->deadline.data = ex;
    ex->deadline.log = cycle->log;

    ex->last_flush = ngx_current_msec;

    ngx_add_timer(&ex->flush, ngx_min(lmcf->flush_interval,
                                      NGX_HTTP_LF_TICK));

    return NGX_OK;
}


void
ngx_http_lf_export_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t             *q;
    ngx_connection_t        *c;
    ngx_http_lf_batch_t     *batch;
    ngx_http_lf_exporter_t  *ex;

    ex = &ngx_http_lf_exporter;

    if (ex->multi == NULL) {
        return;
    }

    if (ex->inflight) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "langfuse: %ui export(s) of %uL event(s) still in "
                      "flight at exit are abandoned", ex->inflight,
                      ngx_http_lf_inflight_events(ex));
    }

    while (!ngx_queue_empty(&ex->batches)) {
        q = ngx_queue_head(&ex->batches);
        batch = ngx_queue_data(q, ngx_http_lf_batch_t, queue);
        ngx_http_lf_batch_free(ex, batch);
    }

    curl_multi_cleanup(ex->multi);
    ex->multi = NULL;

    /* whatever curl did not remove: its sockets are closed by now */

    while (!ngx_queue_empty(&ex->sockets)) {
        q = ngx_queue_head(&ex->sockets);
        ngx_queue_remove(q);

        c = ngx_queue_data(q, ngx_connection_t, queue);
        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
    }

    curl_global_cleanup();
}


static uint64_t
ngx_http_lf_inflight_events(ngx_http_lf_exporter_t *ex)
{
    uint64_t              n;
    ngx_queue_t          *q;
    ngx_http_lf_batch_t  *batch;

    n = 0;

    for (q = ngx_queue_head(&ex->batches);
         q != ngx_queue_sentinel(&ex->batches);
         q = ngx_queue_next(q))
    {
        batch = ngx_queue_data(q, ngx_http_lf_batch_t, queue);
        n += batch->count;
    }

    return n;
}


/*
 * A short tick: a full batch goes out at once, the rest every flush
 * interval, and a worker that begins to quit flushes without waiting.
 */

static void
ngx_http_lf_flush_handler(ngx_event_t *ev)
{
    ngx_msec_t               interval;
    ngx_http_lf_exporter_t  *ex = ev->data;

    interval = ex->lmcf->flush_interval;

    if (ngx_exiting) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ev->log, 0,
                       "langfuse last flush, %ui in flight", ex->inflight);

        /* the rest goes out as transfers complete, for a bounded time */
        ex->exit_start = ngx_current_msec;
        ngx_http_lf_send_batches(ex);

        if (ex->inflight) {
            ngx_add_timer(&ex->deadline, NGX_HTTP_LF_EXIT_DRAIN);
        }

        return;
    }

    if (ngx_current_msec - ex->last_flush >= interval
        || ngx_http_lf_queue_count(ex->lmcf) >= ex->lmcf->batch_size)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ev->log, 0,
                       "langfuse flush, %ui in flight", ex->inflight);

        ex->last_flush = ngx_current_msec;
        ngx_http_lf_send_batches(ex);
    }

    ngx_add_timer(&ex->flush, ngx_min(interval, NGX_HTTP_LF_TICK));
}


static void
ngx_http_lf_deadline_handler(ngx_event_t *ev)
{
    ngx_queue_t             *q;
    ngx_http_lf_batch_t     *batch;
    ngx_http_lf_exporter_t  *ex = ev->data;

    if (ex->inflight == 0) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "langfuse: %ui export(s) of %uL event(s) did not finish "
                  "within %ui ms of shutdown and are abandoned",
                  ex->inflight, ngx_http_lf_inflight_events(ex),
                  (ngx_uint_t) NGX_HTTP_LF_EXIT_DRAIN);

    while (!ngx_queue_empty(&ex->batches)) {
        q = ngx_queue_head(&ex->batches);
        batch = ngx_queue_data(q, ngx_http_lf_batch_t, queue);

        ngx_http_lf_stat(ex->lmcf, failed, batch->count);
        ngx_http_lf_stat(ex->lmcf, batches_failed, 1);
        ngx_http_lf_batch_free(ex, batch);
    }
}


static void
ngx_http_lf_send_batches(ngx_http_lf_exporter_t *ex)
{
    u_char              *events;
    size_t               len;
    uint32_t             id;
    ngx_uint_t           count;
    ngx_http_lf_dest_t  *dest;

    while (ex->inflight < NGX_HTTP_LF_MAX_INFLIGHT) {

        events = ngx_http_lf_queue_pop(ex->lmcf, ex->lmcf->batch_size, &id,
                                       &len, &count, ex->log);
        if (events == NULL) {
            return;
        }

        dest = ngx_http_lf_find_dest(ex->lmcf, id);

        if (dest == NULL) {
            /* queued under a configuration that a reload replaced */
            ngx_http_lf_stat(ex->lmcf, dropped_no_destination, count);
            ngx_log_error(NGX_LOG_WARN, ex->log, 0,
                          "langfuse: %ui event(s) for a destination that "
                          "is no longer configured are dropped", count);
            ngx_free(events);
            continue;
        }

        if (ngx_http_lf_send(ex, dest, events, len, count) != NGX_OK) {
            ngx_http_lf_stat(ex->lmcf, failed, count);
            ngx_http_lf_stat(ex->lmcf, batches_failed, 1);
        }

        ngx_free(events);
    }
}


static ngx_int_t
ngx_http_lf_send(ngx_http_lf_exporter_t *ex, ngx_http_lf_dest_t *dest,
    u_char *events, size_t len, ngx_uint_t count)
{
    CURL                 *easy;
    CURLMcode             mcode;
    ngx_http_lf_batch_t  *batch;

    batch = ngx_calloc(sizeof(ngx_http_lf_batch_t), ex->log);
    if (batch == NULL) {
        return NGX_ERROR;
    }

    batch->dest = dest;
    batch->count = count;

    batch->body = ngx_http_lf_gzip(dest, events, len, &batch->body_len,
                                   ex->log);
    if (batch->body == NULL) {
        ngx_free(batch);
        return NGX_ERROR;
    }

    easy = curl_easy_init();
    if (easy == NULL) {
        ngx_log_error(NGX_LOG_ALERT, ex->log, 0,
                      "langfuse: curl_easy_init() failed");
        ngx_free(batch->body);
        ngx_free(batch);
        return NGX_ERROR;
    }

    batch->easy = easy;

    batch->headers = curl_slist_append(batch->headers,
                                       "Content-Type: application/json");
    batch->headers = curl_slist_append(batch->headers,
                                       "Content-Encoding: gzip");
    batch->headers = curl_slist_append(batch->headers,
                                       (char *) dest->auth_header.data);
    batch->headers = curl_slist_append(batch->headers, "Expect:");

    if (dest->protocol == NGX_LF_PROTO_OTLP) {
        batch->headers = curl_slist_append(batch->headers,
                                        "x-langfuse-ingestion-version: 4");
    }

    if (batch->headers == NULL) {
        ngx_http_lf_batch_free(ex, batch);
        return NGX_ERROR;
    }

    curl_easy_setopt(easy, CURLOPT_URL, dest->url.data);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, batch->headers);
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, batch->body);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t) batch->body_len);
    curl_easy_setopt(easy, CURLOPT_USERAGENT,
                     "nginx-langfuse/" NGX_LF_VERSION);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) NGX_HTTP_LF_CONNECT_TIMEOUT);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) NGX_HTTP_LF_TIMEOUT);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, ngx_http_lf_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, batch);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, batch->error);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, batch);

    mcode = curl_multi_add_handle(ex->multi, easy);

    if (mcode != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, ex->log, 0,
                      "langfuse: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mcode));
        ngx_http_lf_batch_free(ex, batch);
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&ex->batches, &batch->queue);
    ex->inflight++;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                   "langfuse export of %ui event(s), %uz bytes to \"%V\"",
                   count, batch->body_len, &dest->url);

    return NGX_OK;
}


static u_char *
ngx_http_lf_gzip(ngx_http_lf_dest_t *dest, u_char *events, size_t len,
    size_t *out_len, ngx_log_t *log)
{
    int           rc;
    u_char       *out;
    size_t        size;
    z_stream      z;
    const char   *head, *tail;

    head = ngx_lf_event_batch_head(dest->protocol);
    tail = ngx_lf_event_batch_tail(dest->protocol);

    ngx_memzero(&z, sizeof(z_stream));

    /* gzip format: window bits 15 plus 16 */
    rc = deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                      Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "langfuse: deflateInit2() failed: %d", rc);
        return NULL;
    }

    size = deflateBound(&z, ngx_strlen(head) + len + ngx_strlen(tail));

    out = ngx_alloc(size, log);
    if (out == NULL) {
        deflateEnd(&z);
        return NULL;
    }

    z.next_out = out;
    z.avail_out = size;

    z.next_in = (u_char *) head;
    z.avail_in = ngx_strlen(head);
    rc = deflate(&z, Z_NO_FLUSH);

    if (rc == Z_OK) {
        z.next_in = events;
        z.avail_in = len;
        rc = deflate(&z, Z_NO_FLUSH);
    }

    if (rc == Z_OK) {
        z.next_in = (u_char *) tail;
        z.avail_in = ngx_strlen(tail);
        rc = deflate(&z, Z_FINISH);
    }

    if (rc != Z_STREAM_END) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "langfuse: deflate() failed: %d", rc);
        deflateEnd(&z);
        ngx_free(out);
        return NULL;
    }

    *out_len = size - z.avail_out;

    deflateEnd(&z);

    return out;
}


static ngx_http_lf_dest_t *
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


static int
ngx_http_lf_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_http_lf_exporter_t *ex = userp;

    ngx_event_t       *rev, *wev;
    ngx_connection_t  *c;

    c = socketp;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                   "langfuse curl socket %d: %d", s, what);

    if (what == CURL_POLL_REMOVE) {
        if (c == NULL) {
            return 0;
        }

        if (c->read->active) {
            ngx_del_event(c->read, NGX_READ_EVENT, 0);
        }

        if (c->write->active) {
            ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        /* curl owns and closes the socket */
        ngx_queue_remove(&c->queue);
        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;

        curl_multi_assign(ex->multi, s, NULL);

        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, ex->log);
        if (c == NULL) {
            return -1;
        }

        ngx_queue_insert_tail(&ex->sockets, &c->queue);

        c->data = ex;
        c->read->handler = ngx_http_lf_socket_handler;
        c->write->handler = ngx_http_lf_socket_handler;
        c->read->log = ex->log;
        c->write->log = ex->log;

        curl_multi_assign(ex->multi, s, c);
    }

    rev = c->read;
    wev = c->write;

    /* level-triggered: curl need not drain a socket in one call */

    if ((what & CURL_POLL_IN) && !rev->active) {
        if (ngx_add_event(rev, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
            return -1;
        }

    } else if (!(what & CURL_POLL_IN) && rev->active) {
        if (ngx_del_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    if ((what & CURL_POLL_OUT) && !wev->active) {
        if (ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
            return -1;
        }

    } else if (!(what & CURL_POLL_OUT) && wev->active) {
        if (ngx_del_event(wev, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    return 0;
}


static int
ngx_http_lf_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_http_lf_exporter_t *ex = userp;

    if (timeout_ms < 0) {
        if (ex->timeout.timer_set) {
            ngx_del_timer(&ex->timeout);
        }

        return 0;
    }

    /* curl may not be called back from here: even 0 goes via a timer */
    ngx_add_timer(&ex->timeout, timeout_ms ? (ngx_msec_t) timeout_ms : 1);

    return 0;
}


static void
ngx_http_lf_socket_handler(ngx_event_t *ev)
{
    int                      running, action;
    ngx_socket_t             fd;
    ngx_connection_t        *c;
    ngx_http_lf_exporter_t  *ex;

    c = ev->data;
    ex = c->data;
    fd = c->fd;

    action = ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN;

    /* the connection may be freed inside: only fd is used after this */
    curl_multi_socket_action(ex->multi, fd, action, &running);

    ngx_http_lf_check_done(ex);
}


static void
ngx_http_lf_timeout_handler(ngx_event_t *ev)
{
    int                      running;
    ngx_http_lf_exporter_t  *ex = ev->data;

    curl_multi_socket_action(ex->multi, CURL_SOCKET_TIMEOUT, 0, &running);

    ngx_http_lf_check_done(ex);
}


static void
ngx_http_lf_check_done(ngx_http_lf_exporter_t *ex)
{
    int                   pending;
    CURLMsg              *msg;
    ngx_uint_t            done;
    ngx_http_lf_batch_t  *batch;

    done = 0;

    for ( ;; ) {
        msg = curl_multi_info_read(ex->multi, &pending);

        if (msg == NULL) {
            break;
        }

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        batch = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &batch);

        ngx_http_lf_batch_done(ex, batch, msg->data.result);
        done++;
    }

    /*
     * keep draining while there is a backlog, or for a while when the
     * worker is leaving
     */

    if (done == 0) {
        return;
    }

    if (ngx_exiting) {
        if (ngx_current_msec - ex->exit_start < NGX_HTTP_LF_EXIT_DRAIN) {
            ngx_http_lf_send_batches(ex);
        }

        if (ex->inflight == 0 && ex->deadline.timer_set) {
            ngx_del_timer(&ex->deadline);
        }

        return;
    }

    if (ngx_http_lf_queue_count(ex->lmcf) >= ex->lmcf->batch_size) {
        ngx_http_lf_send_batches(ex);
    }
}


static void
ngx_http_lf_batch_done(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, CURLcode code)
{
    long  status;

    status = 0;
    curl_easy_getinfo(batch->easy, CURLINFO_RESPONSE_CODE, &status);

    if (code != CURLE_OK) {
        ngx_http_lf_log_failure(ex, batch,
                                batch->error[0] ? batch->error
                                                : curl_easy_strerror(code),
                                0);
        ngx_http_lf_stat(ex->lmcf, failed, batch->count);
        ngx_http_lf_stat(ex->lmcf, batches_failed, 1);

    } else if (status < 200 || status > 299) {
        ngx_http_lf_log_failure(ex, batch, "rejected", status);
        ngx_http_lf_stat(ex->lmcf, failed, batch->count);
        ngx_http_lf_stat(ex->lmcf, batches_failed, 1);

    } else {
        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                       "langfuse export done: %ui event(s), status %l",
                       batch->count, status);

        ngx_http_lf_stat(ex->lmcf, sent, batch->count);
        ngx_http_lf_stat(ex->lmcf, batches_sent, 1);
    }

    ngx_http_lf_batch_free(ex, batch);
}


static void
ngx_http_lf_batch_free(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch)
{
    if (batch->easy) {
        if (batch->queue.next) {
            ngx_queue_remove(&batch->queue);
            ex->inflight--;
            (void) curl_multi_remove_handle(ex->multi, batch->easy);
        }

        curl_easy_cleanup(batch->easy);
    }

    curl_slist_free_all(batch->headers);
    ngx_free(batch->body);
    ngx_free(batch);
}


static size_t
ngx_http_lf_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t                n;
    ngx_http_lf_batch_t  *batch = userdata;

    n = ngx_min(size * nmemb,
                NGX_HTTP_LF_RESPONSE_MAX - batch->response_len);

    ngx_memcpy(batch->response + batch->response_len, ptr, n);
    batch->response_len += n;

    return size * nmemb;
}


/* at most one line a second per worker, with the count it stands for */

static void
ngx_http_lf_log_failure(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, const char *reason, long status)
{
    size_t   n;
    u_char   text[256];

    if (ex->error_logged == ngx_time()) {
        ex->errors_unlogged++;
        return;
    }

    ex->error_logged = ngx_time();

    n = ngx_min(batch->response_len, sizeof(text) / 3 - 1);
    n = ngx_lf_utf8_sanitize(text, batch->response, n);

    ngx_log_error(NGX_LOG_ERR, ex->log, 0,
                  "langfuse: export of %ui event(s) to \"%V\" failed: "
                  "%s, status %l, response \"%*s\" "
                  "(%ui more failure(s) not logged)",
                  batch->count, &batch->dest->url, reason, status,
                  n, text, ex->errors_unlogged);

    ex->errors_unlogged = 0;
}
