
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ngx_lf_event.h"
#include "ngx_lf_json.h"
#include "ngx_lf_dialect.h"


#define NGX_LF_LEVEL_DEFAULT    0
#define NGX_LF_LEVEL_WARNING    1
#define NGX_LF_LEVEL_ERROR      2


typedef int (*ngx_lf_value_pt)(yajl_gen g, ngx_lf_record_t *rec);


typedef struct {
    yajl_gen                g;
    ngx_lf_record_t        *rec;
    ngx_lf_span_t          *span;
    int                     level;
    char                    message[64];
    const u_char           *status_message;
    size_t                  status_message_len;
} ngx_lf_event_ctx_t;


static int ngx_lf_event_otlp(ngx_lf_event_ctx_t *ctx);
static int ngx_lf_event_ingestion(ngx_lf_event_ctx_t *ctx);
static int ngx_lf_gen_input(yajl_gen g, ngx_lf_record_t *rec);
static int ngx_lf_gen_output(yajl_gen g, ngx_lf_record_t *rec);
static int ngx_lf_gen_params(yajl_gen g, ngx_lf_record_t *rec);
static int ngx_lf_gen_usage(yajl_gen g, ngx_lf_record_t *rec);
static int ngx_lf_gen_usage_classic(yajl_gen g, ngx_lf_record_t *rec);
static int ngx_lf_gen_metadata(yajl_gen g, ngx_lf_record_t *rec,
    ngx_lf_span_t *span);
static int ngx_lf_gen_trace_metadata(yajl_gen g, ngx_lf_span_t *span,
    int otlp);
static int ngx_lf_gen_tags(yajl_gen g, ngx_lf_str_t *tags, int otlp);
static int ngx_lf_gen_json_text(yajl_gen g, ngx_lf_buf_t *buf);
static int ngx_lf_has_input(ngx_lf_record_t *rec);
static int ngx_lf_has_output(ngx_lf_record_t *rec, ngx_lf_span_t *span);
static int ngx_lf_has_usage(ngx_lf_record_t *rec);
static void ngx_lf_usage_normalize(ngx_lf_usage_t *u, int64_t *in,
    int64_t *out, int64_t *total);
static int64_t ngx_lf_usage_sum(int64_t a, int64_t b);
static const char *ngx_lf_truncated(ngx_lf_record_t *rec);
static ngx_lf_buf_t *ngx_lf_model(ngx_lf_record_t *rec);

static int ngx_lf_key(yajl_gen g, const char *key);
static int ngx_lf_kstr(yajl_gen g, const char *key, const u_char *v,
    size_t len);
static int ngx_lf_kcstr(yajl_gen g, const char *key, const char *v);
static int ngx_lf_kint(yajl_gen g, const char *key, int64_t v);
static int ngx_lf_ktime(yajl_gen g, const char *key, int64_t ms);
static int ngx_lf_attr(yajl_gen g, const char *key, const u_char *v,
    size_t len);
static int ngx_lf_attr_json(yajl_gen g, const char *key,
    ngx_lf_value_pt value, ngx_lf_record_t *rec);


static const char  ngx_lf_otlp_head[] =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
    "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"nginx\"}}]},"
    "\"scopeSpans\":[{\"scope\":{\"name\":\"nginx-llm-gateway\","
    "\"version\":\"" NGX_LF_VERSION "\"},\"spans\":[";

static const char  ngx_lf_otlp_tail[] = "]}]}]}";

static const char  ngx_lf_ingestion_head[] = "{\"batch\":[";

static const char  ngx_lf_ingestion_tail[] =
    "],\"metadata\":{\"sdk_name\":\"nginx-langfuse\","
    "\"sdk_version\":\"" NGX_LF_VERSION "\"}}";


