
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_lf_module.h"


/*
 * Serialized events wait in shared memory, oldest first, until a
 * worker's flush takes them.  The zone size is the byte budget: when
 * the slab is full, the new event goes to the spool, or without one is
 * dropped and counted.
 */


static ngx_uint_t ngx_http_lf_queue_takes(ngx_http_lf_main_conf_t *lmcf,
    ngx_http_lf_take_t *take, uint32_t id);


ngx_int_t
ngx_http_lf_queue_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_lf_main_conf_t  *olmcf = data;

    size_t                    len;
    ngx_http_lf_main_conf_t  *lmcf;

    lmcf = shm_zone->data;

    if (olmcf) {
        /*
         * a reload: the queue and its events carry over to the new
         * workers, and the old ones, once the new ones have started,
         * leave it to them
         */
        lmcf->sh = olmcf->sh;
        lmcf->shpool = olmcf->shpool;

        ngx_shmtx_lock(&lmcf->shpool->mutex);
        lmcf->generation = ++lmcf->sh->generation;
        ngx_shmtx_unlock(&lmcf->shpool->mutex);

        ngx_http_lf_spool_reload(olmcf, lmcf, shm_zone->shm.log);

        return NGX_OK;
    }

    lmcf->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        lmcf->sh = lmcf->shpool->data;
        lmcf->generation = lmcf->sh->generation;
        return NGX_OK;
    }

    lmcf->sh = ngx_slab_alloc(lmcf->shpool, sizeof(ngx_http_lf_shctx_t));
    if (lmcf->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(lmcf->sh, sizeof(ngx_http_lf_shctx_t));

    lmcf->shpool->data = lmcf->sh;

    ngx_queue_init(&lmcf->sh->queue);

    len = sizeof(" in langfuse zone \"\"") + shm_zone->shm.name.len;

    lmcf->shpool->log_ctx = ngx_slab_alloc(lmcf->shpool, len);
    if (lmcf->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(lmcf->shpool->log_ctx, " in langfuse zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full queue is expected under an outage; it is counted instead */
    lmcf->shpool->log_nomem = 0;

    lmcf->sh->pages = lmcf->shpool->pfree;

    return NGX_OK;
}


ngx_int_t
ngx_http_lf_queue_push(ngx_http_lf_main_conf_t *lmcf, uint32_t dest,
    const u_char *data, size_t len, ngx_log_t *log)
{
    time_t                now;
    uint64_t              dropped;
    ngx_http_lf_qnode_t  *node;
    ngx_http_lf_shctx_t  *sh;

    sh = lmcf->sh;

    if (len > NGX_HTTP_LF_BATCH_MAX_BYTES) {
        ngx_http_lf_stat(lmcf, dest, dropped_too_large, 1);

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "langfuse: event of %uz bytes is over the limit of "
                      "%uz and is dropped", len,
                      (size_t) NGX_HTTP_LF_BATCH_MAX_BYTES);
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    node = ngx_slab_alloc_locked(lmcf->shpool,
                                 offsetof(ngx_http_lf_qnode_t, data) + len);

    if (node == NULL && lmcf->spool) {
        ngx_shmtx_unlock(&lmcf->shpool->mutex);

        if (ngx_http_lf_export_overflow(lmcf, dest, data, len) == NGX_OK) {
            return NGX_OK;
        }

        ngx_shmtx_lock(&lmcf->shpool->mutex);
    }

    if (node == NULL) {
        ngx_http_lf_stats_locked(sh, dest)->dropped_queue_full++;
        sh->drop_reported++;

        now = ngx_time();
        dropped = 0;

        if (sh->drop_logged != now) {
            sh->drop_logged = now;
            dropped = sh->drop_reported;
            sh->drop_reported = 0;
        }

        ngx_shmtx_unlock(&lmcf->shpool->mutex);

        if (dropped) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "langfuse: queue is full%s, %uL event(s) "
                          "dropped since the last report (%uz bytes "
                          "queued)",
                          lmcf->spool ? " and the spool's writes lag "
                                        "behind" : "",
                          dropped, sh->bytes);
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "langfuse queue full: event of %uz bytes dropped",
                       len);

        return NGX_DECLINED;
    }

    node->dest = dest;
    node->len = len;
    ngx_memcpy(node->data, data, len);

    ngx_queue_insert_tail(&sh->queue, &node->queue);
    sh->bytes += len;
    sh->count++;
    ngx_http_lf_stats_locked(sh, dest)->queued++;

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    return NGX_OK;
}


/*
 * Takes the oldest event that the worker may take and up to max - 1
 * more for the same destination, within the batch byte limit, joined
 * with commas into worker memory so that the zone is freed before the
 * export starts.  lens gets each event's length, for splitting the
 * batch later.
 */

