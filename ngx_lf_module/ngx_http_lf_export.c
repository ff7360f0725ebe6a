
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <curl/curl.h>
#include <zlib.h>

#include "ngx_http_lf_module.h"
#include "ngx_lf_json.h"


/*
 * Export with libcurl's multi interface driven by the worker's own
 * event loop: curl says which sockets to watch and when to wake it,
 * nginx events and timers do the watching.  Nothing here blocks.
 */

#define NGX_HTTP_LF_MAX_INFLIGHT        2
#define NGX_HTTP_LF_RESPONSE_MAX        65536
#define NGX_HTTP_LF_BACKOFF             1000
#define NGX_HTTP_LF_BACKOFF_MAX         30000
#define NGX_HTTP_LF_RETRY_AFTER_MAX     60
#define NGX_HTTP_LF_EXIT_DRAIN          5000
#define NGX_HTTP_LF_TICK                100
#define NGX_HTTP_LF_SPOOL_WAIT          10000
#define NGX_HTTP_LF_SPOOL_RESCAN        5000
#define NGX_HTTP_LF_SPOOL_WRITES        4
#define NGX_HTTP_LF_SPOOL_BACKLOG       16
#define NGX_HTTP_LF_SHRINK_MIN          4096


/* an event the 207 answer refused: its id, then 't'emporary or 'f'inal */
#define NGX_HTTP_LF_REFUSED_LEN         (NGX_LF_EVENT_ID_LEN + 1)


/* a 207 answer, read as it arrives: its size does not matter */
typedef struct {
    ngx_lf_json_t               json;
    ngx_uint_t                  errors;
    ngx_uint_t                  invalid;
    ngx_lf_buf_t                refused;

    /* the reason of the first final and of the first temporary one */
    ngx_lf_buf_t                final;
    ngx_lf_buf_t                temporary;

    /* the error being read */
    u_char                      id[NGX_LF_EVENT_ID_LEN];
    size_t                      id_len;
    int64_t                     status;
    ngx_lf_buf_t                message;
} ngx_http_lf_multi_status_t;


/*
 * A batch lives in worker memory from the queue's pop until Langfuse
 * takes it or it is given up: in flight, or waiting for a retry with
 * the same bytes.
 */

typedef struct {
    ngx_queue_t                 queue;      /* in flight or waiting */
    ngx_event_t                 retry;
    ngx_http_lf_dest_t         *dest;
    ngx_http_lf_spooled_t      *spooled;    /* a replay of this file */

    u_char                     *events;     /* comma-joined */
    size_t                      events_len;
    size_t                     *lens;       /* of each event */
    ngx_uint_t                  count;
    ngx_uint_t                  attempts;

    u_char                     *body;       /* gzip of the envelope */
    size_t                      body_len;

    CURL                       *easy;
    struct curl_slist          *headers;
    ngx_lf_buf_t                response;   /* its start, for logs */
    ngx_http_lf_multi_status_t *ms;
    char                        error[CURL_ERROR_SIZE];

    unsigned                    inflight:1;
    unsigned                    waiting:1;
    unsigned                    probe:1;    /* the credential check */
    unsigned                    taken:1;    /* Langfuse is done with it */
} ngx_http_lf_batch_t;


typedef struct {
    CURLM                      *multi;
    ngx_http_lf_main_conf_t    *lmcf;
    ngx_log_t                  *log;
    ngx_event_t                 flush;
    ngx_event_t                 timeout;
    ngx_event_t                 deadline;   /* of a quitting worker */
    ngx_event_t                 spool_wait; /* for the spool's threads */
    ngx_uint_t                  inflight;
    ngx_uint_t                  replays;    /* batches from the spool */
    ngx_queue_t                 batches;    /* in flight */
    ngx_queue_t                 waiting;    /* for a retry */
    ngx_queue_t                 sockets;    /* ngx_connection_t of curl */
    ngx_msec_t                  exit_start;
    ngx_msec_t                  last_flush;
    ngx_msec_t                  last_claim;
    time_t                      error_logged;
    ngx_uint_t                  errors_unlogged;

    /* what a full queue passed on, until it goes to the spool */
    uint32_t                    overflow_dest;
    ngx_lf_buf_t                overflow;   /* comma-joined */
    size_t                     *overflow_lens;
    ngx_uint_t                  overflow_count;

    unsigned                    claiming:1;
    unsigned                    spool_pause:1;  /* nothing to replay */
    unsigned                    exit_spool:1;   /* Langfuse is away */
    unsigned                    gone:1;         /* in exit_process */
} ngx_http_lf_exporter_t;


static uint64_t ngx_http_lf_pending_events(ngx_http_lf_exporter_t *ex,
    ngx_uint_t *batches);
static void ngx_http_lf_abandon(ngx_http_lf_exporter_t *ex,
    const char *when);
static void ngx_http_lf_flush_handler(ngx_event_t *ev);
static void ngx_http_lf_deadline_handler(ngx_event_t *ev);
static void ngx_http_lf_exit_wait(ngx_http_lf_exporter_t *ex);
static void ngx_http_lf_spool_wait_handler(ngx_event_t *ev);
static u_char *ngx_http_lf_pop_batch(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_take_t *take, ngx_http_lf_dest_t **dest, size_t *len,
    size_t **lens, ngx_uint_t *count);
static void ngx_http_lf_send_batches(ngx_http_lf_exporter_t *ex);
static void ngx_http_lf_spool_rest(ngx_http_lf_exporter_t *ex);
static ngx_uint_t ngx_http_lf_waiting_dests(ngx_http_lf_exporter_t *ex,
    uint32_t *ids);
static ngx_uint_t ngx_http_lf_queue_crowded(ngx_http_lf_exporter_t *ex);
static ngx_int_t ngx_http_lf_overflow_write(ngx_http_lf_exporter_t *ex);
static void ngx_http_lf_spool_queue(ngx_http_lf_exporter_t *ex,
    ngx_uint_t max);
static void ngx_http_lf_replay_next(ngx_http_lf_exporter_t *ex);
static void ngx_http_lf_batch_undelivered(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch);
static ngx_http_lf_batch_t *ngx_http_lf_batch_create(
    ngx_http_lf_exporter_t *ex, ngx_http_lf_dest_t *dest, u_char *events,
    size_t len, size_t *lens, ngx_uint_t count);
static ngx_int_t ngx_http_lf_batch_start(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch);
static void ngx_http_lf_retry_handler(ngx_event_t *ev);
static struct curl_slist *ngx_http_lf_headers(ngx_http_lf_dest_t *dest);
static void ngx_http_lf_headers_free(struct curl_slist *list);
static void ngx_http_lf_probe(ngx_http_lf_exporter_t *ex);
static void ngx_http_lf_probe_done(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, CURLcode code);
static void ngx_http_lf_batch_retry(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, const char *reason, long status);
static void ngx_http_lf_batch_split(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch);
static ngx_int_t ngx_http_lf_batch_shrink(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch);
static void ngx_http_lf_multi_status(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch);
static ngx_http_lf_multi_status_t *ngx_http_lf_multi_status_start(
    ngx_uint_t count, ngx_log_t *log);
static void ngx_http_lf_multi_status_free(ngx_http_lf_multi_status_t *ms);
static int ngx_libc_cdecl ngx_http_lf_refused_cmp(const void *one,
    const void *two);