int
ngx_lf_event_write(yajl_gen g, ngx_lf_protocol_e proto,
    ngx_lf_record_t *rec, ngx_lf_span_t *span)
{
    int                  n;
    ngx_lf_event_ctx_t   ctx;

    memset(&ctx, 0, sizeof(ngx_lf_event_ctx_t));

    ctx.g = g;
    ctx.rec = rec;
    ctx.span = span;

    if (span->status >= 400 || rec->error_event) {
        ctx.level = NGX_LF_LEVEL_ERROR;

        if (rec->error.len) {
            ctx.status_message = rec->error.data;
            ctx.status_message_len = rec->error.len;

        } else {
            n = snprintf(ctx.message, sizeof(ctx.message),
                         "upstream status %u", span->status);
            ctx.status_message = (u_char *) ctx.message;
            ctx.status_message_len = n;
        }

    } else if (!span->complete) {
        ctx.level = NGX_LF_LEVEL_WARNING;
        ctx.status_message = (u_char *) "response ended before completion";
        ctx.status_message_len = sizeof("response ended before completion")
                                 - 1;
    }

    if (proto == NGX_LF_PROTO_OTLP) {
        return ngx_lf_event_otlp(&ctx);
    }

    return ngx_lf_event_ingestion(&ctx);
}


int
ngx_lf_event_text(yajl_gen g, ngx_lf_protocol_e proto,
    const u_char **text, size_t *len)
{
    if (yajl_gen_get_buf(g, text, len) != yajl_gen_status_ok) {
        return -1;
    }

    if (proto == NGX_LF_PROTO_INGESTION) {
        if (*len < 2) {
            return -1;
        }

        (*text)++;
        *len -= 2;
    }

    return 0;
}


const char *
ngx_lf_event_batch_head(ngx_lf_protocol_e proto)
{
    return proto == NGX_LF_PROTO_OTLP ? ngx_lf_otlp_head
                                      : ngx_lf_ingestion_head;
}


const char *
ngx_lf_event_batch_tail(ngx_lf_protocol_e proto)
{
    return proto == NGX_LF_PROTO_OTLP ? ngx_lf_otlp_tail
                                      : ngx_lf_ingestion_tail;
}


void
ngx_lf_iso_time(char *buf, int64_t ms)
{
    time_t     sec;
    struct tm  tm;

    sec = (time_t) (ms / 1000);
    gmtime_r(&sec, &tm);

    if (strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        buf[0] = '\0';
        return;
    }

    snprintf(buf + strlen(buf), 8, ".%03uZ", (unsigned) (ms % 1000));
}


