
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_lf_module.h"


/*
 * The disk spool.  Batches that Langfuse did not take within the retry
 * budget, the queue's overflow and what the last workers hold when
 * nginx quits wait in a directory, one batch per file, until a worker
 * replays them, oldest first.
 *
 * Every file operation runs in a thread pool: a slow disk slows the
 * spool, never a worker's event loop.  A file is written under a
 * temporary name, synced and then renamed, so that a crash leaves a
 * whole batch or none.  A worker that replays a file claims it by
 * renaming it with its owner name, its pid and a random token; the file
 * is removed once Langfuse takes the batch and gets its name back when
 * Langfuse does not.  The claim of a worker that died is taken back at
 * the next look, also by a new worker that got the same pid (one worker
 * in a container after a restart).
 *
 * Names sort by age: "<ms>-<dest>-<pid>-<seq>-<events>.batch", the time
 * in 16 hex digits, the destination id in 8.  The first line of a file
 * says what it holds; each event follows on a line of its own
 * (serialized events have no raw newlines).
 */


#if (NGX_THREADS)

#include <sys/file.h>


#define NGX_HTTP_LF_SPOOL_NAME          128
#define NGX_HTTP_LF_SPOOL_TOKEN         8
#define NGX_HTTP_LF_SPOOL_OWNER                                              \
    (NGX_INT32_LEN + 1 + NGX_HTTP_LF_SPOOL_TOKEN + 1)
/* the longest waiting name that still takes a claim's suffix */
#define NGX_HTTP_LF_SPOOL_BASE_MAX                                           \
    (NGX_HTTP_LF_SPOOL_NAME - sizeof("-claimed-") - NGX_HTTP_LF_SPOOL_OWNER)
#define NGX_HTTP_LF_SPOOL_HEADER        1024
#define NGX_HTTP_LF_SPOOL_STALE         3600
#define NGX_HTTP_LF_SPOOL_DROPS         8
#define NGX_HTTP_LF_SPOOL_CANDIDATES    64
#define NGX_HTTP_LF_SPOOL_FILE_MAX      (2 * NGX_HTTP_LF_BATCH_MAX_BYTES)

#define NGX_HTTP_LF_SPOOL_MAGIC         "langfuse-spool/1 dest="


typedef enum {
    NGX_HTTP_LF_SPOOL_WRITE = 0,
    NGX_HTTP_LF_SPOOL_CLAIM,
    NGX_HTTP_LF_SPOOL_RELEASE
} ngx_http_lf_spool_op_e;


typedef enum {
    NGX_HTTP_LF_SPOOL_OTHER = 0,
    NGX_HTTP_LF_SPOOL_BATCH,
    NGX_HTTP_LF_SPOOL_CLAIMED,
    NGX_HTTP_LF_SPOOL_TEMP
} ngx_http_lf_spool_kind_e;


typedef struct {
    uint32_t                    dest;
    uint64_t                    events;
} ngx_http_lf_spool_drop_t;


/* a spooled file as a directory listing shows it */
typedef struct {
    u_char                      name[NGX_HTTP_LF_SPOOL_NAME];
    off_t                       size;
    uint32_t                    dest;
    ngx_uint_t                  count;
} ngx_http_lf_spool_entry_t;


/*
 * One operation on the spool, handed to a thread and back: the thread
 * touches nothing but this and the directory.
 */

struct ngx_http_lf_spooled_s {
    ngx_thread_task_t          *task;
    ngx_http_lf_spool_op_e      op;
    ngx_http_lf_spool_conf_t   *conf;
    ngx_pid_t                   pid;
    u_char                      owner[NGX_HTTP_LF_SPOOL_OWNER];
    time_t                      now;

    /* the batch written, or read back by a claim */
    uint32_t                    dest;
    u_char                     *events;     /* comma-joined */
    size_t                      len;
    size_t                     *lens;
    ngx_uint_t                  count;
    ngx_uint_t                  seq;
    u_char                      header[NGX_HTTP_LF_SPOOL_HEADER];
    size_t                      header_len;

    /*
     * a claim takes the oldest file of an allowed destination: first
     * from the candidates the last look listed, then after a new look
     */
    uint32_t                    allowed[NGX_HTTP_LF_MAX_DESTS];
    ngx_uint_t                  nallowed;
    uint32_t                    known[NGX_HTTP_LF_MAX_DESTS];
    ngx_uint_t                  nknown;
    ngx_http_lf_spool_entry_t  *candidates;
    ngx_uint_t                  ncandidates;

    u_char                      name[NGX_HTTP_LF_SPOOL_NAME];
    off_t                       size;       /* of the file */
    ngx_uint_t                  delivered;
    unsigned                    evict:1;    /* the spool may be full */

    /* what the thread did */
    ngx_err_t                   err;
    const char                 *failed;     /* the call that failed */
    const char                 *bad;        /* why a file is no batch */
    unsigned                    found:1;
    unsigned                    scanned:1;
    ngx_uint_t                  recovered;  /* claims of exited workers */
    ngx_uint_t                  orphans;    /* files of unknown dests */
    ngx_uint_t                  files;
    off_t                       bytes;
    ngx_uint_t                  ndrops;
    ngx_http_lf_spool_drop_t    drops[NGX_HTTP_LF_SPOOL_DROPS];
};


typedef struct {
    ngx_http_lf_main_conf_t    *lmcf;
    ngx_log_t                  *log;
    ngx_uint_t                  busy;       /* tasks not back yet */
    ngx_uint_t                  writing;
    ngx_uint_t                  sync;       /* no thread pool any more */
    ngx_uint_t                  seq;
    u_char                      owner[NGX_HTTP_LF_SPOOL_OWNER];

    /* the rest of the last look's list, oldest first */
    ngx_http_lf_spool_entry_t  *candidates;
    ngx_uint_t                  ncandidates;

    time_t                      logged[3];      /* by operation */
    ngx_uint_t                  unlogged[3];
    time_t                      drop_logged;
    uint64_t                    drops_unlogged;
    unsigned                    orphans_logged:1;
} ngx_http_lf_spool_worker_t;


static ngx_http_lf_spooled_t *ngx_http_lf_spool_task(
    ngx_http_lf_main_conf_t *lmcf, ngx_http_lf_spool_op_e op);
static ngx_int_t ngx_http_lf_spool_post(ngx_http_lf_spooled_t *sp);
static void ngx_http_lf_spool_thread(void *data, ngx_log_t *log);
static void ngx_http_lf_spool_write_file(ngx_http_lf_spooled_t *sp,
    int dfd);
