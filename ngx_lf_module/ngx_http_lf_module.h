
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _NGX_HTTP_LF_MODULE_H_INCLUDED_
#define _NGX_HTTP_LF_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_lf_record.h"
#include "ngx_lf_dialect.h"
#include "ngx_lf_decode.h"
#include "ngx_lf_event.h"


#define NGX_HTTP_LF_BATCH_MAX_BYTES     (2560 * 1024)
#define NGX_HTTP_LF_EVENT_MAX           (1024 * 1024)


/* one Langfuse project: where to send and as whom */
typedef struct {
    ngx_str_t                   endpoint;
    ngx_str_t                   url;
    ngx_str_t                   projects_url;   /* the credential check */
    ngx_str_t                   public_key;
    ngx_str_t                   secret_key;     /* never logged */
    ngx_str_t                   auth_header;    /* holds the secret */
    ngx_str_t                   ca_file;        /* "" for the system's */
    ngx_flag_t                  ssl_verify;
    ngx_lf_protocol_e           protocol;
    uint32_t                    id;
} ngx_http_lf_dest_t;


#define NGX_HTTP_LF_MAX_DESTS           32
#define NGX_HTTP_LF_ERROR_LEN           256

/* export answers counted by status: the common ones, then "other" */
#define NGX_HTTP_LF_STATUSES            12


/*
 * Counters of one destination, shared by all workers and kept under the
 * zone mutex; they live as long as the zone, reloads included.
 */
typedef struct {
    uint32_t                    dest;

    uint64_t                    captured;
    uint64_t                    queued;
    uint64_t                    sent;
    uint64_t                    retried;
    uint64_t                    rejected;       /* 4xx, invalid in 207 */
    uint64_t                    failed;         /* retries exhausted */

    uint64_t                    dropped_queue_full;
    uint64_t                    dropped_too_large;
    uint64_t                    dropped_no_destination;
    uint64_t                    dropped_serialize;
    uint64_t                    dropped_spool_full;
    uint64_t                    dropped_spool_error;

    uint64_t                    spooled;
    uint64_t                    replayed;

    uint64_t                    parse_errors_request;
    uint64_t                    parse_errors_response;

    uint64_t                    errors_network;
    uint64_t                    errors_http_3xx;
    uint64_t                    errors_http_429;
    uint64_t                    errors_http_4xx;
    uint64_t                    errors_http_5xx;
    uint64_t                    errors_status[NGX_HTTP_LF_STATUSES];

    uint64_t                    batches_sent;
    uint64_t                    batches_failed;

    time_t                      last_success;
    time_t                      last_failure;
    size_t                      last_error_len;
    u_char                      last_error[NGX_HTTP_LF_ERROR_LEN];
} ngx_http_lf_stats_t;


#define NGX_HTTP_LF_MAX_WORKERS         64


/*
 * Exports in flight, by worker and by destination (the index of its
 * counters): a worker that is killed leaves its slot behind, and the
 * status page leaves out the slots of processes that are gone.
 */
typedef struct {
    ngx_pid_t                   pid;
    ngx_uint_t                  generation;     /* of its configuration */
    uint8_t                     in_flight[NGX_HTTP_LF_MAX_DESTS];
} ngx_http_lf_worker_slot_t;


typedef struct {
    ngx_queue_t                 queue;      /* ngx_http_lf_qnode_t */
    size_t                      bytes;
    ngx_uint_t                  count;
    ngx_uint_t                  ndests;
    ngx_http_lf_stats_t         dests[NGX_HTTP_LF_MAX_DESTS];
    time_t                      drop_logged;
    uint64_t                    drop_reported;

    /*
     * one more at each configuration load; "live" is the newest load
     * whose workers have started: a worker of an older one leaves the
     * queue to them (a reload that fails keeps the old workers live)
     */
    ngx_uint_t                  generation;
    ngx_uint_t                  live;
    ngx_uint_t                  nlive_dests;
    uint32_t                    live_dests[NGX_HTTP_LF_MAX_DESTS];

    /* free pages of the empty queue: how full it is */
    ngx_uint_t                  pages;

    /* as the last look at the spool directory found it */
    ngx_uint_t                  spool_files;
    off_t                       spool_bytes;

    ngx_http_lf_worker_slot_t   workers[NGX_HTTP_LF_MAX_WORKERS];
} ngx_http_lf_shctx_t;


typedef struct {
    ngx_queue_t                 queue;
    uint32_t                    dest;
    size_t                      len;
    u_char                      data[1];
} ngx_http_lf_qnode_t;