static int
ngx_lf_event_otlp(ngx_lf_event_ctx_t *ctx)
{
    char              iso[32], ns[32];
    yajl_gen          g;
    ngx_lf_buf_t     *model;
    const char       *trunc;
    ngx_lf_span_t    *span;
    ngx_lf_record_t  *rec;

    g = ctx->g;
    rec = ctx->rec;
    span = ctx->span;

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kcstr(g, "traceId", span->trace_id) != 0
        || ngx_lf_kcstr(g, "spanId", span->span_id) != 0
        || (span->parent_id[0]
            && ngx_lf_kcstr(g, "parentSpanId", span->parent_id) != 0)
        || ngx_lf_kstr(g, "name", span->name.data, span->name.len) != 0
        || ngx_lf_kint(g, "kind", 3) != 0)
    {
        return -1;
    }

    snprintf(ns, sizeof(ns), "%lld000000", (long long) span->start_ms);

    if (ngx_lf_kcstr(g, "startTimeUnixNano", ns) != 0) {
        return -1;
    }

    snprintf(ns, sizeof(ns), "%lld000000", (long long) span->end_ms);

    if (ngx_lf_kcstr(g, "endTimeUnixNano", ns) != 0
        || ngx_lf_key(g, "attributes") != 0
        || yajl_gen_array_open(g) != yajl_gen_status_ok)
    {
        return -1;
    }

    if (ngx_lf_attr(g, "langfuse.observation.type",
                    (u_char *) "generation", 10) != 0
        || ngx_lf_attr(g, "langfuse.trace.name", span->name.data,
                       span->name.len) != 0
        || ngx_lf_attr(g, "user.id", span->user.data, span->user.len) != 0
        || ngx_lf_attr(g, "session.id", span->session.data,
                       span->session.len) != 0
        || ngx_lf_attr(g, "langfuse.environment", span->environment.data,
                       span->environment.len) != 0
        || ngx_lf_attr(g, "langfuse.release", span->release.data,
                       span->release.len) != 0)
    {
        return -1;
    }

    if (span->tags.len) {
        if (yajl_gen_map_open(g) != yajl_gen_status_ok
            || ngx_lf_kcstr(g, "key", "langfuse.trace.tags") != 0
            || ngx_lf_key(g, "value") != 0
            || yajl_gen_map_open(g) != yajl_gen_status_ok
            || ngx_lf_key(g, "arrayValue") != 0
            || yajl_gen_map_open(g) != yajl_gen_status_ok
            || ngx_lf_key(g, "values") != 0
            || ngx_lf_gen_tags(g, &span->tags, 1) != 0
            || yajl_gen_map_close(g) != yajl_gen_status_ok
            || yajl_gen_map_close(g) != yajl_gen_status_ok
            || yajl_gen_map_close(g) != yajl_gen_status_ok)
        {
            return -1;
        }
    }

    model = ngx_lf_model(rec);

    if (ngx_lf_attr(g, "langfuse.observation.model.name", model->data,
                    model->len) != 0
        || (rec->params.len
            && ngx_lf_attr_json(g, "langfuse.observation.model.parameters",
                                ngx_lf_gen_params, rec) != 0)
        || (ngx_lf_has_input(rec)
            && ngx_lf_attr_json(g, "langfuse.observation.input",
                                ngx_lf_gen_input, rec) != 0)
        || (ngx_lf_has_output(rec, span)
            && ngx_lf_attr_json(g, "langfuse.observation.output",
                                ngx_lf_gen_output, rec) != 0)
        || (ngx_lf_has_usage(rec)
            && ngx_lf_attr_json(g, "langfuse.observation.usage_details",
                                ngx_lf_gen_usage, rec) != 0))
    {
        return -1;
    }

    if (span->first_ms) {
        /* the attribute holds a JSON string, quotes included */
        iso[0] = '"';
        ngx_lf_iso_time(iso + 1, span->first_ms);
        strcat(iso, "\"");

        if (ngx_lf_attr(g, "langfuse.observation.completion_start_time",
                        (u_char *) iso, strlen(iso)) != 0)
        {
            return -1;
        }
    }

    if (ctx->level != NGX_LF_LEVEL_DEFAULT) {
        if (ngx_lf_attr(g, "langfuse.observation.level",
                        (u_char *) (ctx->level == NGX_LF_LEVEL_ERROR
                                    ? "ERROR" : "WARNING"),
                        ctx->level == NGX_LF_LEVEL_ERROR ? 5 : 7) != 0
            || ngx_lf_attr(g, "langfuse.observation.status_message",
                           ctx->status_message, ctx->status_message_len)
               != 0)
        {
            return -1;
        }
    }

    snprintf(ns, sizeof(ns), "%u", span->status);

    trunc = ngx_lf_truncated(rec);

    if (ngx_lf_attr(g, "langfuse.observation.metadata.http_status",
                    (u_char *) ns, strlen(ns)) != 0
        || ngx_lf_attr(g, "langfuse.observation.metadata.method",
                       span->method.data, span->method.len) != 0
        || ngx_lf_attr(g, "langfuse.observation.metadata.uri",
                       span->uri.data, span->uri.len) != 0
        || ngx_lf_attr(g, "langfuse.observation.metadata.stream",
                       (u_char *) (rec->response_sse ? "true" : "false"),
                       rec->response_sse ? 4 : 5) != 0
        || ngx_lf_attr(g, "langfuse.observation.metadata.finish_reason",
                       rec->finish_reason.data, rec->finish_reason.len)
           != 0
        || ngx_lf_attr(g, "langfuse.observation.metadata.response_id",
                       rec->response_id.data, rec->response_id.len) != 0
        || (trunc
            && ngx_lf_attr(g, "langfuse.observation.metadata.truncated",
                           (u_char *) trunc, strlen(trunc)) != 0))
    {
        return -1;
    }

    if (ngx_lf_gen_trace_metadata(g, span, 1) != 0
        || yajl_gen_array_close(g) != yajl_gen_status_ok)
    {
        return -1;
    }

    if (ngx_lf_key(g, "status") != 0
        || yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kint(g, "code",
                       ctx->level == NGX_LF_LEVEL_ERROR ? 2 : 0) != 0
        || (ctx->level == NGX_LF_LEVEL_ERROR
            && ngx_lf_kstr(g, "message", ctx->status_message,
                           ctx->status_message_len) != 0)
        || yajl_gen_map_close(g) != yajl_gen_status_ok)
    {
        return -1;
    }

    return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
}