static void ngx_http_lf_spool_claim_file(ngx_http_lf_spooled_t *sp,
    int dfd);
static ngx_uint_t ngx_http_lf_spool_take(ngx_http_lf_spooled_t *sp,
    int dfd);
static void ngx_http_lf_spool_claimed(u_char *buf, u_char *name,
    u_char *owner);
static void ngx_http_lf_spool_release_file(ngx_http_lf_spooled_t *sp,
    int dfd);
static ngx_int_t ngx_http_lf_spool_scan(ngx_http_lf_spooled_t *sp,
    int dfd, ngx_http_lf_spool_entry_t **entries, ngx_uint_t *n);
static void ngx_http_lf_spool_evict(ngx_http_lf_spooled_t *sp, int dfd,
    ngx_http_lf_spool_entry_t *entries, ngx_uint_t n);
static ngx_int_t ngx_http_lf_spool_load(ngx_http_lf_spooled_t *sp,
    int dfd, u_char *claimed);
static ngx_http_lf_spool_kind_e ngx_http_lf_spool_kind(u_char *name,
    size_t len, uint32_t *dest, ngx_uint_t *count, ngx_pid_t *pid,
    size_t *base, u_char **owner);
static u_char *ngx_http_lf_spool_owner(u_char *p, u_char *last,
    ngx_pid_t *pid);
static ngx_int_t ngx_http_lf_spool_hex(u_char *p, size_t n, uint64_t *v);
static ngx_int_t ngx_http_lf_spool_write_all(int fd, u_char *p,
    size_t len);
static int ngx_libc_cdecl ngx_http_lf_spool_cmp(const void *one,
    const void *two);
static void ngx_http_lf_spool_done(ngx_event_t *ev);
static void ngx_http_lf_spool_written(ngx_http_lf_spooled_t *sp);
static void ngx_http_lf_spool_totals(ngx_http_lf_spooled_t *sp);
static void ngx_http_lf_spool_error(ngx_http_lf_spooled_t *sp,
    ngx_uint_t lost);


static ngx_http_lf_spool_worker_t  ngx_http_lf_spool_worker;


/* the old workers spool there as they leave: nobody replays it */

void
ngx_http_lf_spool_reload(ngx_http_lf_main_conf_t *old,
    ngx_http_lf_main_conf_t *lmcf, ngx_log_t *log)
{
    if (old->spool == NULL
        || (lmcf->spool
            && ngx_strcmp(lmcf->spool->path.data, old->spool->path.data)
               == 0))
    {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "langfuse: the spool \"%V\" is no longer configured: "
                  "what is in it, and what the old workers write there as "
                  "they leave, is replayed only once a configuration names "
                  "it again", &old->spool->path);
}


