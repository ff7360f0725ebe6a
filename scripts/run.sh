#!/usr/bin/env bash
#
# `make run`: a traced gateway on this machine, in one command.
#
# Called by the Makefile once objs/ngx_http_langfuse_module.so is built.
# Renders conf/demo.conf into run-demo/nginx.conf and starts, in this
# terminal:
#
#   - a demo OpenAI-compatible upstream (t/lib/upstream.py), unless
#     UPSTREAM_URL points at a real provider;
#   - a local trace sink that prints what it receives (t/lib/sink.py),
#     unless a Langfuse endpoint and both keys are given;
#   - nginx with the module, listening on 127.0.0.1:$PORT.
#
# Ctrl-C stops nginx (gracefully, so the last traces are flushed) and then
# the helpers.
#
# Environment:
#   PORT                  nginx port (8080)
#   LANGFUSE_ENDPOINT     Langfuse base URL, e.g. https://cloud.langfuse.com,
#                         https://us.cloud.langfuse.com, http://host:3000;
#                         LANGFUSE_HOST and LANGFUSE_BASE_URL are aliases
#   LANGFUSE_PUBLIC_KEY   pk-lf-...
#   LANGFUSE_SECRET_KEY   sk-lf-...
#   LANGFUSE_PROTOCOL     otlp (default) or ingestion
#   UPSTREAM_URL          real provider instead of the demo upstream; /v1/
#                         is mapped onto it: https://api.openai.com, or
#                         https://dashscope.aliyuncs.com/compatible-mode/v1
#   UPSTREAM_API_KEY      provider key the gateway adds (Authorization:
#                         Bearer); without it the client's header is passed
#   MODEL                 model name in the printed curl examples
#   UPSTREAM_PORT         demo upstream port (8081)
#   SINK_PORT             local sink port (3000)
#   NGINX_BIN             nginx binary (/usr/sbin/nginx); NGINX is an alias

set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

say()  { printf 'run: %s\n' "$*"; }
warn() { printf 'run: warning: %s\n' "$*" >&2; }
die()  { printf 'run: error: %s\n' "$*" >&2; exit 1; }

python=/usr/bin/python3          # not a pyenv shim that PATH may hold
nginx_bin=${NGINX_BIN:-${NGINX:-/usr/sbin/nginx}}
module=$top/objs/ngx_http_langfuse_module.so
template=$top/conf/demo.conf
runtime=$top/run-demo

port=${PORT:-8080}
upstream_port=${UPSTREAM_PORT:-8081}
sink_port=${SINK_PORT:-3000}
model=${MODEL:-gpt-4o-mini}
protocol=${LANGFUSE_PROTOCOL:-otlp}


# ---- checks ------------------------------------------------------------

for p in "$port" "$upstream_port" "$sink_port"; do
    case "$p" in
        ''|*[!0-9]*) die "port \"$p\" is not a number" ;;
    esac
    if [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then
        die "port $p is out of range"
    fi
done

case "$protocol" in
    otlp|ingestion) ;;
    *) die "LANGFUSE_PROTOCOL must be otlp or ingestion, not \"$protocol\"" ;;
esac

[ -f "$module" ] || die "$module is missing; build it first with: make"
[ -x "$nginx_bin" ] || die "no nginx at $nginx_bin (scripts/deps.sh run)"
[ -f "$template" ] || die "$template is missing"

# A value goes into nginx.conf as one bare word: refuse anything that
# would end or change the directive.
check_word() {
    case "$2" in
        *[[:space:]]*|*[\"\'\\\;{}\$]*)
            die "$1 contains a space, quote, backslash, ';', '{', '}'" \
                "or '\$'"
            ;;
    esac
}

check_url() {
    case "$2" in
        http://?*|https://?*) ;;
        *) die "$1 must start with http:// or https:// (got \"$2\")" ;;
    esac
    check_word "$1" "$2"
}


# ---- where traces go ---------------------------------------------------

endpoint=${LANGFUSE_ENDPOINT:-${LANGFUSE_HOST:-${LANGFUSE_BASE_URL:-}}}
public_key=${LANGFUSE_PUBLIC_KEY:-}
secret_key=${LANGFUSE_SECRET_KEY:-}