u_char *
ngx_http_lf_queue_pop(ngx_http_lf_main_conf_t *lmcf, ngx_uint_t max,
    ngx_http_lf_take_t *take, uint32_t *dest, size_t *len,
    ngx_uint_t *count, size_t **lens, ngx_log_t *log)
{
    u_char               *buf, *p;
    size_t                total, *l;
    ngx_uint_t            n, scanned;
    ngx_queue_t          *q, *next;
    ngx_http_lf_qnode_t  *node, *first;
    ngx_http_lf_shctx_t  *sh;

    sh = lmcf->sh;

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    first = NULL;
    total = 0;
    n = 0;
    scanned = 0;

    /* a batch is gathered from at most 4 * max events past its first */

    for (q = ngx_queue_head(&sh->queue);
         q != ngx_queue_sentinel(&sh->queue) && n < max
         && scanned < 4 * max;
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_lf_qnode_t, queue);

        if (first == NULL) {
            if (!ngx_http_lf_queue_takes(lmcf, take, node->dest)) {
                continue;
            }

            first = node;
        }

        scanned++;

        if (node->dest != first->dest) {
            continue;
        }

        if (n && total + node->len + 1 > NGX_HTTP_LF_BATCH_MAX_BYTES) {
            break;
        }

        total += node->len + 1;
        n++;
    }

    if (first == NULL) {
        ngx_shmtx_unlock(&lmcf->shpool->mutex);
        return NULL;
    }

    buf = ngx_alloc(total, log);
    l = ngx_alloc(n * sizeof(size_t), log);

    if (buf == NULL || l == NULL) {
        ngx_shmtx_unlock(&lmcf->shpool->mutex);

        if (buf) {
            ngx_free(buf);
        }

        if (l) {
            ngx_free(l);
        }

        return NULL;
    }

    *dest = first->dest;
    *count = n;
    *lens = l;

    p = buf;

    for (q = &first->queue;
         q != ngx_queue_sentinel(&sh->queue) && n;
         q = next)
    {
        next = ngx_queue_next(q);
        node = ngx_queue_data(q, ngx_http_lf_qnode_t, queue);

        if (node->dest != *dest) {
            continue;
        }

        if (p != buf) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, node->data, node->len);
        *l++ = node->len;

        ngx_queue_remove(q);
        sh->bytes -= node->len;
        sh->count--;
        n--;

        ngx_slab_free_locked(lmcf->shpool, node);
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    *len = p - buf;

    return buf;
}


/* with the zone locked */

static ngx_uint_t
ngx_http_lf_queue_takes(ngx_http_lf_main_conf_t *lmcf,
    ngx_http_lf_take_t *take, uint32_t id)
{
    ngx_uint_t  i;

    for (i = 0; i < take->nblocked; i++) {
        if (take->blocked[i] == id) {
            return 0;
        }
    }

    if (ngx_http_lf_find_dest(lmcf, id) == NULL) {
        return take->strangers;
    }

    if (!take->superseded) {
        return 1;
    }

    for (i = 0; i < lmcf->sh->nlive_dests; i++) {
        if (lmcf->sh->live_dests[i] == id) {
            return 0;
        }
    }

    return 1;
}


