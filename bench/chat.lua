-- wrk script of `make bench`: every request is the same OpenAI chat
-- completion request, about 1 KB of messages.  BENCH_STREAM=1 in the
-- environment asks for a streamed (server-sent events) answer.  When
-- the run ends, one line "BENCH-RESULT key=value ..." is printed for
-- bench/run.sh to read (latencies in microseconds).

local stream = os.getenv("BENCH_STREAM") == "1"

local messages = [[
[{"role":"system","content":"You are a careful senior infrastructure engineer. Answer in plain English, in at most three short paragraphs. When you are not sure, say so and say what you would measure to find out. Prefer concrete numbers to adjectives, and never invent benchmark results."},
{"role":"user","content":"We run nginx as a gateway in front of several LLM providers. Every request and response body should be recorded for tracing, and the traces sent to an observability backend. Our worry is latency: the gateway handles a few thousand requests a second at peak."},
{"role":"assistant","content":"Recording bodies in the gateway is cheap if the work per request stays small and bounded: copy what you need, parse it incrementally, and hand a compact record to a queue. The expensive part is the network: export in batches, off the request path, and drop rather than block when the backend is slow."},
{"role":"user","content":"Can that be done inside an nginx worker without slowing the proxied requests down? Give me the short answer first, then what to watch."}]
]]

messages = messages:gsub("\n", "")

local body = '{"model":"gpt-4o-mini","messages":' .. messages
    .. ',"temperature":0.2,"max_tokens":400,"user":"bench-user-0001"'

if stream then
    body = body .. ',"stream":true,"stream_options":{"include_usage":true}'
end

body = body .. '}'

wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-not-a-real-key"

if stream then
    wrk.headers["Accept"] = "text/event-stream"
    wrk.headers["X-Bench-Stream"] = "1"
end


function done(summary, latency, requests)
    local e = summary.errors
    local seconds = summary.duration / 1e6

    io.write(string.format(
        "BENCH-RESULT requests=%d duration_us=%d rps=%.2f mean_us=%.1f"
        .. " p50_us=%d p90_us=%d p99_us=%d max_us=%d"
        .. " socket_errors=%d non2xx=%d body_bytes=%d\n",
        summary.requests, summary.duration, summary.requests / seconds,
        latency.mean, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max,
        e.connect + e.read + e.write + e.timeout, e.status, #body))
end