static int ngx_http_lf_multi_status_value(ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static u_char *ngx_http_lf_gzip(ngx_http_lf_dest_t *dest, u_char *events,
    size_t len, size_t *out_len, ngx_log_t *log);
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
static size_t ngx_http_lf_response_text(ngx_http_lf_batch_t *batch,
    u_char *text, size_t size);
static void ngx_http_lf_log_refusal(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, ngx_uint_t invalid, ngx_uint_t events,
    ngx_lf_buf_t *message);
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
    ngx_queue_init(&ex->waiting);
    ngx_queue_init(&ex->sockets);

    code = ngx_http_lf_secret_curl_init();
    if (code != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "langfuse: curl_global_init_mem() failed: %s",
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

    ex->spool_wait.handler = ngx_http_lf_spool_wait_handler;
    ex->spool_wait.data = ex;
    ex->spool_wait.log = cycle->log;

    ex->last_flush = ngx_current_msec;

    ngx_http_lf_worker_slot(lmcf, 1);

    if (lmcf->spool) {
        ngx_http_lf_spool_init_process(lmcf, cycle->log);
    }

    if (lmcf->check_credentials
        && (ngx_worker == 0 || ngx_process == NGX_PROCESS_SINGLE))
    {
        ngx_http_lf_probe(ex);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, cycle->log, 0,
                   "langfuse exporter of worker %ui: %ui destination(s), "
                   "flush every %M ms", ngx_worker, lmcf->dests.nelts,
                   lmcf->flush_interval);

    ngx_add_timer(&ex->flush, ngx_min(lmcf->flush_interval,
                                      NGX_HTTP_LF_TICK));

    return NGX_OK;
}


void
ngx_http_lf_export_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t             *q;
    ngx_connection_t        *c;
    ngx_http_lf_exporter_t  *ex;

    ex = &ngx_http_lf_exporter;

    if (ex->multi == NULL) {
        return;
    }

    /*
     * past the event loop (a fast shutdown, or what a quit left): the
     * spool's files are written here and now, the thread pools are gone
     */
    ex->gone = 1;

    if (ex->lmcf->spool) {
        ngx_http_lf_spool_exit();
    }

    ngx_http_lf_abandon(ex, "at exit");

    (void) ngx_http_lf_overflow_write(ex);
    ngx_http_lf_spool_rest(ex);

    curl_multi_cleanup(ex->multi);
    ex->multi = NULL;

    ngx_http_lf_worker_slot(ex->lmcf, 0);

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


/* batches in flight and waiting for a retry */

static uint64_t
ngx_http_lf_pending_events(ngx_http_lf_exporter_t *ex, ngx_uint_t *batches)
{
    uint64_t              n;
    ngx_queue_t          *q, *list;
    ngx_http_lf_batch_t  *batch;

    n = 0;
    *batches = 0;

    for (list = &ex->batches; list; list = (list == &ex->batches)
                                           ? &ex->waiting : NULL)
    {
        for (q = ngx_queue_head(list);
             q != ngx_queue_sentinel(list);
             q = ngx_queue_next(q))
        {
            batch = ngx_queue_data(q, ngx_http_lf_batch_t, queue);

            if (!batch->probe) {
                n += batch->count;
                (*batches)++;
            }
        }
    }

    return n;
}


static void
ngx_http_lf_abandon(ngx_http_lf_exporter_t *ex, const char *when)
{
    uint64_t              events;
    ngx_uint_t            batches;
    ngx_queue_t          *q;
    ngx_http_lf_batch_t  *batch;

    events = ngx_http_lf_pending_events(ex, &batches);

    if (batches) {
        ngx_log_error(NGX_LOG_WARN, ex->log, 0,
                      "langfuse: %ui export(s) of %uL event(s) not "
                      "delivered %s are %s", batches, events, when,
                      ex->lmcf->spool ? "spooled" : "abandoned");
    }

    while (!ngx_queue_empty(&ex->batches)
           || !ngx_queue_empty(&ex->waiting))
    {
        q = ngx_queue_empty(&ex->batches) ? ngx_queue_head(&ex->waiting)
                                          : ngx_queue_head(&ex->batches);
        batch = ngx_queue_data(q, ngx_http_lf_batch_t, queue);

        ngx_http_lf_batch_undelivered(ex, batch);
    }
}


/*
 * A batch that Langfuse has not taken in time goes to the spool; a
 * replayed one stays there.  Without a spool it is lost, and counted.
 */

static void
ngx_http_lf_batch_undelivered(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch)
{
    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                   "langfuse batch of %ui event(s) undelivered, %s",
                   batch->count,
                   batch->spooled ? "it stays in the spool"
                   : ex->lmcf->spool ? "to the spool" : "dropped");

    /* a credential check carries no events */

    if (batch->probe) {
        ngx_http_lf_batch_free(ex, batch);
        return;
    }

    if (batch->spooled == NULL) {

        if (ex->lmcf->spool) {
            (void) ngx_http_lf_spool_write(ex->lmcf, batch->dest,
                                           batch->events, batch->events_len,
                                           batch->lens, batch->count);
            batch->events = NULL;
            batch->lens = NULL;

        } else {
            ngx_http_lf_stat(ex->lmcf, batch->dest->id, failed,
                             batch->count);
        }
    }

    ngx_http_lf_stat(ex->lmcf, batch->dest->id, batches_failed, 1);
    ngx_http_lf_batch_free(ex, batch);
}


/*
 * A short tick: a full batch goes out at once, the rest every flush
 * interval, and a worker that begins to quit flushes without waiting.
 * With a spool, a crowded queue overflows to it, and what it holds is
 * replayed while Langfuse takes it.
 */

static void
ngx_http_lf_flush_handler(ngx_event_t *ev)
{
    ngx_msec_t               interval;
    ngx_http_lf_batch_t     *batch;
    ngx_http_lf_exporter_t  *ex = ev->data;

    interval = ex->lmcf->flush_interval;

    if (ngx_exiting) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ev->log, 0,
                       "langfuse last flush, %ui in flight", ex->inflight);

        /*
         * the rest goes out as transfers complete, for a bounded time;
         * batches waiting for a retry get their last try now, and
         * replays go back to the spool for the next start
         */
        ex->exit_start = ngx_current_msec;

        while (!ngx_queue_empty(&ex->waiting)) {
            batch = ngx_queue_data(ngx_queue_head(&ex->waiting),
                                   ngx_http_lf_batch_t, queue);

            if (batch->spooled) {
                ngx_http_lf_batch_undelivered(ex, batch);
                continue;
            }

            ngx_del_timer(&batch->retry);
            batch->attempts = ex->lmcf->retries;
            ngx_http_lf_retry_handler(&batch->retry);
        }

        (void) ngx_http_lf_overflow_write(ex);
        ngx_http_lf_send_batches(ex);

        if (ex->inflight) {
            ngx_add_timer(&ex->deadline, NGX_HTTP_LF_EXIT_DRAIN);
        }

        ngx_http_lf_exit_wait(ex);

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

    if (ex->lmcf->spool) {
        (void) ngx_http_lf_overflow_write(ex);

        if (ngx_http_lf_queue_crowded(ex)) {
            ngx_http_lf_spool_queue(ex, NGX_HTTP_LF_SPOOL_WRITES);
        }

        ngx_http_lf_replay_next(ex);
    }

    ngx_add_timer(&ex->flush, ngx_min(interval, NGX_HTTP_LF_TICK));
}


static void
ngx_http_lf_deadline_handler(ngx_event_t *ev)
{
    ngx_http_lf_exporter_t  *ex = ev->data;

    ngx_http_lf_abandon(ex, "within the shutdown time");

    ngx_http_lf_spool_rest(ex);

    ngx_http_lf_exit_wait(ex);
}