if [ -n "$endpoint" ] && [ -n "$public_key" ] && [ -n "$secret_key" ]; then
    use_sink=no
    endpoint=${endpoint%/}
    check_url LANGFUSE_ENDPOINT "$endpoint"
    check_word LANGFUSE_PUBLIC_KEY "$public_key"
    check_word LANGFUSE_SECRET_KEY "$secret_key"

else
    if [ -n "$endpoint$public_key$secret_key" ]; then
        warn "exporting to Langfuse needs LANGFUSE_ENDPOINT (or" \
             "LANGFUSE_HOST), LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY" \
             "all set; using the local sink instead"
    fi

    use_sink=yes
    endpoint=http://127.0.0.1:$sink_port
    public_key=pk-lf-demo
    secret_key=sk-lf-demo
fi


# ---- where requests go -------------------------------------------------

auth_line="# no UPSTREAM_API_KEY: the client's Authorization header is passed"

if [ -n "${UPSTREAM_URL:-}" ]; then
    use_demo_upstream=no
    upstream=$UPSTREAM_URL
    check_url UPSTREAM_URL "$upstream"

    # "location /v1/" with "proxy_pass URL": a bare scheme://host keeps
    # the request path (/v1/...); a URL with a path replaces the /v1/
    # prefix with it, which then has to end in "/".
    rest=${upstream#*://}
    case "$rest" in
        */?*) upstream=${upstream%/}/ ;;
        *)    upstream=${upstream%/} ;;
    esac

    if [ -n "${UPSTREAM_API_KEY:-}" ]; then
        check_word UPSTREAM_API_KEY "$UPSTREAM_API_KEY"
        auth_line="proxy_set_header Authorization \"Bearer $UPSTREAM_API_KEY\";"
    fi

else
    use_demo_upstream=yes
    upstream=http://127.0.0.1:$upstream_port
fi

if [ "$(id -u)" -eq 0 ]; then
    # Workers would otherwise run as nobody, who may not reach this tree.
    user_line="user root;"
else
    user_line="# not root: the workers run as $(id -un)"
fi


# ---- ports must be free ------------------------------------------------

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# the processes of an earlier run that was killed too hard to clean up
leftovers() {
    local pid

    { cat "$runtime/logs/nginx.pid" "$runtime/logs/helpers.pid" \
          2>/dev/null || true; } \
    | while read -r pid; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            printf ' %s' "$pid"
        fi
    done
}

busy() {
    local pids

    if ! port_open "$1"; then
        return 0
    fi

    pids=$(leftovers)
    if [ -n "$pids" ]; then
        die "port $1 is in use, probably by an earlier make run that is" \
            "still running (pids$pids): stop it with kill$pids"
    fi

    die "port $1 is in use; stop what listens there or set $2"
}

busy "$port" PORT
[ "$use_demo_upstream" = no ] || busy "$upstream_port" UPSTREAM_PORT
[ "$use_sink" = no ] || busy "$sink_port" SINK_PORT


# ---- render the configuration ------------------------------------------

mkdir -p "$runtime/logs" "$runtime/temp"

# escapes a value for the right-hand side of s|...|...|
sed_value() {
    printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}

conf=$runtime/nginx.conf

(
    umask 077       # the file holds the secret key and maybe an API key

    sed -e "s|@PREFIX@|$(sed_value "$runtime/")|g" \
        -e "s|@MODULE@|$(sed_value "$module")|g" \
        -e "s|@USER_DIRECTIVE@|$(sed_value "$user_line")|g" \
        -e "s|@PORT@|$port|g" \
        -e "s|@UPSTREAM@|$(sed_value "$upstream")|g" \
        -e "s|@UPSTREAM_AUTH@|$(sed_value "$auth_line")|g" \
        -e "s|@LANGFUSE_ENDPOINT@|$(sed_value "$endpoint")|g" \
        -e "s|@LANGFUSE_PUBLIC_KEY@|$(sed_value "$public_key")|g" \
        -e "s|@LANGFUSE_SECRET_KEY@|$(sed_value "$secret_key")|g" \
        -e "s|@LANGFUSE_PROTOCOL@|$protocol|g" \
        "$template" > "$conf.tmp"
)

if left=$(grep -o '@[A-Z_]*@' "$conf.tmp" | sort -u | tr '\n' ' ') \
   && [ -n "$left" ]
then
    rm -f "$conf.tmp"
    die "conf/demo.conf has placeholders run.sh does not know: $left"
fi