void
ngx_http_lf_spool_init_process(ngx_http_lf_main_conf_t *lmcf,
    ngx_log_t *log)
{
    u_char                       token[NGX_HTTP_LF_SPOOL_TOKEN + 1];
    ngx_err_t                    err;
    ngx_file_info_t              fi;
    ngx_http_lf_spool_worker_t  *sw;

    sw = &ngx_http_lf_spool_worker;

    ngx_memzero(sw, sizeof(ngx_http_lf_spool_worker_t));
    sw->lmcf = lmcf;
    sw->log = log;

    ngx_http_lf_random_hex(token, NGX_HTTP_LF_SPOOL_TOKEN);
    ngx_sprintf(sw->owner, "%P.%s%Z", ngx_pid, token);

    /* a spool that cannot work is said at start, not at the first outage */

    if (ngx_worker != 0 && ngx_process != NGX_PROCESS_SINGLE) {
        return;
    }

    err = 0;

    if (ngx_file_info(lmcf->spool->path.data, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;

    } else if (!ngx_is_dir(&fi)) {
        err = NGX_ENOTDIR;

    } else if (access((char *) lmcf->spool->path.data, R_OK | W_OK | X_OK)
               == -1)
    {
        err = ngx_errno;
    }

    if (err) {
        ngx_log_error(NGX_LOG_ERR, log, err,
                      "langfuse: spool \"%V\" is not usable by the "
                      "workers: events that Langfuse does not take in "
                      "time will be lost", &lmcf->spool->path);
    }
}


/*
 * A worker past its event loop (a fast shutdown) has no thread pool
 * left and nothing else to do: it writes its files itself.
 */

void
ngx_http_lf_spool_exit(void)
{
    ngx_http_lf_spool_worker.sync = 1;
}


ngx_uint_t
ngx_http_lf_spool_busy(void)
{
    return ngx_http_lf_spool_worker.busy;
}


ngx_uint_t
ngx_http_lf_spool_writing(void)
{
    return ngx_http_lf_spool_worker.writing;
}


/* takes events and lens, whatever becomes of them */

ngx_int_t
ngx_http_lf_spool_write(ngx_http_lf_main_conf_t *lmcf,
    ngx_http_lf_dest_t *dest, u_char *events, size_t len, size_t *lens,
    ngx_uint_t count)
{
    u_char                      *p, *last;
    size_t                       i;
    ngx_http_lf_spooled_t       *sp;
    ngx_http_lf_spool_worker_t  *sw;

    sw = &ngx_http_lf_spool_worker;

    sp = ngx_http_lf_spool_task(lmcf, NGX_HTTP_LF_SPOOL_WRITE);
    if (sp == NULL) {
        ngx_free(events);
        ngx_free(lens);
        ngx_http_lf_stat(lmcf, dest->id, dropped_spool_error, count);
        return NGX_ERROR;
    }

    sp->dest = dest->id;
    sp->events = events;
    sp->len = len;
    sp->lens = lens;
    sp->count = count;
    sp->seq = sw->seq++;

    ngx_sprintf(sp->name, "%016xL-%08xD-%P-%ui-%ui.batch%Z",
                (uint64_t) ngx_http_lf_now_ms(), dest->id, ngx_pid,
                sp->seq, count);

    /* for a reader of the file: where it goes, control bytes left out */

    last = sp->header + NGX_HTTP_LF_SPOOL_HEADER - 1;
    p = ngx_slprintf(sp->header, last, NGX_HTTP_LF_SPOOL_MAGIC "%08xD "
                     "events=%ui url=%V public_key=", dest->id, count,
                     &dest->url);

    for (i = 0; i < dest->public_key.len && p < last; i++) {
        *p++ = (dest->public_key.data[i] < 0x20
                || dest->public_key.data[i] == 0x7f)
               ? '?' : dest->public_key.data[i];
    }

    *p++ = '\n';
    sp->header_len = p - sp->header;

    /* only a spool that may be full is looked at to drop files */

    sp->size = sp->header_len + len + 1;

    ngx_shmtx_lock(&lmcf->shpool->mutex);
    sp->evict = (lmcf->sh->spool_bytes + sp->size > sp->conf->max_size);
    ngx_shmtx_unlock(&lmcf->shpool->mutex);

    sw->writing++;

    if (ngx_http_lf_spool_post(sp) != NGX_OK) {
        sw->writing--;
        ngx_http_lf_stat(lmcf, dest->id, dropped_spool_error, count);
        ngx_free(events);
        ngx_free(lens);
        ngx_free(sp->task);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* asks for the oldest file of the destinations given */

ngx_int_t
ngx_http_lf_spool_claim(ngx_http_lf_main_conf_t *lmcf, uint32_t *dests,
    ngx_uint_t n)
{
    ngx_uint_t                   i;
    ngx_http_lf_dest_t          *dest;
    ngx_http_lf_spooled_t       *sp;
    ngx_http_lf_spool_worker_t  *sw;

    sw = &ngx_http_lf_spool_worker;

    sp = ngx_http_lf_spool_task(lmcf, NGX_HTTP_LF_SPOOL_CLAIM);
    if (sp == NULL) {
        return NGX_ERROR;
    }

    sp->nallowed = ngx_min(n, NGX_HTTP_LF_MAX_DESTS);
    ngx_memcpy(sp->allowed, dests, sp->nallowed * sizeof(uint32_t));

    dest = lmcf->dests.elts;

    for (i = 0; i < lmcf->dests.nelts && i < NGX_HTTP_LF_MAX_DESTS; i++) {
        sp->known[sp->nknown++] = dest[i].id;
    }

    sp->candidates = sw->candidates;
    sp->ncandidates = sw->ncandidates;
    sw->candidates = NULL;
    sw->ncandidates = 0;

    if (ngx_http_lf_spool_post(sp) != NGX_OK) {
        sw->candidates = sp->candidates;
        sw->ncandidates = sp->ncandidates;
        ngx_free(sp->task);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The end of a replay: a delivered (or finally refused) file goes, any
 * other gets its name back for a later try.
 */

void
ngx_http_lf_spool_release(ngx_http_lf_spooled_t *sp, ngx_uint_t delivered)
{
    /* the claim's look at the directory is old news by now */

    sp->op = NGX_HTTP_LF_SPOOL_RELEASE;
    sp->delivered = delivered;
    sp->err = 0;
    sp->failed = NULL;
    sp->bad = NULL;
    sp->found = 0;
    sp->scanned = 0;
    sp->recovered = 0;
    sp->orphans = 0;

    if (ngx_http_lf_spool_post(sp) != NGX_OK) {
        /* the claim stays until this worker is gone, then is taken back */
        ngx_free(sp->task);
    }
}


static ngx_http_lf_spooled_t *
ngx_http_lf_spool_task(ngx_http_lf_main_conf_t *lmcf,
    ngx_http_lf_spool_op_e op)
{
    ngx_thread_task_t      *task;
    ngx_http_lf_spooled_t  *sp;

    task = ngx_calloc(sizeof(ngx_thread_task_t)
                      + sizeof(ngx_http_lf_spooled_t),
                      ngx_http_lf_spool_worker.log);
    if (task == NULL) {
        return NULL;
    }

    sp = (ngx_http_lf_spooled_t *) (task + 1);

    task->ctx = sp;
    task->handler = ngx_http_lf_spool_thread;
    task->event.handler = ngx_http_lf_spool_done;
    task->event.data = task;
    task->event.log = ngx_http_lf_spool_worker.log;

    sp->task = task;
    sp->op = op;
    sp->conf = lmcf->spool;
    sp->pid = ngx_pid;
    ngx_memcpy(sp->owner, ngx_http_lf_spool_worker.owner,
               NGX_HTTP_LF_SPOOL_OWNER);

    return sp;
}


/* the task may be done, and freed, when this returns NGX_OK */

static ngx_int_t
ngx_http_lf_spool_post(ngx_http_lf_spooled_t *sp)
{
    ngx_http_lf_spool_worker_t  *sw;

    sw = &ngx_http_lf_spool_worker;

    sp->now = ngx_time();

    if (sw->sync) {
        sw->busy++;
        ngx_http_lf_spool_thread(sp, sw->log);
        ngx_http_lf_spool_done(&sp->task->event);
        return NGX_OK;
    }

    if (ngx_thread_task_post(sp->conf->thread_pool, sp->task) != NGX_OK) {
        return NGX_ERROR;
    }

    sw->busy++;

    return NGX_OK;
}


/* in a thread of the pool: no logging here, the worker does it */

static void
ngx_http_lf_spool_thread(void *data, ngx_log_t *log)
{
    ngx_http_lf_spooled_t  *sp = data;

    int  dfd;

    dfd = open((char *) sp->conf->path.data,
               O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (dfd == -1 && ngx_errno == NGX_ENOENT) {
        /* removed while nginx runs: made again, as at start */
        if (mkdir((char *) sp->conf->path.data, 0700) == 0
            || ngx_errno == NGX_EEXIST)
        {
            dfd = open((char *) sp->conf->path.data,
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
    }

    if (dfd == -1) {
        sp->err = ngx_errno;
        sp->failed = "open() of the directory";
        sp->name[0] = '\0';
        return;
    }

    switch (sp->op) {

    case NGX_HTTP_LF_SPOOL_WRITE:
        ngx_http_lf_spool_write_file(sp, dfd);
        break;

    case NGX_HTTP_LF_SPOOL_CLAIM:
        ngx_http_lf_spool_claim_file(sp, dfd);
        break;

    default: /* NGX_HTTP_LF_SPOOL_RELEASE */
        ngx_http_lf_spool_release_file(sp, dfd);
        break;
    }

    close(dfd);
}


/*
 * Directory changes go under an flock() of ".lock": workers and the
 * threads within one worker exclude each other.
 */

static int
ngx_http_lf_spool_lock(ngx_http_lf_spooled_t *sp, int dfd)
{
    int  fd;

    fd = openat(dfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    if (fd == -1) {
        sp->err = ngx_errno;
        sp->failed = "open(\".lock\")";
        return -1;
    }

    while (flock(fd, LOCK_EX) == -1) {
        if (ngx_errno != NGX_EINTR) {
            sp->err = ngx_errno;
            sp->failed = "flock()";
            close(fd);
            return -1;
        }
    }

    return fd;
}


static void
ngx_http_lf_spool_unlock(int fd)
{
    /* closing the file drops the lock */
    close(fd);
}


static void
ngx_http_lf_spool_write_file(ngx_http_lf_spooled_t *sp, int dfd)
{
    int                         fd, lock;
    u_char                      temp[NGX_HTTP_LF_SPOOL_NAME];
    size_t                      off;
    ngx_uint_t                  i, n;
    ngx_http_lf_spool_entry_t  *entries;

    /* the separators become newlines: one event per line */

    if (ngx_strlchr(sp->events, sp->events + sp->len, '\n') != NULL) {
        sp->err = NGX_EINVAL;
        sp->failed = "an event with a newline, write()";
        return;
    }

    off = 0;

    for (i = 0; i + 1 < sp->count; i++) {
        off += sp->lens[i];
        sp->events[off++] = '\n';
    }

    ngx_sprintf(temp, ".tmp-%s-%ui%Z", sp->owner, sp->seq);

    fd = openat(dfd, (char *) temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                0600);

    if (fd == -1) {
        sp->err = ngx_errno;
        sp->failed = "open()";
        return;
    }

    if (ngx_http_lf_spool_write_all(fd, sp->header, sp->header_len)
        != NGX_OK
        || ngx_http_lf_spool_write_all(fd, sp->events, sp->len) != NGX_OK
        || ngx_http_lf_spool_write_all(fd, (u_char *) "\n", 1) != NGX_OK)
    {
        sp->err = ngx_errno;
        sp->failed = "write()";
        goto failed;
    }

    /* on disk before it has its name: no torn batch after a crash */

    if (fsync(fd) == -1) {
        sp->err = ngx_errno;
        sp->failed = "fsync()";
        goto failed;
    }

    if (close(fd) == -1) {
        fd = -1;
        sp->err = ngx_errno;
        sp->failed = "close()";
        goto failed;
    }

    fd = -1;

    lock = ngx_http_lf_spool_lock(sp, dfd);
    if (lock == -1) {
        goto failed;
    }

    if (renameat(dfd, (char *) temp, dfd, (char *) sp->name) == -1) {
        sp->err = ngx_errno;
        sp->failed = "rename()";
        ngx_http_lf_spool_unlock(lock);
        goto failed;
    }

    (void) fsync(dfd);

    if (!sp->evict) {
        /* void */

    } else if (ngx_http_lf_spool_scan(sp, dfd, &entries, &n) == NGX_OK) {
        ngx_http_lf_spool_evict(sp, dfd, entries, n);
        free(entries);

    } else {
        /* the batch is written; only the size check is missed */
        sp->err = 0;
        sp->failed = NULL;
    }

    ngx_http_lf_spool_unlock(lock);

    return;

failed:

    if (fd != -1) {
        close(fd);
    }

    (void) unlinkat(dfd, (char *) temp, 0);
}


/* a full spool drops its oldest files until the new one fits */

static void
ngx_http_lf_spool_evict(ngx_http_lf_spooled_t *sp, int dfd,
    ngx_http_lf_spool_entry_t *entries, ngx_uint_t n)
{
    ngx_uint_t                  i, k;
    ngx_http_lf_spool_drop_t   *drop;

    for (i = 0; i < n && sp->bytes > sp->conf->max_size; i++) {

        if (unlinkat(dfd, (char *) entries[i].name, 0) == -1) {
            continue;
        }

        sp->bytes -= entries[i].size;
        sp->files--;

        for (k = 0; k < sp->ndrops; k++) {
            if (sp->drops[k].dest == entries[i].dest) {
                break;
            }
        }

        if (k == sp->ndrops) {
            if (sp->ndrops < NGX_HTTP_LF_SPOOL_DROPS) {
                sp->ndrops++;

            } else {
                /* more destinations than slots: the last one counts */
                k = NGX_HTTP_LF_SPOOL_DROPS - 1;
            }

            drop = &sp->drops[k];

            if (drop->events == 0) {
                drop->dest = entries[i].dest;
            }

        } else {
            drop = &sp->drops[k];
        }

        drop->events += entries[i].count;
    }
}


static void
ngx_http_lf_spool_claim_file(ngx_http_lf_spooled_t *sp, int dfd)
{
    int                         lock;
    u_char                      claimed[NGX_HTTP_LF_SPOOL_NAME];
    u_char                      bad[NGX_HTTP_LF_SPOOL_NAME + 4];
    ngx_int_t                   rc;
    ngx_uint_t                  i, k, n, m, taken;
    ngx_http_lf_spool_entry_t  *entries, *list;

    lock = ngx_http_lf_spool_lock(sp, dfd);
    if (lock == -1) {
        return;
    }

    taken = ngx_http_lf_spool_take(sp, dfd);

    if (!taken) {

        /* a new look: its oldest files of allowed destinations are kept */

        free(sp->candidates);
        sp->candidates = NULL;
        sp->ncandidates = 0;

        if (ngx_http_lf_spool_scan(sp, dfd, &entries, &n) != NGX_OK) {
            ngx_http_lf_spool_unlock(lock);
            return;
        }

        list = malloc(NGX_HTTP_LF_SPOOL_CANDIDATES
                      * sizeof(ngx_http_lf_spool_entry_t));
        m = 0;

        for (i = 0; i < n; i++) {
            for (k = 0; k < sp->nknown; k++) {
                if (sp->known[k] == entries[i].dest) {
                    break;
                }
            }

            if (k == sp->nknown) {
                sp->orphans++;
                continue;
            }

            for (k = 0; k < sp->nallowed; k++) {
                if (sp->allowed[k] == entries[i].dest) {
                    break;
                }
            }

            if (list && k < sp->nallowed
                && m < NGX_HTTP_LF_SPOOL_CANDIDATES)
            {
                list[m++] = entries[i];
            }
        }

        free(entries);

        sp->candidates = list;
        sp->ncandidates = m;

        taken = ngx_http_lf_spool_take(sp, dfd);
    }

    ngx_http_lf_spool_unlock(lock);

    if (!taken) {
        return;
    }

    ngx_http_lf_spool_claimed(claimed, sp->name, sp->owner);

    rc = ngx_http_lf_spool_load(sp, dfd, claimed);

    if (rc == NGX_OK) {
        sp->found = 1;
        return;
    }

    if (rc == NGX_DECLINED) {
        /* kept for a look, out of the way of the replay */
        ngx_snprintf(bad, NGX_HTTP_LF_SPOOL_NAME + 4, "%s-bad%Z", sp->name);
        (void) renameat(dfd, (char *) claimed, dfd, (char *) bad);
        return;
    }

    (void) renameat(dfd, (char *) claimed, dfd, (char *) sp->name);
}


/*
 * Claims the first candidate of an allowed destination that is still
 * there: renamed with the worker's pid, it is no other worker's.
 */

static ngx_uint_t
ngx_http_lf_spool_take(ngx_http_lf_spooled_t *sp, int dfd)
{
    u_char                      claimed[NGX_HTTP_LF_SPOOL_NAME];
    ngx_uint_t                  i, k, taken;
    ngx_http_lf_spool_entry_t  *e;

    taken = 0;

    for (i = 0; i < sp->ncandidates; i++) {
        e = &sp->candidates[i];

        for (k = 0; k < sp->nallowed; k++) {
            if (sp->allowed[k] == e->dest) {
                break;
            }
        }

        if (k == sp->nallowed) {
            continue;
        }

        ngx_http_lf_spool_claimed(claimed, e->name, sp->owner);

        if (renameat(dfd, (char *) e->name, dfd, (char *) claimed) == -1) {
            /* replayed or dropped meanwhile */
            continue;
        }

        ngx_cpystrn(sp->name, e->name, NGX_HTTP_LF_SPOOL_NAME);
        sp->dest = e->dest;
        taken = 1;

        i++;
        break;
    }

    /* what was looked at is off the list */

    if (i) {
        ngx_memmove(sp->candidates, sp->candidates + i,
                    (sp->ncandidates - i)
                    * sizeof(ngx_http_lf_spool_entry_t));
        sp->ncandidates -= i;
    }

    return taken;
}


/* the name of a file while a worker replays it */

static void
ngx_http_lf_spool_claimed(u_char *buf, u_char *name, u_char *owner)
{
    ngx_sprintf(buf, "%s-claimed-%s%Z", name, owner);
}


static void
ngx_http_lf_spool_release_file(ngx_http_lf_spooled_t *sp, int dfd)
{
    u_char  claimed[NGX_HTTP_LF_SPOOL_NAME];

    ngx_http_lf_spool_claimed(claimed, sp->name, sp->owner);

    if (sp->delivered) {
        if (unlinkat(dfd, (char *) claimed, 0) == -1) {
            sp->err = ngx_errno;
            sp->failed = "unlink()";
        }

        return;
    }

    if (renameat(dfd, (char *) claimed, dfd, (char *) sp->name) == -1) {
        sp->err = ngx_errno;
        sp->failed = "rename()";
    }
}


/*
 * Lists the files that wait, oldest first, and the spool's totals; on
 * the way, claims of workers that are gone are taken back, and the
 * temporary files they left are removed.  The caller holds the lock.
 */

static ngx_int_t
ngx_http_lf_spool_scan(ngx_http_lf_spooled_t *sp, int dfd,
    ngx_http_lf_spool_entry_t **entries, ngx_uint_t *n)
{
    int                          fd;
    DIR                         *dir;
    u_char                      *name, *owner;
    u_char                       waiting[NGX_HTTP_LF_SPOOL_NAME];
    size_t                       len, base, olen;
    uint32_t                     dest;
    ngx_pid_t                    pid;
    ngx_uint_t                   count, size, mine, gone;
    struct stat                  st;
    struct dirent               *de;
    ngx_http_lf_spool_kind_e     kind;
    ngx_http_lf_spool_entry_t   *list, *grown;

    fd = dup(dfd);
    if (fd == -1) {
        sp->err = ngx_errno;
        sp->failed = "dup()";
        return NGX_ERROR;
    }

    dir = fdopendir(fd);
    if (dir == NULL) {
        sp->err = ngx_errno;
        sp->failed = "opendir()";
        close(fd);
        return NGX_ERROR;
    }

    list = NULL;
    size = 0;
    *n = 0;
    sp->files = 0;
    sp->bytes = 0;

    for ( ;; ) {
        ngx_set_errno(0);

        de = readdir(dir);

        if (de == NULL) {
            if (ngx_errno) {
                sp->err = ngx_errno;
                sp->failed = "readdir()";
                goto failed;
            }

            break;
        }

        name = (u_char *) de->d_name;
        len = ngx_strlen(name);

        kind = ngx_http_lf_spool_kind(name, len, &dest, &count, &pid, &base,
                                      &owner);

        if (kind == NGX_HTTP_LF_SPOOL_OTHER) {
            continue;
        }

        if (fstatat(dfd, (char *) name, &st, AT_SYMLINK_NOFOLLOW) == -1
            || !S_ISREG(st.st_mode))
        {
            continue;
        }

        /*
         * a temporary file or a claim: this process's own, or one of a
         * process that is gone, maybe one that had the same pid
         */

        mine = 0;
        gone = 0;

        if (owner) {
            olen = ngx_strlen(sp->owner);
            mine = ngx_strncmp(owner, sp->owner, olen) == 0
                   && (owner[olen] == '\0' || owner[olen] == '-');
            gone = !mine
                   && (pid == sp->pid || ngx_http_lf_process_gone(pid));
        }

        if (kind == NGX_HTTP_LF_SPOOL_TEMP) {
            if (gone) {
                (void) unlinkat(dfd, (char *) name, 0);
            }

            continue;
        }

        if (kind == NGX_HTTP_LF_SPOOL_CLAIMED) {
            sp->files++;
            sp->bytes += st.st_size;

            if (mine
                || (!gone
                    && sp->now - st.st_ctime < NGX_HTTP_LF_SPOOL_STALE))
            {
                continue;
            }

            /* its worker is gone: the file waits again under its name */

            ngx_cpystrn(waiting, name, base + 1);

            if (renameat(dfd, (char *) name, dfd, (char *) waiting) == -1) {
                continue;
            }

            sp->recovered++;
            sp->files--;
            sp->bytes -= st.st_size;
        }

        if (*n == size) {
            size = size ? 2 * size : 64;

            grown = realloc(list, size * sizeof(ngx_http_lf_spool_entry_t));
            if (grown == NULL) {
                sp->err = NGX_ENOMEM;
                sp->failed = "realloc()";
                goto failed;
            }

            list = grown;
        }

        ngx_memcpy(list[*n].name, name, base);
        list[*n].name[base] = '\0';
        list[*n].size = st.st_size;
        list[*n].dest = dest;
        list[*n].count = count;
        (*n)++;

        sp->files++;
        sp->bytes += st.st_size;
    }

    closedir(dir);

    if (*n) {
        ngx_qsort(list, *n, sizeof(ngx_http_lf_spool_entry_t),
                  ngx_http_lf_spool_cmp);
    }

    *entries = list;
    sp->scanned = 1;

    return NGX_OK;

failed:

    closedir(dir);
    free(list);

    return NGX_ERROR;
}


/*
 * Reads a claimed file back into a batch: the events joined with
 * commas, as the queue gives them.  NGX_DECLINED: not a spooled batch.
 */

static ngx_int_t
ngx_http_lf_spool_load(ngx_http_lf_spooled_t *sp, int dfd, u_char *claimed)
{
    int           fd;
    u_char       *buf, *p, *end, *nl, *body;
    size_t        size, got, *lens;
    ssize_t       n;
    uint64_t      dest;
    ngx_int_t     count;
    ngx_uint_t    i;
    struct stat   st;

    fd = openat(dfd, (char *) claimed, O_RDONLY | O_CLOEXEC);

    if (fd == -1) {
        sp->err = ngx_errno;
        sp->failed = "open()";
        return NGX_ERROR;
    }

    if (fstat(fd, &st) == -1) {
        sp->err = ngx_errno;
        sp->failed = "fstat()";
        close(fd);
        return NGX_ERROR;
    }

    if (st.st_size < 2 || st.st_size > NGX_HTTP_LF_SPOOL_FILE_MAX) {
        sp->bad = "empty or too large";
        close(fd);
        return NGX_DECLINED;
    }

    size = (size_t) st.st_size;
    sp->size = st.st_size;

    buf = malloc(size);
    if (buf == NULL) {
        sp->err = NGX_ENOMEM;
        sp->failed = "malloc()";
        close(fd);
        return NGX_ERROR;
    }

    for (got = 0; got < size; got += n) {
        n = read(fd, buf + got, size - got);

        if (n == -1 && ngx_errno == NGX_EINTR) {
            n = 0;
            continue;
        }

        if (n == 0) {
            sp->bad = "shorter than its size";
            close(fd);
            ngx_free(buf);
            return NGX_DECLINED;
        }

        if (n == -1) {
            sp->err = ngx_errno;
            sp->failed = "read()";
            close(fd);
            ngx_free(buf);
            return NGX_ERROR;
        }
    }

    close(fd);

    end = buf + size;

    /* "langfuse-spool/1 dest=<8 hex> events=<n> ...\n" */

    nl = ngx_strlchr(buf, end, '\n');
    p = buf + sizeof(NGX_HTTP_LF_SPOOL_MAGIC) - 1;

    if (nl == NULL
        || p + 8 + sizeof(" events=") > nl
        || ngx_strncmp(buf, NGX_HTTP_LF_SPOOL_MAGIC, p - buf) != 0
        || ngx_strncmp(p + 8, " events=", 8) != 0)
    {
        sp->bad = "no spool header";
        goto bad;
    }

    if (end[-1] != '\n') {
        sp->bad = "a last line cut short";
        goto bad;
    }

    if (ngx_http_lf_spool_hex(p, 8, &dest) != NGX_OK) {
        dest = (uint64_t) -1;
    }

    for (p += 16, body = p; p < nl && *p >= '0' && *p <= '9'; p++) {
        /* void */
    }

    count = ngx_atoi(body, p - body);

    if (dest != sp->dest
        || count <= 0 || (size_t) count > size || (p < nl && *p != ' '))
    {
        sp->bad = "a header that does not match its name";
        goto bad;
    }

    body = nl + 1;

    lens = malloc(count * sizeof(size_t));
    if (lens == NULL) {
        sp->err = NGX_ENOMEM;
        sp->failed = "malloc()";
        ngx_free(buf);
        return NGX_ERROR;
    }

    /* one event per line, none empty, exactly as many as the header says */

    for (i = 0, p = body; p < end; i++) {
        nl = ngx_strlchr(p, end, '\n');

        if (nl == p || i == (ngx_uint_t) count) {
            ngx_free(lens);
            sp->bad = "an empty line, or more events than its header says";
            goto bad;
        }

        lens[i] = nl - p;
        *nl = ',';
        p = nl + 1;
    }

    if (i != (ngx_uint_t) count) {
        ngx_free(lens);
        sp->bad = "fewer events than its header says";
        goto bad;
    }

    /* the events move to the buffer's start, without the last comma */

    sp->len = end - body - 1;
    ngx_memmove(buf, body, sp->len);

    sp->events = buf;
    sp->lens = lens;
    sp->count = count;

    return NGX_OK;

bad:

    ngx_free(buf);

    return NGX_DECLINED;
}


/*
 * What a spool directory entry is, from its name alone:
 *
 *     <16 hex>-<8 hex>-<pid>-<seq>-<events>.batch       waits
 *     <the above>-claimed-<owner>                       being replayed
 *     .tmp-<owner>-<seq>                                being written
 *
 * where the owner is "<pid>.<8 hex>".  "base" is the length of the
 * waiting file's name, "owner" where the owner begins.
 */

static ngx_http_lf_spool_kind_e
ngx_http_lf_spool_kind(u_char *name, size_t len, uint32_t *dest,
    ngx_uint_t *count, ngx_pid_t *pid, size_t *base, u_char **owner)
{
    u_char     *p, *dot, *last;
    uint64_t    v;
    ngx_int_t   n;

    last = name + len;

    *dest = 0;
    *count = 0;
    *pid = 0;
    *base = 0;
    *owner = NULL;

    if (len > 5 && ngx_strncmp(name, ".tmp-", 5) == 0) {
        p = ngx_http_lf_spool_owner(name + 5, last, pid);

        if (p == NULL || p == last || *p != '-') {
            return NGX_HTTP_LF_SPOOL_OTHER;
        }

        *owner = name + 5;
        return NGX_HTTP_LF_SPOOL_TEMP;
    }

    if (len < 26 + sizeof("0-0-1.batch") - 1
        || ngx_http_lf_spool_hex(name, 16, &v) != NGX_OK
        || name[16] != '-'
        || ngx_http_lf_spool_hex(name + 17, 8, &v) != NGX_OK
        || name[25] != '-')
    {
        return NGX_HTTP_LF_SPOOL_OTHER;
    }

    dot = ngx_strnstr(name + 26, ".batch", len - 26);
    if (dot == NULL) {
        return NGX_HTTP_LF_SPOOL_OTHER;
    }

    /* the event count is the last number before ".batch" */

    for (p = dot; p > name + 26 && p[-1] >= '0' && p[-1] <= '9'; p--) {
        /* void */
    }

    n = ngx_atoi(p, dot - p);

    if (n <= 0 || p[-1] != '-'
        || (size_t) (dot + 6 - name) > NGX_HTTP_LF_SPOOL_BASE_MAX)
    {
        return NGX_HTTP_LF_SPOOL_OTHER;
    }

    *dest = (uint32_t) v;
    *count = (ngx_uint_t) n;
    *base = dot + 6 - name;

    if (*base == len) {
        return NGX_HTTP_LF_SPOOL_BATCH;
    }

    p = dot + 6;

    if (last - p <= 9 || ngx_strncmp(p, "-claimed-", 9) != 0) {
        return NGX_HTTP_LF_SPOOL_OTHER;
    }

    if (ngx_http_lf_spool_owner(p + 9, last, pid) != last) {
        return NGX_HTTP_LF_SPOOL_OTHER;
    }

    *owner = p + 9;

    return NGX_HTTP_LF_SPOOL_CLAIMED;
}


/* "<pid>.<token>": where it ends, or NULL */

static u_char *
ngx_http_lf_spool_owner(u_char *p, u_char *last, ngx_pid_t *pid)
{
    u_char     *start;
    uint64_t    v;
    ngx_int_t   n;

    for (start = p; p < last && *p >= '0' && *p <= '9'; p++) {
        /* void */
    }

    n = ngx_atoi(start, p - start);

    if (n <= 0
        || last - p < 1 + NGX_HTTP_LF_SPOOL_TOKEN
        || *p != '.'
        || ngx_http_lf_spool_hex(p + 1, NGX_HTTP_LF_SPOOL_TOKEN, &v)
           != NGX_OK)
    {
        return NULL;
    }

    *pid = (ngx_pid_t) n;

    return p + 1 + NGX_HTTP_LF_SPOOL_TOKEN;
}


/* exactly n lowercase hex digits, at most 16: wider than an ngx_int_t */

static ngx_int_t
ngx_http_lf_spool_hex(u_char *p, size_t n, uint64_t *v)
{
    size_t  i;

    *v = 0;

    for (i = 0; i < n; i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            *v = *v << 4 | (uint64_t) (p[i] - '0');

        } else if (p[i] >= 'a' && p[i] <= 'f') {
            *v = *v << 4 | (uint64_t) (p[i] - 'a' + 10);

        } else {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_lf_spool_write_all(int fd, u_char *p, size_t len)
{
    ssize_t  n;

    while (len) {
        n = write(fd, p, len);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            return NGX_ERROR;
        }

        p += n;
        len -= n;
    }

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_lf_spool_cmp(const void *one, const void *two)
{
    const ngx_http_lf_spool_entry_t  *a = one;
    const ngx_http_lf_spool_entry_t  *b = two;

    return ngx_strcmp(a->name, b->name);
}


/* back in the worker's event loop */

static void
ngx_http_lf_spool_done(ngx_event_t *ev)
{
    ngx_thread_task_t      *task = ev->data;
    ngx_http_lf_spooled_t  *sp = task->ctx;

    ngx_http_lf_spool_worker_t  *sw;

    sw = &ngx_http_lf_spool_worker;
    sw->busy--;

    ngx_http_lf_spool_totals(sp);

    switch (sp->op) {

    case NGX_HTTP_LF_SPOOL_WRITE:
        sw->writing--;
        ngx_http_lf_spool_written(sp);
        break;

    case NGX_HTTP_LF_SPOOL_CLAIM:

        /* the worker keeps what is left of the list for the next claim */
        sw->candidates = sp->candidates;
        sw->ncandidates = sp->ncandidates;
        sp->candidates = NULL;

        if (sp->bad) {
            ngx_log_error(NGX_LOG_ERR, sw->log, 0,
                          "langfuse: \"%V/%s\" is not a spooled batch (%s), "
                          "it is renamed to \"%s-bad\" and left alone",
                          &sp->conf->path, sp->name, sp->bad, sp->name);
        }

        if (sp->err) {
            ngx_http_lf_spool_error(sp, 0);
        }

        if (sp->recovered) {
            ngx_log_error(NGX_LOG_NOTICE, sw->log, 0,
                          "langfuse: %ui spooled batch(es) that exited "
                          "workers were replaying wait again in \"%V\"",
                          sp->recovered, &sp->conf->path);
        }

        if (sp->orphans && !sw->orphans_logged) {
            sw->orphans_logged = 1;

            ngx_log_error(NGX_LOG_WARN, sw->log, 0,
                          "langfuse: %ui spooled batch(es) in \"%V\" are for "
                          "a destination that is no longer configured; they "
                          "stay until it is again, or max_size removes them",
                          sp->orphans, &sp->conf->path);
        }

        if (sp->found) {
            ngx_log_debug3(NGX_LOG_DEBUG_EVENT, sw->log, 0,
                           "langfuse spool: replaying \"%s\", %ui "
                           "event(s), %ui candidate(s) left", sp->name,
                           sp->count, sp->ncandidates);

            /* the exporter owns events and lens from here */
            ngx_http_lf_export_replay(sp, sp->dest, sp->events, sp->len,
                                      sp->lens, sp->count);
            return;
        }

        ngx_log_debug0(NGX_LOG_DEBUG_EVENT, sw->log, 0,
                       "langfuse spool: nothing to replay");

        /* a file set aside is no reason to wait before the next */
        ngx_http_lf_export_replay_none(sp->bad != NULL);
        break;

    default: /* NGX_HTTP_LF_SPOOL_RELEASE */

        if (sp->err) {
            ngx_http_lf_spool_error(sp, 0);
        }

        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, sw->log, 0,
                       "langfuse spool: \"%s\" %s", sp->name,
                       sp->delivered ? "delivered and removed"
                                     : "waits for another replay");
        break;
    }

    ngx_free(task);
}


static void
ngx_http_lf_spool_written(ngx_http_lf_spooled_t *sp)
{
    time_t                       now;
    uint64_t                     events;
    ngx_uint_t                   i;
    ngx_http_lf_main_conf_t     *lmcf;
    ngx_http_lf_spool_worker_t  *sw;

    sw = &ngx_http_lf_spool_worker;
    lmcf = sw->lmcf;

    if (sp->err) {
        ngx_http_lf_stat(lmcf, sp->dest, dropped_spool_error, sp->count);
        ngx_http_lf_spool_error(sp, sp->count);

    } else {
        ngx_http_lf_stat(lmcf, sp->dest, spooled, sp->count);

        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, sw->log, 0,
                       "langfuse spool: \"%s\" written, %O bytes",
                       sp->name, sp->size);
    }

    events = 0;

    for (i = 0; i < sp->ndrops; i++) {
        ngx_http_lf_stat(lmcf, sp->drops[i].dest, dropped_spool_full,
                         sp->drops[i].events);
        events += sp->drops[i].events;
    }

    sw->drops_unlogged += events;
    now = ngx_time();

    if (sw->drops_unlogged && sw->drop_logged != now) {
        sw->drop_logged = now;

        ngx_log_error(NGX_LOG_WARN, sw->log, 0,
                      "langfuse: spool \"%V\" is over max_size=%O: "
                      "%uL event(s) dropped, oldest first, since the last "
                      "report", &sp->conf->path, sp->conf->max_size,
                      sw->drops_unlogged);

        sw->drops_unlogged = 0;
    }

    ngx_free(sp->events);
    ngx_free(sp->lens);
}


/*
 * The spool's size on the status page and for the max_size check: set
 * by each look at the directory, kept up to date in between.
 */

static void
ngx_http_lf_spool_totals(ngx_http_lf_spooled_t *sp)
{
    ngx_http_lf_shctx_t      *sh;
    ngx_http_lf_main_conf_t  *lmcf;

    lmcf = ngx_http_lf_spool_worker.lmcf;
    sh = lmcf->sh;

    if (sh == NULL) {
        return;
    }

    ngx_shmtx_lock(&lmcf->shpool->mutex);

    if (sp->scanned) {
        sh->spool_files = sp->files;
        sh->spool_bytes = sp->bytes;

    } else if (sp->err == 0 && sp->op == NGX_HTTP_LF_SPOOL_WRITE) {
        sh->spool_files++;
        sh->spool_bytes += sp->size;

    } else if (sp->err == 0 && sp->op == NGX_HTTP_LF_SPOOL_RELEASE
               && sp->delivered)
    {
        sh->spool_files -= ngx_min(sh->spool_files, 1);
        sh->spool_bytes -= ngx_min(sh->spool_bytes, sp->size);
    }

    ngx_shmtx_unlock(&lmcf->shpool->mutex);
}


/*
 * Rate-limited by operation, with the count of lines left out: a broken
 * disk fails every batch, and a missing directory every look.
 */

static void
ngx_http_lf_spool_error(ngx_http_lf_spooled_t *sp, ngx_uint_t lost)
{
    u_char                       text[NGX_INT_T_LEN + 20], *p;
    time_t                       now;
    ngx_uint_t                   more;
    ngx_http_lf_spool_worker_t  *sw;

    static const char  *what[] = { "writing a batch to",
                                   "replaying from",
                                   "ending a replay in" };
    static const time_t  every[] = { 1, 60, 10 };

    sw = &ngx_http_lf_spool_worker;
    now = ngx_time();

    if (now - sw->logged[sp->op] < every[sp->op]) {
        sw->unlogged[sp->op]++;
        return;
    }

    sw->logged[sp->op] = now;
    more = sw->unlogged[sp->op];
    sw->unlogged[sp->op] = 0;

    /* a batch that could not be written: how many events are lost */

    p = text;

    if (lost) {
        p = ngx_sprintf(text, "%ui event(s) lost, ", lost);
    }

    ngx_log_error(NGX_LOG_ERR, sw->log, sp->err,
                  "langfuse: %*s%s spool \"%V\" failed: %s%s%s%s (%ui "
                  "more failure(s) not logged)", p - text, text,
                  what[sp->op], &sp->conf->path, sp->failed,
                  sp->name[0] ? " of \"" : "", sp->name,
                  sp->name[0] ? "\"" : "", more);
}


#endif /* NGX_THREADS */


/*
 * langfuse_spool path [max_size=size] [thread_pool=name] | off;
 */

char *
ngx_http_lf_spool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_lf_main_conf_t *lmcf = conf;

#if (NGX_THREADS)
    off_t                      max_size;
    ngx_str_t                 *value, s, name, *pool;
    ngx_uint_t                 i;
    ngx_path_t                *path;
    ngx_file_info_t            fi;
    ngx_http_lf_spool_conf_t  *spool;
#endif

    if (lmcf->spool != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

#if !(NGX_THREADS)

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"langfuse_spool\" needs nginx built with "
                       "--with-threads: spool files are written by a "
                       "thread pool, never by a worker");
    return NGX_CONF_ERROR;

#else

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        lmcf->spool = NULL;
        return NGX_CONF_OK;
    }

    max_size = 1024 * 1024 * 1024;
    pool = NULL;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "max_size=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            max_size = ngx_parse_offset(&s);

            if (max_size <= 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid max_size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "thread_pool=", 12) == 0) {
            name.data = value[i].data + 12;
            name.len = value[i].len - 12;

            if (name.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid thread pool \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            pool = &name;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    spool = ngx_pcalloc(cf->pool, sizeof(ngx_http_lf_spool_conf_t));
    if (spool == NULL) {
        return NGX_CONF_ERROR;
    }

    spool->path = value[1];

    if (ngx_conf_full_name(cf->cycle, &spool->path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (spool->path.len > 1
           && spool->path.data[spool->path.len - 1] == '/')
    {
        spool->path.len--;
    }

    /* the threads open it by name */

    s.data = ngx_pnalloc(cf->pool, spool->path.len + 1);
    if (s.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(s.data, spool->path.data, spool->path.len + 1);
    spool->path.data = s.data;

    spool->max_size = max_size;

    if (max_size < 2 * NGX_HTTP_LF_BATCH_MAX_BYTES) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"langfuse_spool\" max_size=%O holds less than "
                           "two batches of the largest size (%uz bytes): "
                           "large batches may be dropped as they arrive",
                           max_size, (size_t) NGX_HTTP_LF_BATCH_MAX_BYTES);
    }

    spool->thread_pool = ngx_thread_pool_add(cf, pool);
    if (spool->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_file_info(spool->path.data, &fi) == 0 && !ngx_is_dir(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"langfuse_spool\" \"%V\" is not a directory",
                           &spool->path);
        return NGX_CONF_ERROR;
    }

    /* created at start for the workers' user, as temporary paths are */

    path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
    if (path == NULL) {
        return NGX_CONF_ERROR;
    }

    path->name = spool->path;
    path->conf_file = cf->conf_file->file.name.data;
    path->line = cf->conf_file->line;

    if (ngx_add_path(cf, &path) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    lmcf->spool = spool;

    return NGX_CONF_OK;

#endif
}