/* a quitting worker stays while the spool's threads work for it */

static void
ngx_http_lf_exit_wait(ngx_http_lf_exporter_t *ex)
{
    if (ngx_http_lf_spool_busy() && !ex->spool_wait.timer_set) {
        ngx_add_timer(&ex->spool_wait, 50);
    }
}


static void
ngx_http_lf_spool_wait_handler(ngx_event_t *ev)
{
    ngx_http_lf_exporter_t  *ex = ev->data;

    if (!ngx_http_lf_spool_busy()) {
        return;
    }

    if (ngx_current_msec - ex->exit_start
        < NGX_HTTP_LF_EXIT_DRAIN + NGX_HTTP_LF_SPOOL_WAIT)
    {
        ngx_add_timer(&ex->spool_wait, 50);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ex->log, 0,
                  "langfuse: %ui spool operation(s) still running at exit",
                  ngx_http_lf_spool_busy());
}


/*
 * The oldest events of one destination, up to a batch, from the queue;
 * events of a destination that reloads removed are dropped on the way.
 */

static u_char *
ngx_http_lf_pop_batch(ngx_http_lf_exporter_t *ex, ngx_http_lf_take_t *take,
    ngx_http_lf_dest_t **dest, size_t *len, size_t **lens,
    ngx_uint_t *count)
{
    u_char    *events;
    uint32_t   id;

    for ( ;; ) {
        events = ngx_http_lf_queue_pop(ex->lmcf, ex->lmcf->batch_size,
                                       take, &id, len, count, lens,
                                       ex->log);
        if (events == NULL) {
            return NULL;
        }

        *dest = ngx_http_lf_find_dest(ex->lmcf, id);

        if (*dest) {
            return events;
        }

        /* queued under a configuration that a reload replaced */
        ngx_http_lf_stat(ex->lmcf, id, dropped_no_destination, *count);
        ngx_log_error(NGX_LOG_WARN, ex->log, 0,
                      "langfuse: %ui event(s) for a destination that "
                      "is no longer configured are dropped", *count);
        ngx_free(events);
        ngx_free(*lens);
    }
}


static void
ngx_http_lf_send_batches(ngx_http_lf_exporter_t *ex)
{
    u_char               *events;
    size_t                len, *lens;
    ngx_uint_t            count;
    ngx_http_lf_take_t    take;
    ngx_http_lf_dest_t   *dest;
    ngx_http_lf_batch_t  *batch;

    if (ngx_exiting && ex->exit_spool) {
        /* Langfuse failed a quitting worker: no time for more tries */
        ngx_http_lf_spool_rest(ex);
        return;
    }

    /*
     * while the spool's disk lags behind, the queue holds the events:
     * what is bound for the spool stays bounded in worker memory
     */

    if (ex->lmcf->spool && !ngx_exiting
        && ngx_http_lf_spool_writing() >= NGX_HTTP_LF_SPOOL_BACKLOG)
    {
        return;
    }

    /*
     * a destination with a batch waiting for a retry gets no new ones;
     * when all wait, the queue is not even looked at
     */

    take.nblocked = ngx_http_lf_waiting_dests(ex, take.blocked);

    if (take.nblocked == ex->lmcf->dests.nelts) {
        return;
    }

    ngx_http_lf_queue_take(ex->lmcf, &take);

    while (ex->inflight < NGX_HTTP_LF_MAX_INFLIGHT) {

        events = ngx_http_lf_pop_batch(ex, &take, &dest, &len, &lens,
                                       &count);
        if (events == NULL) {
            return;
        }

        batch = ngx_http_lf_batch_create(ex, dest, events, len, lens, count);

        if (batch == NULL) {
            ngx_http_lf_stat(ex->lmcf, dest->id, failed, count);
            ngx_http_lf_stat(ex->lmcf, dest->id, batches_failed, 1);
            continue;
        }

        if (ngx_http_lf_batch_start(ex, batch) != NGX_OK) {
            ngx_http_lf_batch_undelivered(ex, batch);
        }
    }
}


static ngx_uint_t
ngx_http_lf_waiting_dests(ngx_http_lf_exporter_t *ex, uint32_t *ids)
{
    ngx_uint_t            i, n;
    ngx_queue_t          *q;
    ngx_http_lf_batch_t  *batch;

    n = 0;

    for (q = ngx_queue_head(&ex->waiting);
         q != ngx_queue_sentinel(&ex->waiting);
         q = ngx_queue_next(q))
    {
        batch = ngx_queue_data(q, ngx_http_lf_batch_t, queue);

        for (i = 0; i < n; i++) {
            if (ids[i] == batch->dest->id) {
                break;
            }
        }

        if (i == n && n < NGX_HTTP_LF_MAX_DESTS) {
            ids[n++] = batch->dest->id;
        }
    }

    return n;
}


/*
 * What the queue still holds goes to the spool when a leaving worker
 * is the queue's last owner: after a reload, the new workers, which
 * share it, send it.
 */

static void
ngx_http_lf_spool_rest(ngx_http_lf_exporter_t *ex)
{
    if (ex->lmcf->spool) {
        ngx_http_lf_spool_queue(ex, NGX_MAX_UINT32_VALUE);
    }
}


/* over half of the queue's pages in use: room is kept for requests */

static ngx_uint_t
ngx_http_lf_queue_crowded(ngx_http_lf_exporter_t *ex)
{
    ngx_uint_t  crowded;

    ngx_shmtx_lock(&ex->lmcf->shpool->mutex);
    crowded = ex->lmcf->shpool->pfree < ex->lmcf->sh->pages / 2;
    ngx_shmtx_unlock(&ex->lmcf->shpool->mutex);

    return crowded;
}


/*
 * Moves queued batches to the spool: at most "max" and, while nginx
 * runs, only while the queue is crowded and few writes are under way.
 */

static void
ngx_http_lf_spool_queue(ngx_http_lf_exporter_t *ex, ngx_uint_t max)
{
    u_char              *events;
    size_t               len, *lens;
    uint64_t             total;
    ngx_uint_t           count, n;
    ngx_http_lf_take_t   take;
    ngx_http_lf_dest_t  *dest;

    total = 0;

    take.nblocked = 0;
    ngx_http_lf_queue_take(ex->lmcf, &take);

    for (n = 0; n < max; n++) {

        if (!ngx_exiting && !ex->gone
            && (ngx_http_lf_spool_writing() >= NGX_HTTP_LF_SPOOL_WRITES
                || !ngx_http_lf_queue_crowded(ex)))
        {
            break;
        }

        events = ngx_http_lf_pop_batch(ex, &take, &dest, &len, &lens,
                                       &count);
        if (events == NULL) {
            break;
        }

        total += count;

        (void) ngx_http_lf_spool_write(ex->lmcf, dest, events, len, lens,
                                       count);
    }

    if (total == 0) {
        return;
    }

    if (ngx_exiting || ex->gone) {
        ngx_log_error(NGX_LOG_NOTICE, ex->log, 0,
                      "langfuse: %uL queued event(s) go to the spool "
                      "at exit", total);
        ngx_http_lf_exit_wait(ex);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                   "langfuse spool: %uL queued event(s) overflow to it",
                   total);
}


/*
 * With a spool, an event that finds the queue full joins this worker's
 * overflow batch, which is written to the spool when it is full and at
 * the next tick.  NGX_DECLINED: the spool's writes lag too far behind,
 * and the event is dropped.
 */

