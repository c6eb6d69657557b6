#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a figure that
# does not move with the machine's load, unlike req/s (see README, Performance).
#
# Starts on 127.0.0.1 (free ports): an upstream (nginx, 1 worker, a small JSON
# answer) and `paygate serve` under callgrind (memory store with one entitled
# user, HS256, `server.workers = 1`). Warms up with wrk, zeroes the counters, runs
# `wrk -t1 -c4` for DURATION, dumps the counters and prints instructions divided
# by requests. With NGINX_PROXY=1 it measures nginx as a plain reverse proxy the
# same way, for comparison.
#
#   bash benches/callgrind.sh                 # paygate, ~1 minute
#   NGINX_PROXY=1 bash benches/callgrind.sh   # nginx instead
#
# Environment: DURATION [5s], PAYGATE_BIN (else `cargo build --release`),
# KEEP_TMP=1 keeps the callgrind output (open it with callgrind_annotate).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
DURATION=${DURATION:-5s}
SCRIPT=callgrind.sh
# shellcheck source=load/common.sh
. "$HERE/load/common.sh"
ensure_tools nginx wrk valgrind curl python3
ensure_paygate
make_tmp callgrind

UP_PORT=$(free_port)
PROXY_PORT=$(free_port)
mkdir -p "$TMP/up" "$TMP/ngx"
nginx_conf "$TMP/up" off "server { listen 127.0.0.1:$UP_PORT; default_type application/json;
    location / { return 200 '{\"ok\":true,\"service\":\"upstream\",\"items\":[1,2,3]}\n'; } }" >"$TMP/up/nginx.conf"
"$NGINX" -p "$TMP/up" -c "$TMP/up/nginx.conf" &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"

SECRET="callgrind-bench-secret-0123456789abcdef"
cat >"$TMP/users.json" <<EOF
{"u1": {"customers": ["cus_1"], "subscriptions": [{"id": "sub_1", "customer": "cus_1", "status": "active", "created": 1767225600, "price_ids": ["price_pro"]}]}}
EOF
cat >"$TMP/paygate.toml" <<EOF
[server]
listen = "127.0.0.1:$PROXY_PORT"
workers = 1
[upstream]
url = "http://127.0.0.1:$UP_PORT"
[jwt]
algorithms = ["HS256"]
secret = "$SECRET"
[store]
seed_file = "users.json"
[log]
level = "warn"
[[routes]]
prefix = "/api"
policy = "subscription"
EOF
TOKEN=$("$PAYGATE_BIN" token --config "$TMP/paygate.toml" --user u1 --ttl 1h)

OUT=$TMP/callgrind.out
if [ "${NGINX_PROXY:-0}" = 1 ]; then
  what="nginx reverse proxy"
  nginx_conf "$TMP/ngx" off "upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server { listen 127.0.0.1:$PROXY_PORT; location / { proxy_pass http://app;
      proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" >"$TMP/ngx/nginx.conf"
  valgrind --tool=callgrind --callgrind-out-file="$OUT" "$NGINX" -p "$TMP/ngx" -c "$TMP/ngx/nginx.conf" 2>"$TMP/valgrind.log" &
else
  what="paygate $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo), HS256 subscription route, cached user"
  valgrind --tool=callgrind --callgrind-out-file="$OUT" "$PAYGATE_BIN" serve --config "$TMP/paygate.toml" >/dev/null 2>"$TMP/valgrind.log" &
fi
TARGET_PID=$!
PIDS+=("$TARGET_PID")
wait_http "http://127.0.0.1:$PROXY_PORT/api/x" 60
URL="http://127.0.0.1:$PROXY_PORT/api/data"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL")
[ "$code" = 200 ] || die "expected 200 through the proxy, got $code"

wrk -t1 -c4 -d3s -H "Authorization: Bearer $TOKEN" "$URL" >/dev/null
callgrind_control -z "$TARGET_PID" >/dev/null 2>&1
requests=$(wrk -t1 -c4 -d"$DURATION" -H "Authorization: Bearer $TOKEN" "$URL" | awk '/requests in/ {print $1}')
callgrind_control -d "$TARGET_PID" >/dev/null 2>&1
for i in $(seq 50); do ls "$OUT".* >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.5
total=$(callgrind_annotate "$(ls "$OUT".* | head -n 1)" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' | tail -n 1)
[ -n "$total" ] && [ "${requests:-0}" -gt 0 ] || die "no counts (see $TMP/valgrind.log)"
echo "$what: $requests requests, $total instructions, $((total / requests)) instructions per request"
