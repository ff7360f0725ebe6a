#!/usr/bin/env bash
#
# `make bench` (or `bash bench/run.sh`): what tracing costs a proxied
# request.  See bench/README.md.
#
# Starts, in a temporary directory, three nginx:
#   helper     a fast fake LLM (POST /v1/chat/completions, JSON or SSE)
#              and a fake Langfuse sink (bench/helper.conf.in);
#   module     loads the module; (a) untraced and (b) traced servers;
#   no-module  the same config without load_module: (c)
# (bench/nginx.conf.in), then runs wrk against (a), (b), (c) in turn,
# round after round, so that machine noise hits all of them alike, and
# prints the medians and the ratios.  Timing is reported, never judged:
# the exit status is 0 unless something could not be set up or started.
#
# Environment:
#   BENCH_SECONDS      length of one wrk run (5)
#   BENCH_ROUNDS       rounds of (a) (b) (c) per mode (3)
#   BENCH_CONNECTIONS  wrk connections (16)
#   BENCH_THREADS      wrk threads (1)
#   BENCH_MODES        "json sse" (default), "json" or "sse"
#   BENCH_NO_MODULE    0 leaves out variant (c) (1)
#   BENCH_WARMUP       seconds of unrecorded load per variant first (1)
#   BENCH_KEEP         1 keeps the temporary directory (configs, logs)
#   NGINX_BIN          nginx binary (/usr/sbin/nginx)

set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=$top/bench

say()  { printf 'bench: %s\n' "$*"; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }
die()  { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

python=/usr/bin/python3          # not a pyenv shim that PATH may hold
nginx_bin=${NGINX_BIN:-/usr/sbin/nginx}
module=$top/objs/ngx_http_langfuse_module.so

seconds=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-3}
connections=${BENCH_CONNECTIONS:-16}
threads=${BENCH_THREADS:-1}
modes=${BENCH_MODES:-json sse}
with_nomodule=${BENCH_NO_MODULE:-1}
warmup=${BENCH_WARMUP:-1}
keep=${BENCH_KEEP:-0}


# ---- checks ------------------------------------------------------------

for v in BENCH_SECONDS:"$seconds" BENCH_ROUNDS:"$rounds" \
         BENCH_CONNECTIONS:"$connections" BENCH_THREADS:"$threads" \
         BENCH_WARMUP:"$warmup"; do
    case "${v#*:}" in
        ''|*[!0-9]*) die "${v%%:*} must be a whole number, not \"${v#*:}\"" ;;
    esac
done
[ "$seconds" -ge 1 ] || die "BENCH_SECONDS must be at least 1"
[ "$rounds" -ge 1 ] || die "BENCH_ROUNDS must be at least 1"
[ "$threads" -ge 1 ] || die "BENCH_THREADS must be at least 1"
[ "$connections" -ge "$threads" ] \
    || die "BENCH_CONNECTIONS must be at least BENCH_THREADS"

for m in $modes; do
    case "$m" in
        json|sse) ;;
        *) die "BENCH_MODES takes json and/or sse, not \"$m\"" ;;
    esac
done
[ -n "${modes// /}" ] || die "BENCH_MODES is empty"

[ -f "$module" ] || die "$module is missing: run make module first"
[ -x "$nginx_bin" ] || die "no nginx at $nginx_bin (set NGINX_BIN)"
[ -x "$python" ] || die "$python is missing"
for f in nginx.conf.in helper.conf.in chat.lua benchlib.py; do
    [ -f "$bench/$f" ] || die "$bench/$f is missing"
done

if ! command -v wrk >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || die "wrk is not installed (apt-get install wrk)"
    say "installing wrk"
    if ! apt-get install -y -q wrk >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q wrk >/dev/null 2>&1 \
            || die "apt-get install wrk failed"
    fi
    command -v wrk >/dev/null 2>&1 || die "wrk is still missing"
fi

if [ "$(id -u)" -eq 0 ]; then
    # workers would otherwise run as nobody, who may not reach the files
    user_line="user root;"