ngx_int_t
ngx_http_lf_export_overflow(ngx_http_lf_main_conf_t *lmcf, uint32_t dest,
    const u_char *data, size_t len)
{
    size_t                   last;
    ngx_http_lf_exporter_t  *ex;

    ex = &ngx_http_lf_exporter;

    if (lmcf->spool == NULL || ex->lmcf != lmcf) {
        return NGX_DECLINED;
    }

    if (ex->overflow_count
        && (ex->overflow_dest != dest
            || ex->overflow_count == lmcf->batch_size
            || ex->overflow.len + 1 + len > NGX_HTTP_LF_BATCH_MAX_BYTES)
        && ngx_http_lf_overflow_write(ex) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (ex->overflow_lens == NULL) {
        ex->overflow_lens = ngx_alloc(lmcf->batch_size * sizeof(size_t),
                                      ex->log);
        if (ex->overflow_lens == NULL) {
            return NGX_DECLINED;
        }

        ngx_lf_buf_init(&ex->overflow, 0);
    }

    last = ex->overflow.len;

    if ((ex->overflow_count
         && ngx_lf_buf_append(&ex->overflow, (u_char *) ",", 1) != 0)
        || ngx_lf_buf_append(&ex->overflow, data, len) != 0)
    {
        ex->overflow.len = last;
        return NGX_DECLINED;
    }

    ex->overflow_dest = dest;
    ex->overflow_lens[ex->overflow_count++] = len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_lf_overflow_write(ngx_http_lf_exporter_t *ex)
{
    ngx_http_lf_dest_t  *dest;

    if (ex->overflow_count == 0) {
        return NGX_OK;
    }

    if (!ngx_exiting && !ex->gone
        && ngx_http_lf_spool_writing() >= NGX_HTTP_LF_SPOOL_BACKLOG)
    {
        return NGX_AGAIN;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                   "langfuse spool: %ui event(s) of a full queue go to it",
                   ex->overflow_count);

    /* events of the running configuration: the destination is there */
    dest = ngx_http_lf_find_dest(ex->lmcf, ex->overflow_dest);

    if (dest) {
        /* takes the events and lens */
        (void) ngx_http_lf_spool_write(ex->lmcf, dest, ex->overflow.data,
                                       ex->overflow.len, ex->overflow_lens,
                                       ex->overflow_count);

    } else {
        ngx_lf_buf_free(&ex->overflow);
        ngx_free(ex->overflow_lens);
    }

    ngx_lf_buf_init(&ex->overflow, 0);
    ex->overflow_lens = NULL;
    ex->overflow_count = 0;

    return NGX_OK;
}


/*
 * One spooled file at a time per worker is replayed, for the
 * destinations that are not waiting for a retry; after a look that
 * finds nothing, or a replay that fails, the next one waits a while.
 */

static void
ngx_http_lf_replay_next(ngx_http_lf_exporter_t *ex)
{
    uint32_t             ids[NGX_HTTP_LF_MAX_DESTS];
    uint32_t             blocked[NGX_HTTP_LF_MAX_DESTS];
    ngx_uint_t           i, k, n, nblocked;
    ngx_http_lf_dest_t  *dest;

    if (ex->lmcf->spool == NULL
        || ngx_exiting
        || ex->claiming
        || ex->replays
        || ex->inflight >= NGX_HTTP_LF_MAX_INFLIGHT)
    {
        return;
    }

    if (ex->spool_pause
        && ngx_current_msec - ex->last_claim < NGX_HTTP_LF_SPOOL_RESCAN)
    {
        return;
    }

    if (ngx_http_lf_queue_crowded(ex)) {
        return;
    }

    nblocked = ngx_http_lf_waiting_dests(ex, blocked);

    dest = ex->lmcf->dests.elts;
    n = 0;

    for (i = 0; i < ex->lmcf->dests.nelts && n < NGX_HTTP_LF_MAX_DESTS; i++)
    {
        for (k = 0; k < nblocked; k++) {
            if (blocked[k] == dest[i].id) {
                break;
            }
        }

        if (k == nblocked) {
            ids[n++] = dest[i].id;
        }
    }

    if (n == 0) {
        return;
    }

    ex->last_claim = ngx_current_msec;

    if (ngx_http_lf_spool_claim(ex->lmcf, ids, n) == NGX_OK) {
        ex->claiming = 1;
    }
}


void
ngx_http_lf_export_replay_none(ngx_uint_t again)
{
    ngx_http_lf_exporter_t  *ex;

    ex = &ngx_http_lf_exporter;

    ex->claiming = 0;
    ex->spool_pause = !again;
}


void
ngx_http_lf_export_replay(ngx_http_lf_spooled_t *sp, uint32_t id,
    u_char *events, size_t len, size_t *lens, ngx_uint_t count)
{
    ngx_http_lf_dest_t      *dest;
    ngx_http_lf_batch_t     *batch;
    ngx_http_lf_exporter_t  *ex;

    ex = &ngx_http_lf_exporter;

    ex->claiming = 0;
    ex->spool_pause = 0;

    dest = ngx_http_lf_find_dest(ex->lmcf, id);

    if (dest == NULL || ngx_exiting) {
        ngx_free(events);
        ngx_free(lens);
        ngx_http_lf_spool_release(sp, 0);
        ngx_http_lf_exit_wait(ex);
        return;
    }

    batch = ngx_http_lf_batch_create(ex, dest, events, len, lens, count);

    if (batch == NULL) {
        ngx_http_lf_spool_release(sp, 0);
        return;
    }

    batch->spooled = sp;
    ex->replays++;

    if (ngx_http_lf_batch_start(ex, batch) != NGX_OK) {
        ngx_http_lf_batch_free(ex, batch);
    }
}


/* the batch takes over events and lens */

static ngx_http_lf_batch_t *
ngx_http_lf_batch_create(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_dest_t *dest, u_char *events, size_t len, size_t *lens,
    ngx_uint_t count)
{
    ngx_http_lf_batch_t  *batch;

    batch = ngx_calloc(sizeof(ngx_http_lf_batch_t), ex->log);
    if (batch == NULL) {
        ngx_free(events);
        ngx_free(lens);
        return NULL;
    }

    batch->dest = dest;
    batch->events = events;
    batch->events_len = len;
    batch->lens = lens;
    batch->count = count;

    batch->retry.handler = ngx_http_lf_retry_handler;
    batch->retry.data = batch;
    batch->retry.log = ex->log;
    batch->retry.cancelable = 1;

    ngx_lf_buf_init(&batch->response, NGX_HTTP_LF_RESPONSE_MAX);

    /* compressed once: a retry sends the very same bytes */
    batch->body = ngx_http_lf_gzip(dest, events, len, &batch->body_len,
                                   ex->log);
    if (batch->body == NULL) {
        ngx_http_lf_batch_free(ex, batch);
        return NULL;
    }

    return batch;
}


static ngx_int_t
ngx_http_lf_batch_start(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch)
{
    CURL                *easy;
    CURLMcode            mcode;
    ngx_http_lf_dest_t  *dest;

    dest = batch->dest;

    if (batch->easy) {
        curl_easy_cleanup(batch->easy);
        batch->easy = NULL;
    }

    ngx_lf_buf_reset(&batch->response);
    batch->error[0] = '\0';
    batch->attempts++;

    if (batch->ms) {
        ngx_http_lf_multi_status_free(batch->ms);
        batch->ms = NULL;
    }

    easy = curl_easy_init();
    if (easy == NULL) {
        ngx_log_error(NGX_LOG_ALERT, ex->log, 0,
                      "langfuse: curl_easy_init() failed");
        return NGX_ERROR;
    }

    batch->easy = easy;

    if (batch->headers == NULL) {
        batch->headers = ngx_http_lf_headers(dest);

        if (batch->headers == NULL) {
            return NGX_ERROR;
        }
    }

    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, batch->headers);

    if (batch->probe) {
        curl_easy_setopt(easy, CURLOPT_URL, dest->projects_url.data);
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);

    } else {
        curl_easy_setopt(easy, CURLOPT_URL, dest->url.data);
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, batch->body);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) batch->body_len);
    }
    curl_easy_setopt(easy, CURLOPT_USERAGENT,
                     "nginx-langfuse/" NGX_LF_VERSION);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) ex->lmcf->connect_timeout);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) ex->lmcf->timeout);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER,
                     dest->ssl_verify ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST,
                     dest->ssl_verify ? 2L : 0L);

    if (dest->ca_file.len) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, dest->ca_file.data);
    }

    /* only Langfuse's own schemes; redirects are not followed at all */