static int
ngx_lf_event_ingestion(ngx_lf_event_ctx_t *ctx)
{
    char              now[32];
    yajl_gen          g;
    ngx_lf_buf_t     *model;
    ngx_lf_span_t    *span;
    ngx_lf_record_t  *rec;
    static const char  *levels[] = { "DEFAULT", "WARNING", "ERROR" };

    g = ctx->g;
    rec = ctx->rec;
    span = ctx->span;

    ngx_lf_iso_time(now, span->end_ms);

    /* trace-create */

    if (yajl_gen_array_open(g) != yajl_gen_status_ok
        || yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kcstr(g, "id", span->event_id[0]) != 0
        || ngx_lf_kcstr(g, "type", "trace-create") != 0
        || ngx_lf_kcstr(g, "timestamp", now) != 0
        || ngx_lf_key(g, "body") != 0
        || yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kcstr(g, "id", span->trace_id) != 0
        || ngx_lf_ktime(g, "timestamp", span->start_ms) != 0
        || ngx_lf_kstr(g, "name", span->name.data, span->name.len) != 0
        || (span->user.len
            && ngx_lf_kstr(g, "userId", span->user.data, span->user.len)
               != 0)
        || (span->session.len
            && ngx_lf_kstr(g, "sessionId", span->session.data,
                           span->session.len) != 0)
        || (span->environment.len
            && ngx_lf_kstr(g, "environment", span->environment.data,
                           span->environment.len) != 0)
        || (span->release.len
            && ngx_lf_kstr(g, "release", span->release.data,
                           span->release.len) != 0))
    {
        return -1;
    }

    if (span->tags.len
        && (ngx_lf_key(g, "tags") != 0
            || ngx_lf_gen_tags(g, &span->tags, 0) != 0))
    {
        return -1;
    }

    if (span->nmetadata
        && (ngx_lf_key(g, "metadata") != 0
            || yajl_gen_map_open(g) != yajl_gen_status_ok
            || ngx_lf_gen_trace_metadata(g, span, 0) != 0
            || yajl_gen_map_close(g) != yajl_gen_status_ok))
    {
        return -1;
    }

    if ((ngx_lf_has_input(rec)
         && (ngx_lf_key(g, "input") != 0
             || ngx_lf_gen_input(g, rec) != 0))
        || (ngx_lf_has_output(rec, span)
            && (ngx_lf_key(g, "output") != 0
                || ngx_lf_gen_output(g, rec) != 0))
        || yajl_gen_map_close(g) != yajl_gen_status_ok
        || yajl_gen_map_close(g) != yajl_gen_status_ok)
    {
        return -1;
    }

    /* generation-create */

    model = ngx_lf_model(rec);

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kcstr(g, "id", span->event_id[1]) != 0
        || ngx_lf_kcstr(g, "type", "generation-create") != 0
        || ngx_lf_kcstr(g, "timestamp", now) != 0
        || ngx_lf_key(g, "body") != 0
        || yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kcstr(g, "id", span->span_id) != 0
        || ngx_lf_kcstr(g, "traceId", span->trace_id) != 0
        || ngx_lf_kstr(g, "name", span->name.data, span->name.len) != 0
        || ngx_lf_ktime(g, "startTime", span->start_ms) != 0
        || ngx_lf_ktime(g, "endTime", span->end_ms) != 0
        || (span->first_ms
            && ngx_lf_ktime(g, "completionStartTime", span->first_ms) != 0)
        || (model->len
            && ngx_lf_kstr(g, "model", model->data, model->len) != 0)
        || (span->environment.len
            && ngx_lf_kstr(g, "environment", span->environment.data,
                           span->environment.len) != 0))
    {
        return -1;
    }

    if ((rec->params.len
         && (ngx_lf_key(g, "modelParameters") != 0
             || ngx_lf_gen_params(g, rec) != 0))
        || (ngx_lf_has_input(rec)
            && (ngx_lf_key(g, "input") != 0
                || ngx_lf_gen_input(g, rec) != 0))
        || (ngx_lf_has_output(rec, span)
            && (ngx_lf_key(g, "output") != 0
                || ngx_lf_gen_output(g, rec) != 0)))
    {
        return -1;
    }

    if (ngx_lf_has_usage(rec)
        && (ngx_lf_key(g, "usage") != 0
            || ngx_lf_gen_usage_classic(g, rec) != 0
            || ngx_lf_key(g, "usageDetails") != 0
            || ngx_lf_gen_usage(g, rec) != 0))
    {
        return -1;
    }

    if (ngx_lf_kcstr(g, "level", levels[ctx->level]) != 0
        || (ctx->level != NGX_LF_LEVEL_DEFAULT
            && ngx_lf_kstr(g, "statusMessage", ctx->status_message,
                           ctx->status_message_len) != 0)
        || ngx_lf_key(g, "metadata") != 0
        || ngx_lf_gen_metadata(g, rec, span) != 0
        || yajl_gen_map_close(g) != yajl_gen_status_ok
        || yajl_gen_map_close(g) != yajl_gen_status_ok
        || yajl_gen_array_close(g) != yajl_gen_status_ok)
    {
        return -1;
    }

    return 0;
}