else
    user_line="# not root: the workers run as $(id -un)"
fi


# ---- temporary directory, and cleaning up whatever happens ------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lf-bench.XXXXXX")
pids=()

cleanup() {
    local pid

    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        # an nginx master stops its workers, then itself: 10 s at most
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            warn "nginx $pid did not stop in 10 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ "$keep" = 1 ]; then
        say "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# ---- configs -------------------------------------------------------------

read -r plain_port traced_port nomod_port upstream_port sink_port \
    < <("$python" "$bench/benchlib.py" ports 5)

# render TEMPLATE PREFIX PLAIN_PORT WITH_MODULE(0|1) > nginx.conf
render() {
    local template=$1 prefix=$2 plain=$3 with=$4 out

    if [ "$with" = 1 ]; then
        out=$(sed -e 's/^#@lf //' "$template")
    else
        out=$(sed -e '/^#@lf-begin/,/^#@lf-end/d' -e '/^#@lf /d' "$template")
    fi

    # the values are digits and plain paths: no sed metacharacters but |
    out=$(printf '%s\n' "$out" | sed \
        -e "s|@PREFIX@|$prefix|g" \
        -e "s|@MODULE@|$module_copy|g" \
        -e "s|@USER_DIRECTIVE@|$user_line|g" \
        -e "s|@PLAIN_PORT@|$plain|g" \
        -e "s|@TRACED_PORT@|$traced_port|g" \
        -e "s|@UPSTREAM_PORT@|$upstream_port|g" \
        -e "s|@SINK_PORT@|$sink_port|g")

    if printf '%s\n' "$out" | grep -q '@[A-Z_]*@'; then
        die "$template: unknown placeholder" \
            "$(printf '%s\n' "$out" | grep -o '@[A-Z_]*@' | head -n 1)"
    fi
    printf '%s\n' "$out"
}

case "$tmp" in
    *'|'*|*[[:space:]]*) die "paths with '|' or spaces are not supported" ;;
esac

# nginx maps the .so it loads: a `make module` rewriting it in place
# while the benchmark runs would crash the workers; load a copy
cp "$module" "$tmp/ngx_http_langfuse_module.so"
module_copy=$tmp/ngx_http_langfuse_module.so

instances=(helper module)
[ "$with_nomodule" = 1 ] && instances+=(nomodule)

for inst in "${instances[@]}"; do
    mkdir -p "$tmp/$inst/logs" "$tmp/$inst/temp" "$tmp/$inst/spool"
done

render "$bench/helper.conf.in" "$tmp/helper/" 0 0 > "$tmp/helper/nginx.conf"
render "$bench/nginx.conf.in" "$tmp/module/" "$plain_port" 1 \
    > "$tmp/module/nginx.conf"
if [ "$with_nomodule" = 1 ]; then
    render "$bench/nginx.conf.in" "$tmp/nomodule/" "$nomod_port" 0 \
        > "$tmp/nomodule/nginx.conf"
fi


# ---- start ---------------------------------------------------------------

start() {
    local inst=$1 dir=$tmp/$1

    if ! "$nginx_bin" -t -q -p "$dir/" -c "$dir/nginx.conf" \
            -e "$dir/logs/error.log" 2> "$dir/logs/test.log"; then
        cat "$dir/logs/test.log" >&2
        die "the $inst nginx config does not pass nginx -t ($dir/nginx.conf)"
    fi
    "$nginx_bin" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
        > "$dir/logs/stdout.log" 2>&1 &
    pids+=("$!")
}

fail_start() {
    local inst

    for inst in "${instances[@]}"; do
        printf -- '--- %s error log:\n' "$inst" >&2
        tail -n 20 "$tmp/$inst/logs/error.log" >&2 2>/dev/null || true
    done
    keep=1
    die "$*"
}

say "nginx $("$nginx_bin" -v 2>&1 | sed 's|.*/||'), module $module" \
    "($(date -r "$module" '+built %F %T'), loaded from a copy)"