#if (LIBCURL_VERSION_NUM >= 0x075500)
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS,
                     (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, ngx_http_lf_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, batch);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, batch->error);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, batch);

    mcode = curl_multi_add_handle(ex->multi, easy);

    if (mcode != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, ex->log, 0,
                      "langfuse: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mcode));
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&ex->batches, &batch->queue);
    batch->inflight = 1;
    ex->inflight++;

    if (!batch->probe) {
        ngx_http_lf_in_flight(ex->lmcf, dest->id, 1);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                   "langfuse export of %ui event(s), %uz bytes to \"%V\", "
                   "attempt %ui", batch->count, batch->body_len, &dest->url,
                   batch->attempts);

    return NGX_OK;
}


/* the request headers of a destination, or NULL */

static struct curl_slist *
ngx_http_lf_headers(ngx_http_lf_dest_t *dest)
{
    ngx_uint_t          i, n;
    const char         *header[5];
    struct curl_slist  *list, *next;

    n = 0;
    header[n++] = "Content-Type: application/json";
    header[n++] = "Content-Encoding: gzip";
    header[n++] = (char *) dest->auth_header.data;
    header[n++] = "Expect:";

    if (dest->protocol == NGX_LF_PROTO_OTLP) {
        header[n++] = "x-langfuse-ingestion-version: 4";
    }

    list = NULL;

    for (i = 0; i < n; i++) {
        /* on failure curl_slist_append() leaves the list as it was */
        next = curl_slist_append(list, header[i]);

        if (next == NULL) {
            ngx_http_lf_headers_free(list);
            return NULL;
        }

        list = next;
    }

    return list;
}


/* the copy of the Authorization header is not left in the heap */

static void
ngx_http_lf_headers_free(struct curl_slist *list)
{
    struct curl_slist  *h;

    for (h = list; h; h = h->next) {
        ngx_explicit_memzero(h->data, ngx_strlen(h->data));
    }

    curl_slist_free_all(list);
}


/*
 * The credential check: one worker asks each destination for its
 * project with the configured keys, once, and says so when they fail.
 */

static void
ngx_http_lf_probe(ngx_http_lf_exporter_t *ex)
{
    ngx_uint_t            i;
    ngx_http_lf_dest_t   *dest;
    ngx_http_lf_batch_t  *batch;

    dest = ex->lmcf->dests.elts;

    for (i = 0; i < ex->lmcf->dests.nelts; i++) {
        batch = ngx_calloc(sizeof(ngx_http_lf_batch_t), ex->log);
        if (batch == NULL) {
            return;
        }

        batch->dest = &dest[i];
        batch->probe = 1;
        ngx_lf_buf_init(&batch->response, NGX_HTTP_LF_RESPONSE_MAX);

        if (ngx_http_lf_batch_start(ex, batch) != NGX_OK) {
            ngx_http_lf_batch_free(ex, batch);
        }
    }
}


static void
ngx_http_lf_probe_done(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, CURLcode code)
{
    long     status;
    u_char   text[256];
    size_t   n;

    status = 0;
    curl_easy_getinfo(batch->easy, CURLINFO_RESPONSE_CODE, &status);

    n = ngx_http_lf_response_text(batch, text, sizeof(text));

    if (code != CURLE_OK) {
        ngx_log_error(NGX_LOG_WARN, ex->log, 0,
                      "langfuse: credential check of \"%V\" failed: %s",
                      &batch->dest->endpoint,
                      batch->error[0] ? batch->error
                                      : curl_easy_strerror(code));

    } else if (status == 401 || status == 403) {
        ngx_log_error(NGX_LOG_ERR, ex->log, 0,
                      "langfuse: \"%V\" does not accept the public key "
                      "\"%V\" with its secret key (status %l): \"%*s\"",
                      &batch->dest->endpoint, &batch->dest->public_key,
                      status, n, text);

    } else if (status < 200 || status > 299) {
        ngx_log_error(NGX_LOG_WARN, ex->log, 0,
                      "langfuse: credential check of \"%V\" answered "
                      "status %l: \"%*s\"", &batch->dest->endpoint,
                      status, n, text);

    } else {
        ngx_log_error(NGX_LOG_NOTICE, ex->log, 0,
                      "langfuse: \"%V\" accepts the public key \"%V\"",
                      &batch->dest->endpoint, &batch->dest->public_key);
    }

    ngx_http_lf_batch_free(ex, batch);
}


static void
ngx_http_lf_retry_handler(ngx_event_t *ev)
{
    ngx_http_lf_batch_t     *batch = ev->data;
    ngx_http_lf_exporter_t  *ex;

    ex = &ngx_http_lf_exporter;

    ngx_queue_remove(&batch->queue);
    batch->waiting = 0;

    if (ngx_http_lf_batch_start(ex, batch) != NGX_OK) {
        ngx_http_lf_batch_undelivered(ex, batch);
    }
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

        if (batch->probe) {
            ngx_http_lf_probe_done(ex, batch, msg->data.result);

        } else {
            ngx_http_lf_batch_done(ex, batch, msg->data.result);
        }
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

        } else {
            ngx_http_lf_spool_rest(ex);
        }

        if (ex->inflight == 0 && ngx_queue_empty(&ex->waiting)
            && ex->deadline.timer_set)
        {
            ngx_del_timer(&ex->deadline);
        }

        ngx_http_lf_exit_wait(ex);

        return;
    }

    if (ngx_http_lf_queue_count(ex->lmcf) >= ex->lmcf->batch_size) {
        ngx_http_lf_send_batches(ex);
    }

    ngx_http_lf_replay_next(ex);
}


/*
 * Connection errors, timeouts, 408, 429 and 5xx are retried with
 * exponential backoff and jitter (or after the server's Retry-After);
 * 413 splits the batch; any other refusal is final.
 */

