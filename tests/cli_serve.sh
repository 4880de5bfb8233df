#!/usr/bin/env bash
# cli_serve.sh: `dalle serve` on a small model directory: /health, the page,
# OpenAI's POST /v1/images/generations (b64_json PNGs of the model's size),
# 400 for bad JSON and fields, 413 for a large body, 429 when the queue is
# full, the server still serving after all of them; then the page itself in
# headless Chromium: web/test.html types a caption into it, presses Generate
# and reports the images that appear. Run by tests/run.
. "$(dirname "$0")/lib_cli.sh"
make_tiny_model "$T/model"
PORT=$((20000 + $$ % 20000))
$DALLE serve --model "$T/model" --port $PORT --web web --queue 1 --max-body 4096 2> "$T/serve.log" &
SERVER=$!
trap 'kill $SERVER 2> /dev/null; wait $SERVER 2> /dev/null; rm -rf "$T"' EXIT
URL=http://127.0.0.1:$PORT
for i in $(seq 1 100); do curl -s -o /dev/null "$URL/health" && break; sleep 0.1; done
# status CODE_FILE BODY_FILE METHOD PATH [DATA]: the HTTP status of a request
req() { curl -s -o "$T/body" -w '%{http_code}' -X "$1" "$URL$2" ${3:+-H 'Content-Type: application/json' --data-binary "$3"}; }

[ "$(req GET /health)" = 200 ] && grep -q '"status":"ok"' "$T/body" && ok "GET /health" || bad "health: $(cat "$T/body")"
[ "$(req GET /)" = 200 ] && grep -q '<form id="form">' "$T/body" && ok "GET / serves the page" || bad "page"
[ "$(req GET /app.js)" = 200 ] && ok "GET /app.js" || bad "app.js"
[ "$(req GET /../Makefile)" = 404 ] && ok "no path outside the page's files (404)" || bad "traversal"

code=$(req POST /v1/images/generations '{"prompt": "a small picture", "n": 2, "size": "64x64", "response_format": "b64_json", "seed": 3}')
n=$(grep -o '"b64_json":"[^"]*"' "$T/body" | wc -l)
grep -o '"b64_json":"[^"]*"' "$T/body" | head -1 | sed 's/.*:"//; s/"$//' | base64 -d > "$T/img.png" 2> /dev/null
[ "$code" = 200 ] && [ "$n" = 2 ] && [ "$(head -c 4 "$T/img.png" | od -An -c | tr -d ' ')" = "211PNG" ] \
    && ok "POST /v1/images/generations: 2 PNGs" || bad "generations ($code): $(head -c 300 "$T/body")"

check() { # NAME WANT_CODE WANT_TEXT BODY
    local code
    code=$(req POST /v1/images/generations "$4")
    [ "$code" = "$2" ] && grep -q "$3" "$T/body" && ok "$1: $code $(cat "$T/body")" || bad "$1: $code $(cat "$T/body")"
}
check "bad JSON" 400 '"error"' '{"prompt": '
check "no prompt" 400 "prompt" '{"n": 1}'
check "n = 0" 400 "'n'" '{"prompt": "x", "n": 0}'
check "n too large" 400 "'n'" '{"prompt": "x", "n": 10000}'
check "another size" 400 "size" '{"prompt": "x", "size": "256x256"}'
check "url format" 400 "response_format" '{"prompt": "x", "response_format": "url"}'
check "negative guidance" 400 "'guidance'" '{"prompt": "x", "guidance": -1}'
[ "$(req POST /v1/images/generations '{"prompt": "a small picture", "guidance": 2}')" = 200 ] \
    && grep -q '"b64_json"' "$T/body" && ok "guidance 2: an image" || bad "guidance 2: $(head -c 300 "$T/body")"
big=$(head -c 6000 /dev/zero | tr '\0' 'a')
check "a body over --max-body" 413 "over 4096" "{\"prompt\": \"$big\"}"

# --queue 1: while one request runs, the others are turned away
for k in 1 2 3 4; do (req POST /v1/images/generations '{"prompt": "x", "n": 16}' > "$T/q$k"; cp "$T/body" "$T/qb$k" 2> /dev/null) & done
wait $(jobs -p | grep -v "^$SERVER$") 2> /dev/null
codes=$(cat "$T"/q? | sort | tr '\n' ' ')
[[ "$codes" == *200* ]] && [[ "$codes" == *429* ]] && ok "a full queue answers 429 ($codes)" || bad "queue: $codes"
[ "$(req GET /health)" = 200 ] && ok "still serving" || bad "server died"

# the page in a headless browser
if command -v chromium > /dev/null; then
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --virtual-time-budget=60000 \
        --dump-dom "$URL/test.html" > "$T/dom.html" 2> "$T/chromium.log"
    got=$(sed -n 's:.*<pre id="result">\([^<]*\)</pre>.*:\1:p' "$T/dom.html")
    [ "$got" = "images 2 64x64 download true" ] && ok "Chromium: typed a caption, 2 images appeared" \
        || bad "Chromium: '$got' $(tail -3 "$T/chromium.log")"
else
    bad "chromium missing: run scripts/setup"
fi
[ $fails -eq 0 ]