void
ngx_http_lf_queue_take(ngx_http_lf_main_conf_t *lmcf,
    ngx_http_lf_take_t *take)
{
    ngx_pid_t             elders[NGX_HTTP_LF_MAX_WORKERS];
    ngx_uint_t            i, n;
    ngx_http_lf_shctx_t  *sh;

    sh = lmcf->sh;
    n = 0;

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    take->superseded = sh->live != lmcf->generation;

    for (i = 0; i < NGX_HTTP_LF_MAX_WORKERS; i++) {
        if (sh->workers[i].pid
            && sh->workers[i].generation < lmcf->generation)
        {
            elders[n++] = sh->workers[i].pid;
        }
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    /* a killed worker leaves its slot behind */

    for (i = 0; i < n; i++) {
        if (!ngx_http_lf_process_gone(elders[i])) {
            break;
        }
    }

    take->strangers = !take->superseded && i == n;
}


ngx_uint_t
ngx_http_lf_queue_count(ngx_http_lf_main_conf_t *lmcf)
{
    ngx_uint_t  n;

    ngx_shmtx_lock(&lmcf->shpool->mutex);
    n = lmcf->sh->count;
    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    return n;
}


/*
 * The counters of a destination, found by its id; a new id takes a free
 * slot, and when none is left the last slot counts for all the rest.
 */

ngx_http_lf_stats_t *
ngx_http_lf_stats_locked(ngx_http_lf_shctx_t *sh, uint32_t dest)
{
    ngx_uint_t            i;
    ngx_http_lf_stats_t  *st;

    for (i = 0; i < sh->ndests; i++) {
        if (sh->dests[i].dest == dest) {
            return &sh->dests[i];
        }
    }

    if (sh->ndests == NGX_HTTP_LF_MAX_DESTS) {
        return &sh->dests[NGX_HTTP_LF_MAX_DESTS - 1];
    }

    st = &sh->dests[sh->ndests++];
    st->dest = dest;

    return st;
}


void
ngx_http_lf_stats_add(ngx_http_lf_main_conf_t *lmcf, uint32_t dest,
    size_t offset, uint64_t n)
{
    ngx_http_lf_stats_t  *st;

    if (lmcf->sh == NULL) {
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    st = ngx_http_lf_stats_locked(lmcf->sh, dest);
    *(uint64_t *) ((u_char *) st + offset) += n;

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


/* the outcome of an export: a success, or the error text to show */

void
ngx_http_lf_stats_result(ngx_http_lf_main_conf_t *lmcf, uint32_t dest,
    const u_char *error, size_t len)
{
    ngx_http_lf_stats_t  *st;

    if (lmcf->sh == NULL) {
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    st = ngx_http_lf_stats_locked(lmcf->sh, dest);

    if (error == NULL) {
        st->last_success = ngx_time();

    } else {
        st->last_failure = ngx_time();
        st->last_error_len = ngx_min(len, NGX_HTTP_LF_ERROR_LEN);
        ngx_memcpy(st->last_error, error, st->last_error_len);
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


static ngx_http_lf_worker_slot_t  *ngx_http_lf_slot;


/* not "alive": a process of another user answers EPERM, and is there */

ngx_uint_t
ngx_http_lf_process_gone(ngx_pid_t pid)
{
    return kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH;
}


/*
 * A worker takes a free slot, or the slot of a process that is gone,
 * at start, and gives it back at exit.  The first worker of a new
 * configuration makes it the live one.
 */

void
ngx_http_lf_worker_slot(ngx_http_lf_main_conf_t *lmcf, ngx_uint_t take)
{
    ngx_uint_t                  i;
    ngx_http_lf_dest_t         *dest;
    ngx_http_lf_shctx_t        *sh;
    ngx_http_lf_worker_slot_t  *slot;

    sh = lmcf->sh;

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    if (!take) {
        if (ngx_http_lf_slot) {
            ngx_memzero(ngx_http_lf_slot, sizeof(ngx_http_lf_worker_slot_t));
            ngx_http_lf_slot = NULL;
        }

        ngx_shmtx_unlock(&lmcf->shpool->mutex);
        return;
    }

    for (i = 0; i < NGX_HTTP_LF_MAX_WORKERS; i++) {
        slot = &sh->workers[i];

        if (slot->pid == 0 || ngx_http_lf_process_gone(slot->pid)) {
            ngx_memzero(slot, sizeof(ngx_http_lf_worker_slot_t));
            slot->pid = ngx_pid;
            slot->generation = lmcf->generation;
            ngx_http_lf_slot = slot;
            break;
        }
    }

    if (sh->live < lmcf->generation) {
        sh->live = lmcf->generation;
        sh->nlive_dests = lmcf->dests.nelts;
        dest = lmcf->dests.elts;

        for (i = 0; i < lmcf->dests.nelts; i++) {
            sh->live_dests[i] = dest[i].id;
        }
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


void
ngx_http_lf_in_flight(ngx_http_lf_main_conf_t *lmcf, uint32_t dest,
    ngx_int_t delta)
{
    ngx_http_lf_stats_t  *st;

    if (ngx_http_lf_slot == NULL) {
        /* more workers than slots: this one is not shown */
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    st = ngx_http_lf_stats_locked(lmcf->sh, dest);
    ngx_http_lf_slot->in_flight[st - lmcf->sh->dests] += delta;

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


/* in a copy of the zone: the slots of processes that are gone go */

void
ngx_http_lf_in_flight_prune(ngx_http_lf_shctx_t *snap)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_LF_MAX_WORKERS; i++) {
        if (snap->workers[i].pid
            && ngx_http_lf_process_gone(snap->workers[i].pid))
        {
            ngx_memzero(&snap->workers[i], sizeof(ngx_http_lf_worker_slot_t));
        }
    }
}


uint64_t
ngx_http_lf_in_flight_total(ngx_http_lf_shctx_t *snap, ngx_uint_t n)
{
    uint64_t    total;
    ngx_uint_t  i;

    total = 0;

    for (i = 0; i < NGX_HTTP_LF_MAX_WORKERS; i++) {
        total += snap->workers[i].in_flight[n];
    }

    return total;
}