static void
ngx_http_lf_batch_done(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, CURLcode code)
{
    long         status;
    u_char      *p, text[NGX_HTTP_LF_ERROR_LEN];
    const char  *reason;

    status = 0;
    curl_easy_getinfo(batch->easy, CURLINFO_RESPONSE_CODE, &status);

    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                   "langfuse export of %ui event(s) ended: %s, status %l, "
                   "attempt %ui", batch->count, curl_easy_strerror(code),
                   status, batch->attempts);

    ngx_queue_remove(&batch->queue);
    batch->inflight = 0;
    ex->inflight--;
    (void) curl_multi_remove_handle(ex->multi, batch->easy);

    ngx_http_lf_in_flight(ex->lmcf, batch->dest->id, -1);

    if (code != CURLE_OK) {
        reason = batch->error[0] ? batch->error : curl_easy_strerror(code);

        ngx_http_lf_stat(ex->lmcf, batch->dest->id, errors_network, 1);
        ngx_http_lf_stats_result(ex->lmcf, batch->dest->id,
                                 (u_char *) reason, ngx_strlen(reason));

        ngx_http_lf_batch_retry(ex, batch, reason, 0);
        return;
    }

    if (status < 200 || status > 299) {
        ngx_http_lf_stats_add(ex->lmcf, batch->dest->id,
                              status == 429
                              ? offsetof(ngx_http_lf_stats_t, errors_http_429)
                              : status >= 500
                              ? offsetof(ngx_http_lf_stats_t, errors_http_5xx)
                              : status >= 400
                              ? offsetof(ngx_http_lf_stats_t, errors_http_4xx)
                              : offsetof(ngx_http_lf_stats_t, errors_http_3xx),
                              1);
        ngx_http_lf_stats_add(ex->lmcf, batch->dest->id,
                              ngx_http_lf_status_counter(status), 1);

        p = ngx_snprintf(text, sizeof(text), "status %l: ", status);
        p += ngx_http_lf_response_text(batch, p, text + sizeof(text) - p);

        ngx_http_lf_stats_result(ex->lmcf, batch->dest->id, text, p - text);
    }

    if (status >= 200 && status <= 299) {
        if (status == 207) {
            ngx_http_lf_multi_status(ex, batch);

        } else {
            ngx_http_lf_stat(ex->lmcf, batch->dest->id, sent, batch->count);
        }

        if (batch->spooled) {
            ngx_http_lf_stat(ex->lmcf, batch->dest->id, replayed,
                             batch->count);
        }

        batch->taken = 1;
        ngx_http_lf_stat(ex->lmcf, batch->dest->id, batches_sent, 1);
        ngx_http_lf_stats_result(ex->lmcf, batch->dest->id, NULL, 0);
        ngx_http_lf_batch_free(ex, batch);
        return;
    }

    if (status == 408 || status == 429 || status >= 500) {
        ngx_http_lf_batch_retry(ex, batch, "temporary failure", status);
        return;
    }

    /* either way, a replayed file is done with */
    batch->taken = 1;

    if (status == 413 && batch->count > 1) {
        ngx_http_lf_batch_split(ex, batch);
        return;
    }

    if (status == 413 && ngx_http_lf_batch_shrink(ex, batch) == NGX_OK) {
        return;
    }

    ngx_http_lf_log_failure(ex, batch, "refused, events dropped", status);
    ngx_http_lf_stat(ex->lmcf, batch->dest->id, rejected, batch->count);
    ngx_http_lf_stat(ex->lmcf, batch->dest->id, batches_failed, 1);
    ngx_http_lf_batch_free(ex, batch);
}


static void
ngx_http_lf_batch_retry(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, const char *reason, long status)
{
    u_char      *p, text[NGX_HTTP_LF_ERROR_LEN];
    ngx_msec_t   delay;
    curl_off_t   after;
    ngx_uint_t   quitting;

    /* a quitting worker with a spool keeps the batch rather than wait */
    quitting = ngx_exiting && ex->lmcf->spool;

    if (batch->attempts > ex->lmcf->retries || quitting) {
        p = ngx_snprintf(text, sizeof(text) - 1, "%s, %s, %s", reason,
                         quitting ? "nginx is quitting" : "retries exhausted",
                         batch->spooled ? "the batch stays in the spool"
                         : ex->lmcf->spool ? "events spooled"
                         : "events dropped");
        *p = '\0';

        ngx_http_lf_log_failure(ex, batch, (char *) text, status);

        if (quitting) {
            ex->exit_spool = 1;
        }

        ngx_http_lf_batch_undelivered(ex, batch);
        return;
    }

    ngx_http_lf_log_failure(ex, batch, reason, status);

    /* full backoff doubled per attempt, jitter over its upper half */
    delay = NGX_HTTP_LF_BACKOFF_MAX;

    if (batch->attempts <= 6) {
        delay = ngx_min(NGX_HTTP_LF_BACKOFF << (batch->attempts - 1),
                        NGX_HTTP_LF_BACKOFF_MAX);
    }

    delay = delay / 2 + ngx_random() % (delay / 2 + 1);

    after = 0;

    if (status
        && batch->easy
        && curl_easy_getinfo(batch->easy, CURLINFO_RETRY_AFTER, &after)
           == CURLE_OK
        && after > 0)
    {
        delay = (ngx_msec_t) ngx_min(after, NGX_HTTP_LF_RETRY_AFTER_MAX)
                * 1000;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                   "langfuse retry of %ui event(s) in %M ms",
                   batch->count, delay);

    ngx_http_lf_stat(ex->lmcf, batch->dest->id, retried, batch->count);

    ngx_queue_insert_tail(&ex->waiting, &batch->queue);
    batch->waiting = 1;

    ngx_add_timer(&batch->retry, delay);
}


/* too large for the server: each half goes again, as its own batch */

static void
ngx_http_lf_batch_split(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch)
{
    u_char               *events, *copy;
    size_t                len, *lens;
    ngx_uint_t            i, k, count[2], first[2];
    ngx_http_lf_batch_t  *part;

    first[0] = 0;
    count[0] = batch->count / 2;
    first[1] = count[0];
    count[1] = batch->count - count[0];

    ngx_log_error(NGX_LOG_WARN, ex->log, 0,
                  "langfuse: \"%V\" refused a batch of %ui events as too "
                  "large, sending it in halves", &batch->dest->url,
                  batch->count);

    events = batch->events;

    for (i = 0; i < 2; i++) {
        len = 0;

        for (k = first[i]; k < first[i] + count[i]; k++) {
            len += batch->lens[k] + 1;
        }

        /* no comma after the last event */
        len--;

        copy = ngx_alloc(len, ex->log);
        lens = ngx_alloc(count[i] * sizeof(size_t), ex->log);

        part = NULL;

        if (copy && lens) {
            ngx_memcpy(copy, events, len);
            ngx_memcpy(lens, batch->lens + first[i],
                       count[i] * sizeof(size_t));

            /* takes copy and lens, and frees them when it fails */
            part = ngx_http_lf_batch_create(ex, batch->dest, copy, len, lens,
                                            count[i]);
            copy = NULL;
            lens = NULL;
        }

        if (part == NULL) {
            ngx_http_lf_stat(ex->lmcf, batch->dest->id, failed, count[i]);
            ngx_http_lf_stat(ex->lmcf, batch->dest->id, batches_failed, 1);

        } else if (ngx_http_lf_batch_start(ex, part) != NGX_OK) {
            ngx_http_lf_batch_undelivered(ex, part);
        }

        if (copy) {
            ngx_free(copy);
        }

        if (lens) {
            ngx_free(lens);
        }

        events += len + 1;
    }

    ngx_http_lf_batch_free(ex, batch);
}


/*
 * One event too large for the server: it goes again with its input and
 * output cut to an eighth of its size, until it is small; usage and the
 * rest stay whole.
 */