typedef struct {
    ngx_str_t                   path;       /* null-terminated */
    off_t                       max_size;
#if (NGX_THREADS)
    ngx_thread_pool_t          *thread_pool;
#endif
} ngx_http_lf_spool_conf_t;


/* a batch read back from the spool, until its replay ends */
typedef struct ngx_http_lf_spooled_s  ngx_http_lf_spooled_t;


typedef struct {
    ngx_msec_t                  flush_interval;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  timeout;        /* of a whole export */
    ngx_flag_t                  check_credentials;
    ngx_uint_t                  batch_size;
    ngx_uint_t                  retries;
    size_t                      queue_size;
    ngx_http_lf_spool_conf_t   *spool;      /* NULL: no spool */

    ngx_array_t                 dests;      /* ngx_http_lf_dest_t */

    ngx_shm_zone_t             *shm_zone;
    ngx_http_lf_shctx_t        *sh;
    ngx_slab_pool_t            *shpool;
    ngx_uint_t                  generation; /* this load's */
} ngx_http_lf_main_conf_t;


typedef struct {
    ngx_str_t                   key;
    ngx_http_complex_value_t    value;
} ngx_http_lf_meta_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_str_t                   endpoint;
    ngx_str_t                   public_key;
    ngx_str_t                   secret_key;
    ngx_str_t                   ssl_trusted_certificate;
    ngx_flag_t                  ssl_verify;
    ngx_uint_t                  protocol;
    ngx_uint_t                  dialect;
    size_t                      max_body_size;

    ngx_http_complex_value_t   *trace_name;
    ngx_http_complex_value_t   *user_id;
    ngx_http_complex_value_t   *session_id;
    ngx_http_complex_value_t   *tags;
    ngx_http_complex_value_t   *environment;
    ngx_http_complex_value_t   *release;
    ngx_array_t                *metadata;   /* ngx_http_lf_meta_t */

    ngx_http_lf_dest_t         *dest;
} ngx_http_lf_loc_conf_t;


typedef struct {
    ngx_lf_record_t             rec;
    ngx_http_lf_loc_conf_t     *llcf;       /* of the traced location */
    ngx_lf_parser_t            *request_parser;
    ngx_lf_parser_t            *response_parser;
    ngx_lf_decode_t             decode;

    u_char                      trace_id[33];
    u_char                      span_id[17];
    u_char                      parent_id[17];

    int64_t                     first_byte_ms;
    int64_t                     first_token_ms;

    unsigned                    request_done:1;
    unsigned                    response_started:1;
    unsigned                    response_done:1;   /* last_buf seen */
    unsigned                    decoding:1;
    unsigned                    decode_failed:1;
    unsigned                    body_off:1;        /* stop looking */
    unsigned                    logged:1;
} ngx_http_lf_ctx_t;


extern ngx_module_t  ngx_http_langfuse_module;


/* module glue */
ngx_http_lf_ctx_t *ngx_http_lf_get_ctx(ngx_http_request_t *r,
    ngx_uint_t create);
void ngx_http_lf_random_hex(u_char *buf, size_t len);
/* the configured destination of a queued event, NULL after a reload */
ngx_http_lf_dest_t *ngx_http_lf_find_dest(ngx_http_lf_main_conf_t *lmcf,
    uint32_t id);
int64_t ngx_http_lf_now_ms(void);

/* secrets, in memory that core dumps leave out */
u_char *ngx_http_lf_secret_alloc(ngx_conf_t *cf, size_t len);
char *ngx_http_lf_secret_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_lf_secret_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
/* curl_global_init() with an allocator that wipes what it frees */
int ngx_http_lf_secret_curl_init(void);

/* capture */
ngx_int_t ngx_http_lf_capture_init(ngx_conf_t *cf);

/* queue */
ngx_int_t ngx_http_lf_queue_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_http_lf_queue_push(ngx_http_lf_main_conf_t *lmcf,
    uint32_t dest, const u_char *data, size_t len, ngx_log_t *log);
/*
 * Which queued events a worker may take: not those of its destinations
 * that wait for a retry; after a reload, an old worker takes only those
 * of destinations that the new configuration no longer has, and a new
 * one takes events of destinations that it does not know (to drop them)
 * only once no old worker is left.
 */
typedef struct {
    uint32_t                    blocked[NGX_HTTP_LF_MAX_DESTS];
    ngx_uint_t                  nblocked;
    ngx_uint_t                  superseded;
    ngx_uint_t                  strangers;
} ngx_http_lf_take_t;

/* fills in all but the blocked destinations */
void ngx_http_lf_queue_take(ngx_http_lf_main_conf_t *lmcf,
    ngx_http_lf_take_t *take);