static int
ngx_lf_has_input(ngx_lf_record_t *rec)
{
    return rec->input.len || rec->request_raw.len;
}


static int
ngx_lf_gen_input(yajl_gen g, ngx_lf_record_t *rec)
{
    const char  *key;

    if (rec->request_error || rec->input.len == 0) {
        /* not JSON: the start of the raw body as text */
        return ngx_lf_json_gen_string(g, rec->request_raw.data,
                                      rec->request_raw.len);
    }

    if (rec->tools.len == 0 && rec->system.len == 0) {
        return ngx_lf_gen_json_text(g, &rec->input);
    }

    /* the conversation with what frames it, under the API's own names */

    switch (rec->dialect) {

    case NGX_LF_DIALECT_OPENAI_CHAT:
    case NGX_LF_DIALECT_ANTHROPIC:
        key = "messages";
        break;

    case NGX_LF_DIALECT_GEMINI:
        key = "contents";
        break;

    default:
        key = "input";
        break;
    }

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || (rec->system.len
            && (ngx_lf_key(g, "system") != 0
                || ngx_lf_gen_json_text(g, &rec->system) != 0))
        || ngx_lf_key(g, key) != 0
        || ngx_lf_gen_json_text(g, &rec->input) != 0
        || (rec->tools.len
            && (ngx_lf_key(g, "tools") != 0
                || ngx_lf_gen_json_text(g, &rec->tools) != 0)))
    {
        return -1;
    }

    return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
}


static int
ngx_lf_has_output(ngx_lf_record_t *rec, ngx_lf_span_t *span)
{
    if (rec->response_error) {
        return rec->response_raw.len != 0;
    }

    if (rec->output.len || rec->reasoning.len || rec->ntool_calls
        || rec->embeddings >= 0)
    {
        return 1;
    }

    if (rec->output_unknown) {
        /* an empty answer would be a false one */
        return 0;
    }

    /* an error answer says what went wrong in the status message */
    return span->status < 400 && !rec->error_event;
}