static ngx_int_t
ngx_http_lf_batch_shrink(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch)
{
    int                   cut;
    u_char               *wrapped, *copy;
    size_t                len, cap, *lens;
    yajl_gen              g;
    const u_char         *text;
    ngx_http_lf_batch_t  *part;

    if (batch->events_len < NGX_HTTP_LF_SHRINK_MIN) {
        return NGX_DECLINED;
    }

    cap = batch->events_len / 8;

    /* a legacy text is two events and a comma: parsed as one array */

    wrapped = ngx_alloc(batch->events_len + 2, ex->log);
    if (wrapped == NULL) {
        return NGX_DECLINED;
    }

    wrapped[0] = '[';
    ngx_memcpy(wrapped + 1, batch->events, batch->events_len);
    wrapped[batch->events_len + 1] = ']';

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        ngx_free(wrapped);
        return NGX_DECLINED;
    }

    cut = ngx_lf_event_shrink(g, wrapped, batch->events_len + 2, cap);

    ngx_free(wrapped);

    if (cut <= 0
        || yajl_gen_get_buf(g, &text, &len) != yajl_gen_status_ok
        || len < 2)
    {
        yajl_gen_free(g);
        return NGX_DECLINED;
    }

    /* the brackets go again */
    len -= 2;

    copy = ngx_alloc(len, ex->log);
    lens = ngx_alloc(sizeof(size_t), ex->log);

    if (copy == NULL || lens == NULL) {
        yajl_gen_free(g);

        if (copy) {
            ngx_free(copy);
        }

        if (lens) {
            ngx_free(lens);
        }

        return NGX_DECLINED;
    }

    ngx_memcpy(copy, text + 1, len);
    lens[0] = len;

    yajl_gen_free(g);

    ngx_log_error(NGX_LOG_WARN, ex->log, 0,
                  "langfuse: \"%V\" refused an event of %uz bytes as too "
                  "large, it goes again with its input and output cut to "
                  "%uz bytes", &batch->dest->url, batch->events_len, cap);

    part = ngx_http_lf_batch_create(ex, batch->dest, copy, len, lens, 1);

    if (part && ngx_http_lf_batch_start(ex, part) != NGX_OK) {
        ngx_http_lf_batch_undelivered(ex, part);

    } else if (part == NULL) {
        ngx_http_lf_stat(ex->lmcf, batch->dest->id, failed, 1);
    }

    ngx_http_lf_batch_free(ex, batch);

    return NGX_OK;
}


/*
 * The legacy API answers 207 with the events it took and those it
 * refused, each with a status.  A call with an event refused as invalid
 * is counted as rejected: it would be refused again.  The events that
 * failed for a reason that may pass go again, and only they, as a batch
 * of their own with the retries that this one has left.
 */

static void
ngx_http_lf_multi_status(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch)
{
    u_char                      *p, *r, *refused;
    size_t                       start, *lens;
    ngx_int_t                    i, n;
    ngx_uint_t                   k, nrefused, matched, events, sent;
    ngx_uint_t                   rejected, failed, again, final, temporary;
    ngx_lf_buf_t                 retry;
    ngx_lf_envelope_t            env[2];
    ngx_http_lf_batch_t         *part;
    ngx_http_lf_multi_status_t  *ms;

    /* an empty answer: no errors */

    if (batch->ms == NULL) {
        ngx_http_lf_stat(ex->lmcf, batch->dest->id, sent, batch->count);
        return;
    }

    ms = batch->ms;
    batch->ms = NULL;

    (void) ngx_lf_json_finish(&ms->json);

    if (ms->errors == 0) {
        ngx_http_lf_stat(ex->lmcf, batch->dest->id, sent, batch->count);
        goto done;
    }

    refused = ms->refused.data;
    nrefused = ms->refused.len / NGX_HTTP_LF_REFUSED_LEN;

    if (nrefused > 1) {
        ngx_qsort(refused, nrefused, NGX_HTTP_LF_REFUSED_LEN,
                  ngx_http_lf_refused_cmp);
    }

    ngx_lf_buf_init(&retry, 0);
    lens = NULL;
    events = 0;
    matched = 0;
    sent = 0;
    rejected = 0;
    failed = 0;
    again = 0;

    p = batch->events;

    for (k = 0; k < batch->count; k++) {
        n = ngx_lf_event_envelopes(p, batch->lens[k], env);
        events += n ? n : 2;

        final = 0;
        temporary = 0;

        for (i = 0; i < n; i++) {
            r = nrefused ? bsearch(env[i].id, refused, nrefused,
                                   NGX_HTTP_LF_REFUSED_LEN,
                                   ngx_http_lf_refused_cmp)
                         : NULL;
            if (r == NULL) {
                continue;
            }

            matched++;

            if (r[NGX_LF_EVENT_ID_LEN] == 't') {
                temporary |= 1 << i;

            } else {
                final = 1;
            }
        }

        p += batch->lens[k] + 1;

        if (final) {
            rejected++;
            continue;
        }

        if (temporary == 0) {
            sent++;
            continue;
        }

        if (lens == NULL) {
            lens = ngx_alloc(batch->count * sizeof(size_t), ex->log);
            if (lens == NULL) {
                failed++;
                continue;
            }
        }

        /* the call goes again with the events that failed */

        start = retry.len;

        for (i = 0; i < n; i++) {
            if (!(temporary & (1 << i))) {
                continue;
            }

            if ((retry.len && ngx_lf_buf_append(&retry, (u_char *) ",", 1)
                              != 0)
                || ngx_lf_buf_append(&retry, env[i].data, env[i].len) != 0)
            {
                break;
            }
        }

        if (i < n) {
            retry.len = start;
            failed++;
            continue;
        }

        lens[again++] = retry.len - start - (start ? 1 : 0);
    }

    /* refusals of no event in this batch: as many calls, at most */

    if (ms->errors > matched) {
        k = ngx_min(ms->errors - matched, sent);
        sent -= k;
        rejected += k;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, ex->log, 0,
                   "langfuse 207 answer: %ui call(s) taken, %ui rejected, "
                   "%ui to go again, %ui lost", sent, rejected, again,
                   failed);

    ngx_http_lf_stat(ex->lmcf, batch->dest->id, sent, sent);
    ngx_http_lf_stat(ex->lmcf, batch->dest->id, rejected, rejected);
    ngx_http_lf_stat(ex->lmcf, batch->dest->id, failed, failed);

    if (ms->invalid) {
        ngx_http_lf_log_refusal(ex, batch, ms->invalid, events, &ms->final);
    }

    if (again == 0) {
        ngx_lf_buf_free(&retry);

        if (lens) {
            ngx_free(lens);
        }

        goto done;
    }

    /* takes retry's data and lens, and frees them when it fails */
    part = ngx_http_lf_batch_create(ex, batch->dest, retry.data, retry.len,
                                    lens, again);
    if (part == NULL) {
        ngx_http_lf_stat(ex->lmcf, batch->dest->id, failed, again);
        goto done;
    }

    part->attempts = batch->attempts;
    (void) ngx_lf_buf_set(&part->response, ms->temporary.data,
                          ms->temporary.len);

    ngx_http_lf_batch_retry(ex, part, "temporary failure of some events",
                            207);

done:

    ngx_http_lf_multi_status_free(ms);
}


static ngx_http_lf_multi_status_t *
ngx_http_lf_multi_status_start(ngx_uint_t count, ngx_log_t *log)
{
    ngx_http_lf_multi_status_t  *ms;

    ms = ngx_calloc(sizeof(ngx_http_lf_multi_status_t), log);
    if (ms == NULL) {
        return NULL;
    }

    ngx_lf_buf_init(&ms->message, 512);
    ngx_lf_buf_init(&ms->final, 512);
    ngx_lf_buf_init(&ms->temporary, 512);

    /* whatever the answer says, two records per call at most */
    ngx_lf_buf_init(&ms->refused, 2 * count * NGX_HTTP_LF_REFUSED_LEN);

    if (ngx_lf_json_init(&ms->json, ngx_http_lf_multi_status_value, ms,
                         NGX_HTTP_LF_RESPONSE_MAX)
        != 0)
    {
        ngx_free(ms);
        return NULL;
    }

    return ms;
}


