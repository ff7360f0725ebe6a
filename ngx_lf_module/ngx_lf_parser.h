
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _NGX_LF_PARSER_H_INCLUDED_
#define _NGX_LF_PARSER_H_INCLUDED_


#include "ngx_lf_dialect.h"


/*
 * Inside the parsers: the state one body's walk keeps, the table every
 * dialect fills in, and the helpers the dialects share.
 */

#define NGX_LF_KEY_MAX          64
#define NGX_LF_EVENT_MAX        64
#define NGX_LF_PARAMS_KEYS      64


typedef enum {
    NGX_LF_KEY_PARAM = 0,
    NGX_LF_KEY_INPUT,
    NGX_LF_KEY_SYSTEM,
    NGX_LF_KEY_TOOLS,
    NGX_LF_KEY_PARAMS,          /* an object whose members are params */
    NGX_LF_KEY_IGNORE
} ngx_lf_key_role_e;


typedef struct {
    const char             *key;
    ngx_lf_key_role_e       role;
} ngx_lf_key_t;


typedef struct {
    const char             *path;
    size_t                  offset;
} ngx_lf_usage_path_t;


/* one model parameter: its key, and its value as JSON text */
typedef struct {
    u_char                  key[NGX_LF_KEY_MAX];
    size_t                  key_len;
    ngx_lf_buf_t            value;
} ngx_lf_param_t;


/* one value of a response body (or of one event of a stream) */
typedef int (*ngx_lf_response_pt)(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);


typedef struct {
    const char             *name;       /* langfuse_dialect value */
    const char             *operation;  /* the default trace name */
    const ngx_lf_key_t     *keys;       /* top-level request members */
    ngx_lf_response_pt      response;
} ngx_lf_dialect_t;


struct ngx_lf_parser_s {
    ngx_lf_record_t        *rec;
    ngx_lf_json_t           json;
    ngx_lf_sse_t            sse;

    /* request: the model parameters, a repeated key keeping its last */
    ngx_lf_param_t         *params;
    unsigned                nparams;
    size_t                  params_size;
    ngx_lf_param_t         *param;      /* the container being captured */
    yajl_gen                gen;
    ngx_lf_buf_t            scratch;
    u_char                  params_key[NGX_LF_KEY_MAX];
    size_t                  params_key_len;

    /* response: where inside choices, items and tool calls it is */
    int64_t                 choice;
    int64_t                 tool;
    int64_t                 tool_keys[NGX_LF_MAX_TOOL_CALLS];

    /*
     * an OpenAI-shaped tool call element: its members wait for its
     * "index", which some servers (vLLM) send after "id"
     */
    ngx_lf_buf_t            tool_id;
    ngx_lf_buf_t            tool_name;
    ngx_lf_buf_t            tool_args;
    unsigned                tool_has_id:1;
    unsigned                tool_has_name:1;

    /* the type of the current server-sent event */
    u_char                  event[NGX_LF_EVENT_MAX];
    size_t                  event_len;

    /* a cumulative stream's event has begun to restate the text */
    unsigned                event_text;
    unsigned                event_reasoning;

    /* a Gemini part: its text waits for its "thought" flag */
    ngx_lf_buf_t            part;
    unsigned                part_thought;
    unsigned                part_open;

    unsigned                request:1;
    unsigned                use_sse:1;
    unsigned                finishing:1;    /* the stream has ended */
    unsigned                failed:1;

    uint64_t                bad_events;
    char                    error[160];
};


extern const ngx_lf_dialect_t  ngx_lf_openai_chat_dialect;
extern const ngx_lf_dialect_t  ngx_lf_openai_responses_dialect;
extern const ngx_lf_dialect_t  ngx_lf_openai_embeddings_dialect;
extern const ngx_lf_dialect_t  ngx_lf_dashscope_dialect;
extern const ngx_lf_dialect_t  ngx_lf_anthropic_dialect;
extern const ngx_lf_dialect_t  ngx_lf_gemini_dialect;


#define ngx_lf_usage_field(f)   offsetof(ngx_lf_usage_t, f)

void ngx_lf_set(ngx_lf_buf_t *buf, const u_char *v, size_t len);
/* assistant text, cumulative streams taken care of */
void ngx_lf_text(ngx_lf_parser_t *p, ngx_lf_buf_t *buf, const u_char *v,
    size_t len);
/* a usage count found at path; returns 1 when path was one */
int ngx_lf_usage(ngx_lf_record_t *rec, const ngx_lf_usage_path_t *paths,
    const char *path, ngx_lf_json_type_e type, const u_char *v,
    size_t len);
/* the tool call slot for a provider's own index (or position) */
ngx_lf_tool_call_t *ngx_lf_tool_slot(ngx_lf_parser_t *p, int64_t key);
/* an OpenAI-shaped choice: rest is what follows "choices[]" */
void ngx_lf_choice_value(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *rest, ngx_lf_json_type_e type, const u_char *v, size_t len);
int ngx_lf_event_is(ngx_lf_parser_t *p, const char *name);
int ngx_lf_is_null_text(const u_char *v, size_t len);


#endif /* _NGX_LF_PARSER_H_INCLUDED_ */