static int
ngx_lf_gen_output(yajl_gen g, ngx_lf_record_t *rec)
{
    unsigned             i;
    ngx_lf_tool_call_t  *tc;

    if (rec->response_error) {
        return ngx_lf_json_gen_string(g, rec->response_raw.data,
                                      rec->response_raw.len);
    }

    if (rec->dialect == NGX_LF_DIALECT_OPENAI_EMBEDDINGS) {
        if (yajl_gen_map_open(g) != yajl_gen_status_ok
            || (rec->embeddings >= 0
                && ngx_lf_kint(g, "embeddings", rec->embeddings) != 0)
            || (rec->dimensions >= 0
                && ngx_lf_kint(g, "dimensions", rec->dimensions) != 0))
        {
            return -1;
        }

        return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
    }

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kcstr(g, "role", "assistant") != 0
        || ngx_lf_key(g, "content") != 0)
    {
        return -1;
    }

    if (rec->output.len == 0 && rec->ntool_calls) {
        if (yajl_gen_null(g) != yajl_gen_status_ok) {
            return -1;
        }

    } else if (ngx_lf_json_gen_string(g, rec->output.data, rec->output.len)
               != 0)
    {
        return -1;
    }

    if (rec->reasoning.len
        && ngx_lf_kstr(g, "reasoning_content", rec->reasoning.data,
                       rec->reasoning.len) != 0)
    {
        return -1;
    }

    if (rec->ntool_calls) {
        if (ngx_lf_key(g, "tool_calls") != 0
            || yajl_gen_array_open(g) != yajl_gen_status_ok)
        {
            return -1;
        }

        for (i = 0; i < rec->ntool_calls; i++) {
            tc = &rec->tool_calls[i];

            if (yajl_gen_map_open(g) != yajl_gen_status_ok
                || ngx_lf_kstr(g, "id", tc->id.data, tc->id.len) != 0
                || ngx_lf_kcstr(g, "type", "function") != 0
                || ngx_lf_key(g, "function") != 0
                || yajl_gen_map_open(g) != yajl_gen_status_ok
                || ngx_lf_kstr(g, "name", tc->name.data, tc->name.len) != 0
                || ngx_lf_kstr(g, "arguments", tc->arguments.data,
                               tc->arguments.len) != 0
                || yajl_gen_map_close(g) != yajl_gen_status_ok
                || yajl_gen_map_close(g) != yajl_gen_status_ok)
            {
                return -1;
            }
        }

        if (yajl_gen_array_close(g) != yajl_gen_status_ok) {
            return -1;
        }
    }

    return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
}


static int
ngx_lf_gen_params(yajl_gen g, ngx_lf_record_t *rec)
{
    return ngx_lf_gen_json_text(g, &rec->params);
}


static int
ngx_lf_has_usage(ngx_lf_record_t *rec)
{
    ngx_lf_usage_t  *u;

    u = &rec->usage;

    return u->input != NGX_LF_USAGE_UNSET || u->output != NGX_LF_USAGE_UNSET
           || u->total != NGX_LF_USAGE_UNSET;
}


/*
 * Langfuse prices disjoint buckets: cached and cache-creation tokens
 * are not input, reasoning tokens are not output; the total stays as
 * the provider reported it.
 */

static void
ngx_lf_usage_normalize(ngx_lf_usage_t *u, int64_t *in, int64_t *out,
    int64_t *total)
{
    *in = u->input;
    *out = u->output;

    if (*in != NGX_LF_USAGE_UNSET && u->input_has_cached) {
        if (u->cached != NGX_LF_USAGE_UNSET) {
            *in -= u->cached;
        }

        if (u->cache_creation != NGX_LF_USAGE_UNSET) {
            *in -= u->cache_creation;
        }

        if (*in < 0) {
            *in = 0;
        }
    }

    if (*out != NGX_LF_USAGE_UNSET && u->output_has_reasoning
        && u->reasoning != NGX_LF_USAGE_UNSET)
    {
        *out -= u->reasoning;

        if (*out < 0) {
            *out = 0;
        }
    }

    *total = u->total;

    if (*total == NGX_LF_USAGE_UNSET && u->input != NGX_LF_USAGE_UNSET
        && u->output != NGX_LF_USAGE_UNSET)
    {
        *total = ngx_lf_usage_sum(*in, *out);
        *total = ngx_lf_usage_sum(*total, u->cached);
        *total = ngx_lf_usage_sum(*total, u->cache_creation);
        *total = ngx_lf_usage_sum(*total, u->reasoning);
    }
}


/* counts are never negative; an unset one adds nothing; no overflow */

static int64_t
ngx_lf_usage_sum(int64_t a, int64_t b)
{
    if (b == NGX_LF_USAGE_UNSET) {
        return a;
    }

    return (a > INT64_MAX - b) ? INT64_MAX : a + b;
}