/* pops up to max events of one destination, joined with commas */
u_char *ngx_http_lf_queue_pop(ngx_http_lf_main_conf_t *lmcf,
    ngx_uint_t max, ngx_http_lf_take_t *take, uint32_t *dest,
    size_t *len, ngx_uint_t *count, size_t **lens, ngx_log_t *log);
ngx_uint_t ngx_http_lf_queue_count(ngx_http_lf_main_conf_t *lmcf);
void ngx_http_lf_stats_add(ngx_http_lf_main_conf_t *lmcf, uint32_t dest,
    size_t offset, uint64_t n);
void ngx_http_lf_stats_result(ngx_http_lf_main_conf_t *lmcf, uint32_t dest,
    const u_char *error, size_t len);
ngx_http_lf_stats_t *ngx_http_lf_stats_locked(ngx_http_lf_shctx_t *sh,
    uint32_t dest);
/* no process has this pid any more */
ngx_uint_t ngx_http_lf_process_gone(ngx_pid_t pid);
/* this worker's slot for exports in flight */
void ngx_http_lf_worker_slot(ngx_http_lf_main_conf_t *lmcf, ngx_uint_t take);
void ngx_http_lf_in_flight(ngx_http_lf_main_conf_t *lmcf, uint32_t dest,
    ngx_int_t delta);
/*
 * exports in flight to the n-th destination, in a copy of the zone
 * that ngx_http_lf_in_flight_prune() rid of workers that are gone
 */
void ngx_http_lf_in_flight_prune(ngx_http_lf_shctx_t *snap);
uint64_t ngx_http_lf_in_flight_total(ngx_http_lf_shctx_t *snap,
    ngx_uint_t n);

#define ngx_http_lf_stat(lmcf, dest, field, n)                               \
    ngx_http_lf_stats_add(lmcf, dest, offsetof(ngx_http_lf_stats_t, field), \
                          n)

/* status */
char *ngx_http_lf_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
/* where an HTTP status of a failed export is counted */
size_t ngx_http_lf_status_counter(long status);

/* export */
ngx_int_t ngx_http_lf_export_init_process(ngx_cycle_t *cycle);
void ngx_http_lf_export_exit_process(ngx_cycle_t *cycle);
/* an event that the full queue has no room for, bound for the spool */
ngx_int_t ngx_http_lf_export_overflow(ngx_http_lf_main_conf_t *lmcf,
    uint32_t dest, const u_char *data, size_t len);
/* a claimed spool file */
void ngx_http_lf_export_replay(ngx_http_lf_spooled_t *sp, uint32_t dest,
    u_char *events, size_t len, size_t *lens, ngx_uint_t count);
/* a claim found nothing to replay; "again": look again at once */
void ngx_http_lf_export_replay_none(ngx_uint_t again);

/* spool */
char *ngx_http_lf_spool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

#if (NGX_THREADS)

void ngx_http_lf_spool_reload(ngx_http_lf_main_conf_t *old,
    ngx_http_lf_main_conf_t *lmcf, ngx_log_t *log);
void ngx_http_lf_spool_init_process(ngx_http_lf_main_conf_t *lmcf,
    ngx_log_t *log);
void ngx_http_lf_spool_exit(void);
/* these take events and lens */
ngx_int_t ngx_http_lf_spool_write(ngx_http_lf_main_conf_t *lmcf,
    ngx_http_lf_dest_t *dest, u_char *events, size_t len, size_t *lens,
    ngx_uint_t count);
ngx_int_t ngx_http_lf_spool_claim(ngx_http_lf_main_conf_t *lmcf,
    uint32_t *dests, ngx_uint_t n);
void ngx_http_lf_spool_release(ngx_http_lf_spooled_t *sp,
    ngx_uint_t delivered);
ngx_uint_t ngx_http_lf_spool_busy(void);
ngx_uint_t ngx_http_lf_spool_writing(void);

#else

/* no spool can be configured: lmcf->spool stays NULL */
#define ngx_http_lf_spool_reload(old, lmcf, log)
#define ngx_http_lf_spool_init_process(lmcf, log)
#define ngx_http_lf_spool_exit()
#define ngx_http_lf_spool_write(lmcf, dest, events, len, lens, count)     \
    NGX_ERROR
#define ngx_http_lf_spool_claim(lmcf, dests, n)  ((void) (dests), NGX_ERROR)
#define ngx_http_lf_spool_release(sp, delivered)
#define ngx_http_lf_spool_busy()  0
#define ngx_http_lf_spool_writing()  0

#endif


#endif /* _NGX_HTTP_LF_MODULE_H_INCLUDED_ */
