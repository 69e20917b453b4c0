-- sse.lua - wrk script: POST a small streamed chat completion (stream with
-- stream_options.include_usage, Accept: text/event-stream); wrk reads each
-- SSE reply whole. The headers, the key and the BENCH_RESULT line for run.sh
-- come from chat.lua, loaded first from the same directory.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "chat.lua")
wrk.body = '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hi in one word."}],"max_completion_tokens":5}'
wrk.headers["Accept"] = "text/event-stream"