static void
ngx_http_lf_multi_status_free(ngx_http_lf_multi_status_t *ms)
{
    ngx_lf_json_free(&ms->json);
    ngx_lf_buf_free(&ms->message);
    ngx_lf_buf_free(&ms->final);
    ngx_lf_buf_free(&ms->temporary);
    ngx_lf_buf_free(&ms->refused);
    ngx_free(ms);
}


static int ngx_libc_cdecl
ngx_http_lf_refused_cmp(const void *one, const void *two)
{
    return ngx_memcmp(one, two, NGX_LF_EVENT_ID_LEN);
}


static int
ngx_http_lf_multi_status_value(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len)
{
    u_char                      *clean, kind;
    ngx_lf_buf_t                *reason;
    ngx_http_lf_multi_status_t  *ms = j->ctx;

    if (!ngx_lf_json_is(j, "errors[]")
        && ngx_lf_json_under(j, "errors[].") == NULL)
    {
        return 0;
    }

    switch (type) {

    case NGX_LF_JSON_MAP_START:
        ms->errors++;
        ms->id_len = 0;
        ms->status = 0;
        ngx_lf_buf_reset(&ms->message);
        return 0;

    case NGX_LF_JSON_MAP_END:
        if (ms->status == 408 || ms->status == 429 || ms->status >= 500) {
            kind = 't';
            reason = &ms->temporary;

        } else {
            kind = 'f';
            reason = &ms->final;
            ms->invalid++;
        }

        if (reason->len == 0) {
            (void) ngx_lf_buf_set(reason, ms->message.data,
                                  ms->message.len);
        }

        if (ms->id_len == NGX_LF_EVENT_ID_LEN) {
            (void) ngx_lf_buf_append(&ms->refused, ms->id, ms->id_len);
            (void) ngx_lf_buf_append(&ms->refused, &kind, 1);
        }

        return 0;

    case NGX_LF_JSON_NUMBER:
        if (ngx_lf_json_is(j, "errors[].status")
            && ngx_lf_json_int(v, len, &ms->status) != 0)
        {
            ms->status = 0;
        }

        return 0;

    case NGX_LF_JSON_STRING:
        break;

    default:
        return 0;
    }

    if (ngx_lf_json_is(j, "errors[].id")) {
        ms->id_len = 0;

        if (len == NGX_LF_EVENT_ID_LEN) {
            ngx_memcpy(ms->id, v, len);
            ms->id_len = len;
        }

        return 0;
    }

    if (ms->message.len == 0
        && (ngx_lf_json_is(j, "errors[].message")
            || ngx_lf_json_is(j, "errors[].error")))
    {
        len = ngx_min(len, 160);

        clean = malloc(3 * len + 1);
        if (clean) {
            len = ngx_lf_utf8_sanitize(clean, v, len);
            (void) ngx_lf_buf_append(&ms->message, clean, len);
            free(clean);
        }
    }

    return 0;
}


static void
ngx_http_lf_batch_free(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch)
{
    if (batch->spooled) {
        ex->replays--;

        if (!batch->taken) {
            ex->spool_pause = 1;
            ex->last_claim = ngx_current_msec;
        }

        ngx_http_lf_spool_release(batch->spooled, batch->taken);
    }

    if (batch->inflight) {
        ngx_queue_remove(&batch->queue);
        ex->inflight--;
        (void) curl_multi_remove_handle(ex->multi, batch->easy);

        if (!batch->probe) {
            ngx_http_lf_in_flight(ex->lmcf, batch->dest->id, -1);
        }

    } else if (batch->waiting) {
        ngx_queue_remove(&batch->queue);
    }

    if (batch->retry.timer_set) {
        ngx_del_timer(&batch->retry);
    }

    if (batch->easy) {
        curl_easy_cleanup(batch->easy);
    }

    ngx_http_lf_headers_free(batch->headers);
    ngx_lf_buf_free(&batch->response);

    if (batch->ms) {
        ngx_http_lf_multi_status_free(batch->ms);
    }

    if (batch->body) {
        ngx_free(batch->body);
    }

    if (batch->events) {
        ngx_free(batch->events);
    }

    if (batch->lens) {
        ngx_free(batch->lens);
    }

    ngx_free(batch);
}


static size_t
ngx_http_lf_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    ngx_http_lf_batch_t  *batch = userdata;

    long  status;

    (void) ngx_lf_buf_append(&batch->response, (u_char *) ptr,
                             size * nmemb);

    /* a 207 answer says which events failed, however long it is */

    if (batch->ms == NULL && !batch->probe) {
        status = 0;
        (void) curl_easy_getinfo(batch->easy, CURLINFO_RESPONSE_CODE,
                                 &status);

        if (status == 207) {
            batch->ms = ngx_http_lf_multi_status_start(
                                          batch->count,
                                          ngx_http_lf_exporter.log);
        }
    }

    if (batch->ms) {
        (void) ngx_lf_json_feed(&batch->ms->json, (u_char *) ptr,
                                size * nmemb);
    }

    return size * nmemb;
}


/*
 * The start of the server's answer as loggable text: valid UTF-8, no
 * control characters, and the secret key masked should a server ever
 * echo it back.
 */

static size_t
ngx_http_lf_response_text(ngx_http_lf_batch_t *batch, u_char *text,
    size_t size)
{
    u_char     *p, *last;
    size_t      n;
    ngx_str_t  *secret;

    n = ngx_min(batch->response.len, size / 3);
    n = ngx_lf_utf8_sanitize(text, batch->response.data, n);

    secret = &batch->dest->secret_key;
    last = text + n;

    for (p = text; secret->len && p + secret->len <= last; p++) {
        if (ngx_memcmp(p, secret->data, secret->len) == 0) {
            ngx_memset(p, '*', secret->len);
            p += secret->len - 1;
        }
    }

    /* one log line stays one line, whatever the server sent */
    for (p = text; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = ' ';
        }
    }

    return n;
}


/* as rate-limited as failures, with the first refusal's reason */

static void
ngx_http_lf_log_refusal(ngx_http_lf_exporter_t *ex,
    ngx_http_lf_batch_t *batch, ngx_uint_t invalid, ngx_uint_t events,
    ngx_lf_buf_t *message)
{
    if (ex->error_logged == ngx_time()) {
        ex->errors_unlogged++;
        return;
    }

    ex->error_logged = ngx_time();

    ngx_log_error(NGX_LOG_ERR, ex->log, 0,
                  "langfuse: \"%V\" refused %ui of %ui events as "
                  "invalid: \"%*s\" (%ui more failure(s) not logged)",
                  &batch->dest->url, invalid, events, message->len,
                  message->data, ex->errors_unlogged);

    ex->errors_unlogged = 0;
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

    n = ngx_http_lf_response_text(batch, text, sizeof(text));

    ngx_log_error(NGX_LOG_ERR, ex->log, 0,
                  "langfuse: export of %ui event(s) to \"%V\" failed: "
                  "%s, status %l, response \"%*s\" "
                  "(%ui more failure(s) not logged)",
                  batch->count, &batch->dest->url, reason, status,
                  n, text, ex->errors_unlogged);

    ex->errors_unlogged = 0;
}