say "load average before starting: $(cut -d' ' -f1-3 /proc/loadavg)" \
    "(other work on the machine adds noise)"
say "ports: untraced $plain_port, traced $traced_port," \
    "no-module $nomod_port, upstream $upstream_port, sink $sink_port"

for inst in "${instances[@]}"; do
    start "$inst"
done

ports=("$upstream_port" "$sink_port" "$plain_port" "$traced_port")
[ "$with_nomodule" = 1 ] && ports+=("$nomod_port")
"$python" "$bench/benchlib.py" wait-port "${ports[@]}" \
    || fail_start "nginx did not start"
for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || fail_start "an nginx exited at start"
done

declare -A port_of=([untraced]=$plain_port [traced]=$traced_port
                    [no-module]=$nomod_port)
# master pid of the nginx serving each variant
declare -A master_of=([untraced]=${pids[1]} [traced]=${pids[1]})
[ "$with_nomodule" = 1 ] && master_of[no-module]=${pids[2]}
clk_tck=$(getconf CLK_TCK)
variants=(untraced traced)
[ "$with_nomodule" = 1 ] && variants+=(no-module)

spool=$tmp/helper/spool
sink_log=$tmp/helper/logs/sink.log
traced_log=$tmp/module/logs/traced.log
module_errors=$tmp/module/logs/error.log

lines() {
    if [ -f "$1" ]; then
        wc -l < "$1"
    else
        echo 0
    fi
}

# wait until the sink got nothing new for 0.5 s (the exporter looks at
# the queue every 100 ms), 30 s at most; prints the seconds waited
drain() {
    local last now quiet=0 ticks=0

    last=$(lines "$sink_log")
    while [ "$quiet" -lt 5 ] && [ "$ticks" -lt 300 ]; do
        sleep 0.1
        ticks=$((ticks + 1))
        now=$(lines "$sink_log")
        if [ "$now" = "$last" ]; then
            quiet=$((quiet + 1))
        else
            quiet=0
            last=$now
        fi
    done
    [ "$ticks" -lt 300 ] || warn "the sink still receives batches after 30 s"
    echo "$((ticks / 10)).$((ticks % 10))"
}

# CPU time (user + system, in clock ticks) of the workers of a master
worker_ticks() {
    local pid sum=0 ticks

    for pid in $(pgrep -P "$1"); do
        ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) \
            || continue
        sum=$((sum + ticks))
    done
    echo "$sum"
}

dropped_total() {
    sed -n 's/.*langfuse: queue is full, \([0-9]*\) event.*/\1/p' \
        "$module_errors" | awk '{ n += $1 } END { print n + 0 }'
}


# ---- sanity: every variant answers, the exporter reaches the sink -------

for mode in $modes; do
    for variant in "${variants[@]}"; do
        "$python" "$bench/benchlib.py" probe \
            "http://127.0.0.1:${port_of[$variant]}/v1/chat/completions" \
            "$mode" || fail_start "$variant ($mode) does not answer"
    done
done

drain > /dev/null
read -r batches spans _ _ < <("$python" "$bench/benchlib.py" spans "$spool")
if [ "$spans" -gt 0 ]; then
    say "sanity: every variant answers; the sink got $spans span(s) in" \
        "$batches batch(es) from the traced probes"
else
    warn "the sink got no span from the traced probes: the exporter does" \
         "not reach it (see $module_errors); timing goes on"
fi


# ---- runs ----------------------------------------------------------------

results=$tmp/results.tsv
spans_tsv=$tmp/spans.tsv
printf 'mode\tvariant\tround\trequests\tduration_us\trps\tmean_us\tp50_us\tp90_us\tp99_us\tmax_us\tsocket_errors\tnon2xx\tcpu_ticks\tclk_tck\n' \
    > "$results"
printf 'mode\tround\twrk_requests\tserved\tspans\tbatches\tbytes\tundecodable\tdropped\n' \
    > "$spans_tsv"