static int
ngx_lf_gen_usage(yajl_gen g, ngx_lf_record_t *rec)
{
    int64_t          in, out, total;
    ngx_lf_usage_t  *u;

    u = &rec->usage;

    ngx_lf_usage_normalize(u, &in, &out, &total);

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || (in != NGX_LF_USAGE_UNSET && ngx_lf_kint(g, "input", in) != 0)
        || (out != NGX_LF_USAGE_UNSET && ngx_lf_kint(g, "output", out) != 0)
        || (total != NGX_LF_USAGE_UNSET
            && ngx_lf_kint(g, "total", total) != 0)
        || (u->cached != NGX_LF_USAGE_UNSET
            && ngx_lf_kint(g, "input_cached_tokens", u->cached) != 0)
        || (u->cache_creation != NGX_LF_USAGE_UNSET
            && ngx_lf_kint(g, "input_cache_creation", u->cache_creation)
               != 0)
        || (u->reasoning != NGX_LF_USAGE_UNSET
            && ngx_lf_kint(g, "output_reasoning_tokens", u->reasoning) != 0))
    {
        return -1;
    }

    return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
}


/* Langfuse v2 servers read only this object, v3 the detailed one */

static int
ngx_lf_gen_usage_classic(yajl_gen g, ngx_lf_record_t *rec)
{
    int64_t  in, out, total;

    ngx_lf_usage_normalize(&rec->usage, &in, &out, &total);

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || (rec->usage.input != NGX_LF_USAGE_UNSET
            && ngx_lf_kint(g, "input", rec->usage.input) != 0)
        || (rec->usage.output != NGX_LF_USAGE_UNSET
            && ngx_lf_kint(g, "output", rec->usage.output) != 0)
        || (total != NGX_LF_USAGE_UNSET
            && ngx_lf_kint(g, "total", total) != 0)
        || ngx_lf_kcstr(g, "unit", "TOKENS") != 0)
    {
        return -1;
    }

    return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
}


static int
ngx_lf_gen_metadata(yajl_gen g, ngx_lf_record_t *rec, ngx_lf_span_t *span)
{
    char         status[16];
    const char  *trunc;

    snprintf(status, sizeof(status), "%u", span->status);

    trunc = ngx_lf_truncated(rec);

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kcstr(g, "http_status", status) != 0
        || ngx_lf_kstr(g, "method", span->method.data, span->method.len)
           != 0
        || ngx_lf_kstr(g, "uri", span->uri.data, span->uri.len) != 0
        || ngx_lf_kcstr(g, "stream", rec->response_sse ? "true" : "false")
           != 0
        || (rec->finish_reason.len
            && ngx_lf_kstr(g, "finish_reason", rec->finish_reason.data,
                           rec->finish_reason.len) != 0)
        || (rec->response_id.len
            && ngx_lf_kstr(g, "response_id", rec->response_id.data,
                           rec->response_id.len) != 0)
        || (trunc && ngx_lf_kcstr(g, "truncated", trunc) != 0))
    {
        return -1;
    }

    return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
}


/*
 * The operator's metadata: OTLP attributes inside the open attribute
 * array, or members of the open legacy metadata object.
 */