mv -f "$conf.tmp" "$conf"
say "rendered $conf from conf/demo.conf"

nginx_args=(-p "$runtime/" -c "$conf" -e stderr)

if ! "$nginx_bin" -t -q "${nginx_args[@]}"; then
    die "nginx rejected $conf (see above)"
fi


# ---- start everything --------------------------------------------------

helpers=()
nginx_pid=

# shellcheck disable=SC2317  # called through the traps
stop_all() {
    local i

    trap - EXIT INT TERM HUP

    # nginx first and gracefully: its workers flush the queue on the way
    # out, and the sink is still there to receive it.
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid" 2>/dev/null || true
        for i in $(seq 50); do
            kill -0 "$nginx_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -TERM "$nginx_pid" 2>/dev/null || true
    fi

    for i in "${helpers[@]}"; do
        kill -TERM "$i" 2>/dev/null || true
    done

    wait 2>/dev/null || true
    rm -f "$runtime/logs/helpers.pid"
}

trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# waits until something accepts on the port, while the process lives
wait_port() {
    local i

    for i in $(seq 100); do
        if ! kill -0 "$2" 2>/dev/null; then
            die "$3 exited before listening on port $1 (see above)"
        fi
        if port_open "$1"; then
            return 0
        fi
        sleep 0.1
    done

    die "$3 did not listen on port $1 within 10 seconds"
}

# Helpers start in the background of this non-interactive shell, which
# makes them ignore Ctrl-C: they are stopped by stop_all, after nginx.
export PYTHONUNBUFFERED=1

if [ "$use_demo_upstream$use_sink" != nono ] && [ ! -x "$python" ]; then
    die "$python is missing (scripts/deps.sh run)"
fi

if [ "$use_demo_upstream" = yes ]; then
    [ -f t/lib/upstream.py ] || die "t/lib/upstream.py is missing"
    "$python" t/lib/upstream.py --port "$upstream_port" --demo &
    helpers+=($!)
    wait_port "$upstream_port" "$!" "the demo upstream (t/lib/upstream.py)"
fi

if [ "$use_sink" = yes ]; then
    [ -f t/lib/sink.py ] || die "t/lib/sink.py is missing"
    "$python" t/lib/sink.py --port "$sink_port" --print &
    helpers+=($!)
    wait_port "$sink_port" "$!" "the trace sink (t/lib/sink.py)"
fi

printf '%s\n' "${helpers[@]}" > "$runtime/logs/helpers.pid"

# Its own session keeps Ctrl-C away from nginx, so that stop_all can shut
# it down gracefully and in order.
setsid "$nginx_bin" "${nginx_args[@]}" &
nginx_pid=$!
wait_port "$port" "$nginx_pid" "nginx"


# ---- tell the user -----------------------------------------------------

base=http://127.0.0.1:$port

if [ "$use_demo_upstream" = yes ]; then
    upstream_text="demo upstream t/lib/upstream.py on port $upstream_port"
    auth_arg=
else
    upstream_text=$upstream
    if [ -n "${UPSTREAM_API_KEY:-}" ]; then
        upstream_text="$upstream_text (key added by the gateway)"
        auth_arg=
    else
        auth_arg=" -H \"Authorization: Bearer \$API_KEY\""
    fi
fi

if [ "$use_sink" = yes ]; then
    traces_text="printed in this terminal by t/lib/sink.py (port $sink_port)"
else
    traces_text="Langfuse at $endpoint: Tracing, in the project of $public_key"
fi

cat <<EOF

  gateway    $base   (config $conf)
  upstream   $upstream_text
  traces     $traces_text
  access log $runtime/logs/access.log

Try it (each response carries an X-Langfuse-Trace-Id header):

  curl -i $base/v1/chat/completions$auth_arg \\
    -H 'Content-Type: application/json' -H 'X-Session-Id: demo-1' \\
    -d '{"model": "$model", "messages": [{"role": "user", "content": "Say hello in three languages."}]}'

  curl -iN $base/v1/chat/completions$auth_arg \\
    -H 'Content-Type: application/json' -H 'X-Session-Id: demo-1' \\
    -d '{"model": "$model", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Count to five."}]}'

Traces are sent within about a second ($protocol protocol). Ctrl-C stops.

EOF

set +e
wait "$nginx_pid"
status=$?
set -e

nginx_pid=
die "nginx exited with status $status"