# wrk VARIANT MODE SECONDS > output
run_wrk() {
    local stream=0

    [ "$2" = sse ] && stream=1
    BENCH_STREAM=$stream wrk -t "$threads" -c "$connections" -d "${3}s" \
        --timeout 10s -s "$bench/chat.lua" \
        "http://127.0.0.1:${port_of[$1]}"
}

# the value of KEY=... in a BENCH-RESULT line
field() {
    printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

if [ "$warmup" -gt 0 ]; then
    say "warm-up: ${warmup}s per variant and mode"
    for mode in $modes; do
        for variant in "${variants[@]}"; do
            run_wrk "$variant" "$mode" "$warmup" > /dev/null 2>&1 \
                || warn "wrk failed warming up $variant ($mode)"
        done
    done
    drain > /dev/null
    "$python" "$bench/benchlib.py" spans "$spool" > /dev/null
fi

total=$((rounds * $(wc -w <<< "$modes") * ${#variants[@]}))
say "$total runs of ${seconds}s: $rounds round(s) x modes ($modes) x" \
    "variants (${variants[*]}); wrk -t$threads -c$connections"

n=0
for round in $(seq 1 "$rounds"); do
    for mode in $modes; do
        for variant in "${variants[@]}"; do
            n=$((n + 1))
            served0=$(lines "$traced_log")
            dropped0=$(dropped_total)
            ticks0=$(worker_ticks "${master_of[$variant]}")

            if ! out=$(run_wrk "$variant" "$mode" "$seconds" 2>&1); then
                warn "wrk failed on $variant ($mode): $out"
                continue
            fi
            result=$(printf '%s\n' "$out" | grep '^BENCH-RESULT' || true)
            if [ -z "$result" ]; then
                warn "no result from wrk on $variant ($mode): $out"
                continue
            fi

            # a traced run's CPU counts the exporting of its spans too
            waited=""
            [ "$variant" = traced ] && waited=$(drain)
            ticks=$(( $(worker_ticks "${master_of[$variant]}") - ticks0 ))

            row=("$mode" "$variant" "$round")
            for k in requests duration_us rps mean_us p50_us p90_us p99_us \
                     max_us socket_errors non2xx; do
                row+=("$(field "$result" "$k")")
            done
            row+=("$ticks" "$clk_tck")
            (IFS=$'\t'; printf '%s\n' "${row[*]}") >> "$results"

            extra=""
            if [ "$variant" = traced ]; then
                served=$(( $(lines "$traced_log") - served0 ))
                dropped=$(( $(dropped_total) - dropped0 ))
                read -r batches spans bytes bad \
                    < <("$python" "$bench/benchlib.py" spans "$spool")
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" \
                    "$round" "${row[3]}" "$served" "$spans" "$batches" \
                    "$bytes" "$bad" "$dropped" >> "$spans_tsv"
                extra=", $spans spans in $batches batches for $served"
                extra="$extra requests (drained in ${waited}s)"
            else
                sleep 0.5
            fi

            printf 'bench: [%d/%d] round %d %-4s %-9s %6.0f req/s  p99 %6.2f ms  %4.0f us CPU/req%s\n' \
                "$n" "$total" "$round" "$mode" "$variant" "${row[5]}" \
                "$(awk -v u="${row[9]}" 'BEGIN { print u / 1000 }')" \
                "$(awk -v t="$ticks" -v c="$clk_tck" -v r="${row[3]}" \
                    'BEGIN { print r ? t * 1e6 / c / r : 0 }')" "$extra"
        done
    done
done

"$python" "$bench/benchlib.py" report "$results" "$spans_tsv"

alerts=$(grep -c '\[\(alert\|crit\|emerg\)\]' "$module_errors" || true)
if [ "${alerts:-0}" -gt 0 ]; then
    echo
    warn "$alerts alert/crit/emerg line(s) in the error log of the module" \
         "nginx, e.g.:"
    grep '\[\(alert\|crit\|emerg\)\]' "$module_errors" | head -n 3 >&2
fi

echo
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "machine: $(nproc) cores, shared by wrk and the nginx (one worker" \
    "each): the numbers compare variants, not machines"