static int
ngx_lf_gen_trace_metadata(yajl_gen g, ngx_lf_span_t *span, int otlp)
{
    int           n;
    size_t        i;
    char          key[256];
    ngx_lf_kv_t  *kv;

    for (i = 0; i < span->nmetadata; i++) {
        kv = &span->metadata[i];

        if (kv->value.len == 0) {
            continue;
        }

        if (!otlp) {
            if (ngx_lf_json_gen_string(g, kv->key.data, kv->key.len) != 0
                || ngx_lf_json_gen_string(g, kv->value.data,
                                          kv->value.len)
                   != 0)
            {
                return -1;
            }

            continue;
        }

        n = snprintf(key, sizeof(key), "langfuse.trace.metadata.%.*s",
                     (int) kv->key.len, (const char *) kv->key.data);

        if (n < 0 || (size_t) n >= sizeof(key)) {
            continue;
        }

        if (ngx_lf_attr(g, key, kv->value.data, kv->value.len) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
ngx_lf_gen_tags(yajl_gen g, ngx_lf_str_t *tags, int otlp)
{
    const u_char  *p, *end, *start, *last;

    if (yajl_gen_array_open(g) != yajl_gen_status_ok) {
        return -1;
    }

    p = tags->data;
    end = tags->data + tags->len;

    while (p < end) {
        start = p;

        while (p < end && *p != ',') {
            p++;
        }

        last = p++;

        while (start < last && (*start == ' ' || *start == '\t')) {
            start++;
        }

        while (last > start && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }

        if (start == last) {
            continue;
        }

        if (otlp) {
            if (yajl_gen_map_open(g) != yajl_gen_status_ok
                || ngx_lf_kstr(g, "stringValue", start, last - start) != 0
                || yajl_gen_map_close(g) != yajl_gen_status_ok)
            {
                return -1;
            }

        } else if (ngx_lf_json_gen_string(g, start, last - start) != 0) {
            return -1;
        }
    }

    return yajl_gen_array_close(g) == yajl_gen_status_ok ? 0 : -1;
}


/* captured JSON as JSON; cut at the capture limit, as a string */

static int
ngx_lf_gen_json_text(yajl_gen g, ngx_lf_buf_t *buf)
{
    if (buf->truncated) {
        return ngx_lf_json_gen_string(g, buf->data, buf->len);
    }

    /* our own generator wrote it: only memory can make this fail */
    return ngx_lf_json_replay(g, buf->data, buf->len);
}


static const char *
ngx_lf_truncated(ngx_lf_record_t *rec)
{
    int       in, out;
    unsigned  i;

    in = rec->input.truncated || rec->tools.truncated
         || rec->system.truncated;
    out = rec->output.truncated || rec->reasoning.truncated
          || rec->tool_calls_dropped;

    for (i = 0; i < rec->ntool_calls; i++) {
        out |= rec->tool_calls[i].arguments.truncated;
    }

    if (in && out) {
        return "input,output";
    }

    if (in) {
        return "input";
    }

    if (out) {
        return "output";
    }

    return NULL;
}


static ngx_lf_buf_t *
ngx_lf_model(ngx_lf_record_t *rec)
{
    return rec->model.len ? &rec->model : &rec->request_model;
}


static int
ngx_lf_key(yajl_gen g, const char *key)
{
    return yajl_gen_string(g, (const u_char *) key, strlen(key))
           == yajl_gen_status_ok ? 0 : -1;
}


static int
ngx_lf_kstr(yajl_gen g, const char *key, const u_char *v, size_t len)
{
    if (ngx_lf_key(g, key) != 0) {
        return -1;
    }

    return ngx_lf_json_gen_string(g, v, len);
}


static int
ngx_lf_kcstr(yajl_gen g, const char *key, const char *v)
{
    return ngx_lf_kstr(g, key, (const u_char *) v, strlen(v));
}


static int
ngx_lf_kint(yajl_gen g, const char *key, int64_t v)
{
    if (ngx_lf_key(g, key) != 0) {
        return -1;
    }

    return yajl_gen_integer(g, v) == yajl_gen_status_ok ? 0 : -1;
}


static int
ngx_lf_ktime(yajl_gen g, const char *key, int64_t ms)
{
    char  iso[32];

    ngx_lf_iso_time(iso, ms);

    return ngx_lf_kcstr(g, key, iso);
}


/* an OTLP string attribute; an empty value is left out */

static int
ngx_lf_attr(yajl_gen g, const char *key, const u_char *v, size_t len)
{
    if (len == 0) {
        return 0;
    }

    if (yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kcstr(g, "key", key) != 0
        || ngx_lf_key(g, "value") != 0
        || yajl_gen_map_open(g) != yajl_gen_status_ok
        || ngx_lf_kstr(g, "stringValue", v, len) != 0
        || yajl_gen_map_close(g) != yajl_gen_status_ok)
    {
        return -1;
    }

    return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
}


/* OTLP carries JSON values as strings holding JSON text */

static int
ngx_lf_attr_json(yajl_gen g, const char *key, ngx_lf_value_pt value,
    ngx_lf_record_t *rec)
{
    int             rc;
    size_t          len;
    yajl_gen        sub;
    const u_char   *buf;

    sub = yajl_gen_alloc(NULL);
    if (sub == NULL) {
        return -1;
    }

    rc = -1;

    if (value(sub, rec) == 0
        && yajl_gen_get_buf(sub, &buf, &len) == yajl_gen_status_ok)
    {
        rc = ngx_lf_attr(g, key, buf, len);
    }

    yajl_gen_free(sub);

    return rc;
}
