#!/usr/bin/env bash
# Load benchmark: paygate against nginx and against the bare upstream, plus memory.
#
# Starts, on 127.0.0.1 only and on free ports: redis-server, a fast upstream (nginx,
# 1 worker, answering a small JSON body), nginx as a plain reverse proxy to it
# (1 worker, upstream keepalive), and paygate (`server.workers = 1`, Redis store,
# users entitled by signed Stripe webhooks). Drives every target with the same wrk command, interleaving the
# targets round by round (A B C ... A B C ...) so machine drift cancels, and reports
# the median req/s, p50 and p99 per target and the paygate/nginx and paygate/direct
# ratios. Then measures paygate's RSS: idle, during a 1 GiB streamed upload, and
# after MEM_USERS distinct users were cached.
#
# HTTP/2 row: h2load (Debian package nghttp2-client, installed if missing) drives
# paygate with [server.tls] (a second instance) and nginx with TLS and HTTP/2
# (another server block of the same nginx proxy), both with one self-signed
# openssl certificate, in the same interleaved rounds; the report gives req/s,
# mean latency and the paygate/nginx ratio.
#
# Logs-on row: nginx-logs (another server block of the same nginx proxy, with a
# JSON access_log to a file) against pg-logs (paygate, public route, `log.level =
# "info"`, `log.format = "json"`, stderr to a file): one JSON line per request on
# both sides, to the same kind of destination. Both files are emptied after each
# run so the disk does not fill.
#
#   bash benches/load.sh            # full run: 3 rounds x 10 s per target (~7 min on 2 cores)
#   QUICK=1 bash benches/load.sh    # smoke run: 1 round x 3 s, 100k users for memory
#
# Environment (defaults in brackets; QUICK=1 changes the marked ones):
#   ROUNDS [3, quick 1]  DURATION [10s, quick 3s]  WARMUP [2s, quick 1s]
#   CONNECTIONS [32]  THREADS [2]  (wrk -c / -t, identical for every target; h2load too)
#   H2_STREAMS [4]  concurrent streams per HTTP/2 connection (h2load -m)
#   COLD_USERS [100000]  users of the cold-path target (cache holds 10000, ttl 1s)
#   COLD_TOKENS_PER_USER [3]  distinct tokens per cold user, so that the rotation
#       (300k tokens) also outruns paygate's verified-token cache (100k, 60 s)
#   MEM_USERS [1000000, quick 100000]  distinct users cached for the memory figure
#   MEM_TIMEOUT [300s]  upper bound of the MEM_USERS replay (it normally ends at end of file)
#   UPLOAD [1G]  size streamed through paygate for the upload figure (head -c syntax)
#   PAYGATE_BIN  use this binary instead of running `cargo build --release`
#   KEEP_TMP [0]  1: keep the temp dir (configs, logs, tokens) for debugging
#   OUT [target/load]  where results.txt, report.txt and the raw wrk outputs go
#
# Everything it starts is stopped by a trap on exit and its temp dir is removed.
# Helpers: benches/load/mint.py (tokens, signed webhooks), benches/load/*.lua (wrk).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
LOAD=$HERE/load

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-1}; DURATION=${DURATION:-3s}; WARMUP=${WARMUP:-1s}; MEM_USERS=${MEM_USERS:-100000}
else
  ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10s}; WARMUP=${WARMUP:-2s}; MEM_USERS=${MEM_USERS:-1000000}
fi
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
H2_STREAMS=${H2_STREAMS:-4}
COLD_USERS=${COLD_USERS:-100000}
COLD_CACHE=10000
COLD_TOKENS_PER_USER=${COLD_TOKENS_PER_USER:-3}
UPLOAD=${UPLOAD:-1G}
OUT=${OUT:-$REPO/target/load}
MEM_TIMEOUT=${MEM_TIMEOUT:-300s}

LOADAVG_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
JWT_SECRET="load-bench-jwt-secret-0123456789abcdef"
WHSEC="whsec_load_bench_secret"

SCRIPT=load.sh
# shellcheck source=load/common.sh
. "$LOAD/common.sh"
ensure_tools nginx wrk redis-server curl openssl python3
# h2load is in Debian's nghttp2-client package (ensure_tools installs packages
# named like their tool).
if ! command -v h2load >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing nghttp2-client (apt-get) for h2load"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null
fi
command -v h2load >/dev/null || die "h2load is missing (Debian package nghttp2-client)"
ensure_paygate
make_tmp load

# A copy, so a concurrent rebuild cannot swap the binary in the middle of the run.
cp "$PAYGATE_BIN" "$TMP/paygate"
PAYGATE=$TMP/paygate

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
# One pass over the per-thread files PREFIX.<k> (load/stream.lua), then SIGINT to wrk,
# which ends the run and prints the stats. Sets REPLAY_COMPLETE=1 if every thread
# reached its end of file before TIMEOUT.
replay() { # URL PREFIX MODE CONNECTIONS TIMEOUT OUTFILE
  rm -f "$2".done.*
  wrk -t"$THREADS" -c"$4" -d"$5" -s "$LOAD/stream.lua" "$1" -- "$2" "$3" >"$6" 2>&1 &
  local pid=$! k finished
  PIDS+=("$pid")
  REPLAY_COMPLETE=0
  while kill -0 "$pid" 2>/dev/null; do
    finished=0
    for k in $(seq 0 $((THREADS - 1))); do [ -e "$2.done.$k" ] && finished=$((finished + 1)); done
    if [ "$finished" -eq "$THREADS" ]; then
      REPLAY_COMPLETE=1
      sleep 1 # the last real requests are answered; only repeats are in flight now
      kill -INT "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  wait "$pid" || true
}

# --- redis ---------------------------------------------------------------------------
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$TMP" --logfile "$TMP/redis.log" &
PIDS+=($!)
for i in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || die "redis did not start"

# --- upstream and nginx proxy ------------------------------------------------------------
UP_PORT=$(free_port)
NGX_PORT=$(free_port)
NGX_H2_PORT=$(free_port)
NGX_LOG_PORT=$(free_port)
# One self-signed certificate for both TLS proxies (h2load does not verify it).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$TMP/tls.key" -out "$TMP/tls.crt" 2>/dev/null || die "openssl could not make a certificate"
# `http2 on;` exists from nginx 1.25.1; older ones take `http2` on the listen line.
ngx_version=$("$NGINX" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
if printf '%s\n%s\n' 1.25.1 "$ngx_version" | sort -V -C; then
  NGX_H2_LISTEN="listen 127.0.0.1:$NGX_H2_PORT ssl; http2 on;"
else
  NGX_H2_LISTEN="listen 127.0.0.1:$NGX_H2_PORT ssl http2;"
fi
mkdir -p "$TMP/up" "$TMP/ngx"
nginx_conf "$TMP/up" on "$(cat <<EOF
  log_format upload '\$status \$request_time';
  server {
    listen 127.0.0.1:$UP_PORT;
    client_max_body_size 0;
    default_type application/json;
    # Logged when nginx has read (and discarded) the whole body: the time shows that
    # the upload really reached the upstream.
    location /public/upload { access_log $TMP/up/upload.log upload; return 200 '{"ok":true}\n'; }
    location / { return 200 '{"ok":true,"service":"upstream","items":[1,2,3]}\n'; }
  }
EOF
)" >"$TMP/up/nginx.conf"
nginx_conf "$TMP/ngx" on "$(cat <<EOF
  upstream app {
    server 127.0.0.1:$UP_PORT;
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  # The logs-on row: a JSON line per request, as paygate's access line.
  log_format json escape=json '{"timestamp":"\$time_iso8601","level":"INFO","target":"nginx::access",'
    '"message":"request","method":"\$request_method","path":"\$uri","http_status":\$status,'
    '"request_time":\$request_time,"request_id":"\$request_id","peer":"\$remote_addr"}';
  server {
    listen 127.0.0.1:$NGX_LOG_PORT;
    access_log $TMP/ngx/access.json json;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    $NGX_H2_LISTEN
    ssl_certificate $TMP/tls.crt;
    ssl_certificate_key $TMP/tls.key;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOF
)" >"$TMP/ngx/nginx.conf"
"$NGINX" -p "$TMP/up" -c "$TMP/up/nginx.conf" -e "$TMP/up/error.log" &
PIDS+=($!)
"$NGINX" -p "$TMP/ngx" -c "$TMP/ngx/nginx.conf" -e "$TMP/ngx/error.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"
wait_http "http://127.0.0.1:$NGX_PORT/"

# --- paygate instances -------------------------------------------------------------------
openssl genrsa -out "$TMP/rs.key.pem" 2048 2>/dev/null
openssl rsa -in "$TMP/rs.key.pem" -pubout -out "$TMP/rs.pub.pem" 2>/dev/null

paygate_config() { # NAME CACHE_TTL CACHE_CAPACITY
  cat >"$TMP/$1.toml" <<EOF
[server]
listen = "127.0.0.1:0"
max_body = "2GiB"
# One worker thread, like nginx's one worker process: both proxies get one core's
# worth of threads while wrk and the upstream use the rest.
workers = 1

[upstream]
url = "http://127.0.0.1:$UP_PORT"

[jwt]
algorithms = ["HS256", "RS256"]
secret = "$JWT_SECRET"
public_key_file = "rs.pub.pem"

[store]
redis_url = "redis://127.0.0.1:$REDIS_PORT/0"
cache_ttl = "$2"
cache_capacity = $3

[stripe]
webhook_secret = "$WHSEC"

[log]
level = "warn"

[[routes]]
prefix = "/public"
policy = "public"

[[routes]]
prefix = "/api"
policy = "subscription"
EOF
}
start_paygate() { # NAME: sets PG_PID and PG_URL
  # Appending, so the logs row can empty the file while paygate writes to it.
  "$PAYGATE" serve --config "$TMP/$1.toml" >"$TMP/$1.out" 2>>"$TMP/$1.err" &
  PG_PID=$!
  PIDS+=("$PG_PID")
  local i line=""
  for i in $(seq 300); do
    line=$(head -n 1 "$TMP/$1.out" 2>/dev/null || true)
    case "$line" in "paygate listening on "*) break ;; esac
    kill -0 "$PG_PID" 2>/dev/null || { cat "$TMP/$1.err" >&2; die "paygate ($1) exited"; }
    sleep 0.1
  done
  case "$line" in "paygate listening on "*) ;; *) die "paygate ($1) did not print its address" ;; esac
  PG_URL=${line##* }
}
paygate_config warm 60s 100000
paygate_config cold 1s "$COLD_CACHE"
# The warm config plus TLS (ALPN h2), for the HTTP/2 row.
paygate_config h2 60s 100000
cat >>"$TMP/h2.toml" <<EOF

[server.tls]
cert_file = "$TMP/tls.crt"
key_file = "$TMP/tls.key"
EOF
# The warm config with the JSON access log on, for the logs-on row.
paygate_config logs 60s 100000
sed -i 's/^level = "warn"$/level = "info"\nformat = "json"/' "$TMP/logs.toml"
grep -q '^format = "json"$' "$TMP/logs.toml" || die "could not turn the access log on in logs.toml"
start_paygate warm; WARM_PID=$PG_PID; WARM_URL=$PG_URL
start_paygate logs; LOGS_URL=$PG_URL
start_paygate cold; COLD_PID=$PG_PID; COLD_URL=$PG_URL
start_paygate h2; H2_URL=$PG_URL
case "$H2_URL" in https://*) ;; *) die "paygate (h2) does not listen with TLS: $H2_URL" ;; esac

# --- Tokens and entitlements ------------------------------------------------------------------
say "minting tokens and webhooks"
HS_TOKEN=$("$PAYGATE" token --config "$TMP/warm.toml" --user w0 --ttl 1h)
RS_TOKEN=$(python3 "$LOAD/mint.py" rs "$TMP/rs.key.pem" w1)
python3 "$LOAD/mint.py" hs "$JWT_SECRET" u "$COLD_USERS" "$TMP/cold.tok" 1 "$COLD_TOKENS_PER_USER"
python3 "$LOAD/mint.py" hs "$JWT_SECRET" u "$MEM_USERS" "$TMP/mem.tok" "$THREADS"
python3 "$LOAD/mint.py" webhooks "$WHSEC" w 2 "$TMP/warm.wh" 1
python3 "$LOAD/mint.py" hs "$JWT_SECRET" nobody 1 "$TMP/nobody.tok"
python3 "$LOAD/mint.py" webhooks "$WHSEC" u "$COLD_USERS" "$TMP/cold.wh" "$THREADS"

# Warm users w0 (HS256) and w1 (RS256): one webhook each, each must say "applied".
while IFS=$'\t' read -r signature body; do
  answer=$(curl -sS --max-time 10 -H "Stripe-Signature: $signature" -H "Content-Type: application/json" \
    --data-binary "$body" "$WARM_URL/stripe/webhook")
  case "$answer" in *'"applied"'*) ;; *) die "webhook not applied: $answer" ;; esac
done <"$TMP/warm.wh"

# Cold users u0..u{COLD_USERS-1}: replayed by wrk (16 connections), then checked in
# Redis (every user key present) and by spot-checked decisions on the cold instance.
say "entitling $COLD_USERS users by signed webhooks"
started=$(date +%s.%N)
replay "$WARM_URL/stripe/webhook" "$TMP/cold.wh" webhook 16 300s "$TMP/webhooks.wrk"
[ "$REPLAY_COMPLETE" = 1 ] || die "the webhook replay did not finish within 300 s"
ingest_secs=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
if grep -q "Non-2xx" "$TMP/webhooks.wrk"; then cat "$TMP/webhooks.wrk" >&2; die "some webhooks were refused"; fi
entitled=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'paygate:{u:u*}' | wc -l)
[ "$entitled" -ge "$COLD_USERS" ] || die "only $entitled of $COLD_USERS users are in Redis"
expect_status() { # WANT URL [TOKEN]
  local got
  if [ -n "${3:-}" ]; then
    got=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $3" "$2")
  else
    got=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "$2")
  fi
  [ "$got" = "$1" ] || die "expected $1 from $2 (token ${3:0:120}), got $got"
}
for n in 0 1 $((COLD_USERS / 2)) $((COLD_USERS - 1)) $((RANDOM % COLD_USERS)); do
  expect_status 200 "$COLD_URL/api/check" "$(sed -n "$((n + 1))p" "$TMP/cold.tok")"
done
expect_status 402 "$COLD_URL/api/check" "$(cat "$TMP/nobody.tok")"
expect_status 200 "$WARM_URL/api/check" "$HS_TOKEN"
expect_status 200 "$WARM_URL/api/check" "$RS_TOKEN"
expect_status 401 "$WARM_URL/api/check"
expect_status 200 "$WARM_URL/public/check"
expect_status 200 "$LOGS_URL/public/check"
expect_status 200 "http://127.0.0.1:$NGX_LOG_PORT/public/check"
grep -q '"target":"paygate::access"' "$TMP/logs.err" || die "pg-logs wrote no access line"
grep -q '"http_status":200' "$TMP/ngx/access.json" || die "nginx-logs wrote no access line"
expect_status 200 "$H2_URL/api/check" "$HS_TOKEN"
expect_status 200 "https://127.0.0.1:$NGX_H2_PORT/api/check"
say "entitled $entitled users in ${ingest_secs}s; spot checks passed"

# --- Load rounds -------------------------------------------------------------------------------
TARGETS=(direct nginx pg-public pg-hs256 pg-rs256 pg-cold nginx-logs pg-logs)
describe() {
  case "$1" in
    direct) echo "upstream nginx, no proxy" ;;
    nginx) echo "nginx reverse proxy (1 worker, upstream keepalive)" ;;
    pg-public) echo "paygate (1 worker), public route, no token" ;;
    pg-hs256) echo "paygate, subscription route, HS256 token, cached user" ;;
    pg-rs256) echo "paygate, subscription route, RS256 token, cached user" ;;
    pg-cold) echo "paygate, $COLD_USERS users x $COLD_TOKENS_PER_USER tokens rotating, cache $COLD_CACHE/1s: Redis read + HS256 verify per request" ;;
    nginx-logs) echo "nginx reverse proxy as above, JSON access_log to a file" ;;
    pg-logs) echo "paygate (1 worker), public route, JSON access log (log.level info) to a file" ;;
  esac
}
run_wrk() { # TARGET DURATION OUTFILE
  local common=(-t"$THREADS" -c"$CONNECTIONS" -d"$2" --latency --timeout 5s)
  case "$1" in
    direct) wrk "${common[@]}" "http://127.0.0.1:$UP_PORT/api/data" ;;
    nginx) wrk "${common[@]}" "http://127.0.0.1:$NGX_PORT/api/data" ;;
    pg-public) wrk "${common[@]}" "$WARM_URL/public/data" ;;
    pg-hs256) wrk "${common[@]}" -H "Authorization: Bearer $HS_TOKEN" "$WARM_URL/api/data" ;;
    pg-rs256) wrk "${common[@]}" -H "Authorization: Bearer $RS_TOKEN" "$WARM_URL/api/data" ;;
    pg-cold) wrk "${common[@]}" -s "$LOAD/rotate.lua" "$COLD_URL/api/data" -- "$TMP/cold.tok" "$THREADS" ;;
    nginx-logs) wrk "${common[@]}" "http://127.0.0.1:$NGX_LOG_PORT/public/data" ;;
    pg-logs) wrk "${common[@]}" "$LOGS_URL/public/data" ;;
  esac >"$3" 2>&1
  # Both writers append: emptying the files keeps the disk free.
  case "$1" in
    nginx-logs) : >"$TMP/ngx/access.json" ;;
    pg-logs) : >"$TMP/logs.err" ;;
  esac
}
parse_wrk() { # FILE -> "rps p50_ms p99_ms non2xx socket_errors requests"
  awk '
    function ms(v,   n, u) {
      n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
      if (u == "us") return n / 1000; if (u == "s") return n * 1000
      if (u == "m") return n * 60000; if (u == "h") return n * 3600000; return n
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    / requests in / { requests = $1 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { for (i = 3; i <= NF; i++) { g = $i; gsub(/,/, "", g); if (g ~ /^[0-9]+$/) errors += g } }
    END { printf "%.0f %.3f %.3f %d %d %d\n", rps, p50, p99, non2xx, errors, requests }
  ' "$1"
}
H2_TARGETS=(nginx-h2 pg-h2)
describe_h2() {
  case "$1" in
    nginx-h2) echo "nginx, TLS + HTTP/2, reverse proxy (same worker as the nginx target)" ;;
    pg-h2) echo "paygate (1 worker), TLS + HTTP/2, subscription route, HS256 token, cached user" ;;
  esac
}
run_h2load() { # TARGET DURATION OUTFILE
  local common=(-t"$THREADS" -c"$CONNECTIONS" -m"$H2_STREAMS" -D"${2%s}")
  case "$1" in
    nginx-h2) h2load "${common[@]}" "https://127.0.0.1:$NGX_H2_PORT/api/data" ;;
    pg-h2) h2load "${common[@]}" -H "authorization: Bearer $HS_TOKEN" "$H2_URL/api/data" ;;
  esac >"$3" 2>&1
}
parse_h2load() { # FILE -> "rps mean_ms non2xx failed requests"; dies unless h2 was spoken
  grep -q '^Application protocol: h2' "$1" || { cat "$1" >&2; die "h2load did not speak h2 ($1)"; }
  awk '
    function ms(v,   n, u) {
      n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
      if (u == "us") return n / 1000; if (u == "s") return n * 1000; return n
    }
    /^finished in/ { rps = $4 }
    /^requests:/ { requests = $2; failed = $10 + $12 + $14 }
    /^status codes:/ { non2xx = $5 + $7 + $9 }
    /^time for request:/ { mean = ms($6) }
    END { printf "%.0f %.3f %d %d %d\n", rps, mean, non2xx, failed, requests }
  ' "$1"
}
redis_commands() { redis-cli -p "$REDIS_PORT" info stats | awk -F: '/^total_commands_processed:/ {print $2 + 0}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

mkdir -p "$OUT/raw"
rm -f "$OUT"/raw/*.txt
say "warm-up: $WARMUP per target"
for t in "${TARGETS[@]}"; do run_wrk "$t" "$WARMUP" "$TMP/warmup.txt"; done
for t in "${H2_TARGETS[@]}"; do run_h2load "$t" "$WARMUP" "$TMP/warmup.txt"; done
WARM_RSS_BEFORE=$(rss_kib "$WARM_PID")
for r in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    say "round $r/$ROUNDS: $t ($DURATION)"
    before=$(redis_commands)
    run_wrk "$t" "$DURATION" "$OUT/raw/$t.round$r.txt"
    after=$(redis_commands)
    read -r rps p50 p99 non2xx errs requests < <(parse_wrk "$OUT/raw/$t.round$r.txt")
    # Redis commands per request: ~0 when the cache answers, ~1 on the cold path.
    per=$(awk -v c=$((after - before)) -v n="$requests" 'BEGIN {printf "%.3f", (n > 0 ? c / n : 0)}')
    echo "$t $r $rps $p50 $p99 $non2xx $errs $requests $per" >>"$TMP/rounds"
  done
  for t in "${H2_TARGETS[@]}"; do
    say "round $r/$ROUNDS: $t ($DURATION, h2load)"
    run_h2load "$t" "$DURATION" "$OUT/raw/$t.round$r.txt"
    read -r rps mean non2xx failed requests < <(parse_h2load "$OUT/raw/$t.round$r.txt")
    echo "$t $r $rps $mean $non2xx $failed $requests" >>"$TMP/h2rounds"
  done
done
WARM_RSS_AFTER=$(rss_kib "$WARM_PID")

# --- Memory ----------------------------------------------------------------------------------
# A fresh instance: cache large enough for every user, entries kept an hour.
say "memory: idle, ${UPLOAD} upload, $MEM_USERS users"
paygate_config mem 1h $((MEM_USERS + 1000))
start_paygate mem; MEM_PID=$PG_PID; MEM_URL=$PG_URL
sleep 2
IDLE_RSS=$(rss_kib "$MEM_PID")

# Upload: streamed with chunked encoding from a pipe (curl -T - reads as it sends;
# --data-binary @- would first load the whole body into curl's memory).
(head -c "$UPLOAD" /dev/zero | curl -sS -o /dev/null --max-time 180 -X POST -T - -H "Expect:" \
  -H "Content-Type: application/octet-stream" -w '%{http_code} %{size_upload} %{time_total}\n' \
  "$MEM_URL/public/upload" >"$TMP/upload.out" 2>&1) &
UPLOAD_PID=$!
PIDS+=("$UPLOAD_PID")
UPLOAD_MAX=0
samples=0
while kill -0 "$UPLOAD_PID" 2>/dev/null; do
  now=$(rss_kib "$MEM_PID")
  [ "$now" -gt "$UPLOAD_MAX" ] && UPLOAD_MAX=$now
  samples=$((samples + 1))
  sleep 0.1
done
wait "$UPLOAD_PID" || true
read -r UPLOAD_STATUS UPLOAD_SENT UPLOAD_SECS <"$TMP/upload.out" || true
sleep 0.5
read -r UPSTREAM_STATUS UPSTREAM_SECS < <(tail -n 1 "$TMP/up/upload.log" 2>/dev/null || echo "none ?")
case "${UPLOAD_SENT:-}" in '' | *[!0-9]*) say "upload failed: $(cat "$TMP/upload.out")"; UPLOAD_SENT=0 ;; esac
UPLOAD_HWM=$(hwm_kib "$MEM_PID")
AFTER_UPLOAD_RSS=$(rss_kib "$MEM_PID")

# Distinct users: each thread replays its share of MEM_USERS tokens once. Users
# u0..u{COLD_USERS-1} were entitled by webhooks; the rest get a copy of u0's stored
# record (ids renamed) written straight into Redis, so every one of them is an
# entitled user (a forwarded 200) with a realistic record, not a shared "never seen".
if [ "$MEM_USERS" -gt "$COLD_USERS" ]; then
  redis-cli -p "$REDIS_PORT" --raw GET 'paygate:{u:u0}' >"$TMP/record.json"
  python3 "$LOAD/mint.py" records "$TMP/record.json" u "$COLD_USERS" "$MEM_USERS" paygate: |
    redis-cli -p "$REDIS_PORT" --pipe >"$TMP/records.out" 2>&1 || { cat "$TMP/records.out" >&2; die "writing user records failed"; }
fi
started=$(date +%s.%N)
replay "$MEM_URL/api/data" "$TMP/mem.tok" bearer "$CONNECTIONS" "$MEM_TIMEOUT" "$OUT/raw/mem-users.txt"
mem_secs=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
mem_requests=$(awk '/requests in/ {print $1}' "$OUT/raw/mem-users.txt")
mem_non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$OUT/raw/mem-users.txt")
mem_note="all $MEM_USERS tokens sent"
if [ "$REPLAY_COMPLETE" != 1 ]; then
  mem_note="INCOMPLETE: the replay was cut at $MEM_TIMEOUT after ${mem_requests:-0} requests"
  say "WARNING: $mem_note"
fi
sleep 3
USERS_RSS=$(rss_kib "$MEM_PID")
per_user=$(awk -v a="$USERS_RSS" -v b="$AFTER_UPLOAD_RSS" -v n="$MEM_USERS" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}')

# --- Report ------------------------------------------------------------------------------------
declare -A RPS P50 P99 BAD REDIS
for t in "${TARGETS[@]}"; do
  RPS[$t]=$(median $(awk -v t="$t" '$1 == t {print $3}' "$TMP/rounds"))
  P50[$t]=$(median $(awk -v t="$t" '$1 == t {print $4}' "$TMP/rounds"))
  P99[$t]=$(median $(awk -v t="$t" '$1 == t {print $5}' "$TMP/rounds"))
  BAD[$t]=$(awk -v t="$t" '$1 == t {s += $6 + $7} END {print s + 0}' "$TMP/rounds")
  REDIS[$t]=$(median $(awk -v t="$t" '$1 == t {print $9}' "$TMP/rounds"))
done
declare -A MEAN
for t in "${H2_TARGETS[@]}"; do
  RPS[$t]=$(median $(awk -v t="$t" '$1 == t {print $3}' "$TMP/h2rounds"))
  MEAN[$t]=$(median $(awk -v t="$t" '$1 == t {print $4}' "$TMP/h2rounds"))
  BAD[$t]=$(awk -v t="$t" '$1 == t {s += $5 + $6} END {print s + 0}' "$TMP/h2rounds")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
revision=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || revision="$revision+dirty"

{
  echo "paygate load benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), paygate $revision)"
  echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -sr); load average at start $LOADAVG_AT_START"
  echo "tools: $("$NGINX" -v 2>&1 | sed 's/.*version: //'), $(wrk --version 2>&1 | head -n 1 | awk '{print "wrk", $2}'), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
  echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved round(s), median reported; warm-up $WARMUP per target"
  echo "everything on 127.0.0.1, sharing the same cores (load generator, proxies, upstream, redis)"
  echo "logging: nginx access_log off; paygate [log] level = \"warn\" (suppresses the per-request access line);"
  echo "  except nginx-logs and pg-logs: a JSON access line per request to a file on both sides"
  echo
  printf '%-10s %10s %9s %9s %7s %6s  %s\n' target req/s p50_ms p99_ms errors redis "what"
  for t in "${TARGETS[@]}"; do
    printf '%-10s %10.0f %9.3f %9.3f %7s %6.2f  %s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${BAD[$t]}" "${REDIS[$t]}" "$(describe "$t")"
  done
  echo "(errors: non-2xx answers + socket errors, summed over the rounds; redis: Redis commands per request)"
  echo "pg-hs256 and pg-rs256 send one token: after its first request paygate's verified-token cache"
  echo "  answers, so they show a client reusing its token, not the cost of checking a signature."
  awk -v u="$COLD_USERS" -v k="$COLD_TOKENS_PER_USER" -v r="${RPS[pg-cold]}" -v c="$COLD_CACHE" 'BEGIN {
    if (r > 0) printf "pg-cold: a pass over the users takes %.1f s (entitlement cache: %d entries, 1 s), over the tokens %.1f s\n  (verified-token cache: 100000 entries, 60 s), so both caches miss.\n", u / r, c, u * k / r }'
  echo
  printf '%-10s %14s %14s %14s\n' target "rps/nginx" "rps/direct" "p99/nginx_p99"
  for t in pg-public pg-hs256 pg-rs256 pg-cold; do
    printf '%-10s %14s %14s %14s\n' "$t" "$(ratio "${RPS[$t]}" "${RPS[nginx]}")" \
      "$(ratio "${RPS[$t]}" "${RPS[direct]}")" "$(ratio "${P99[$t]}" "${P99[nginx]}")"
  done
  printf '%-10s %14s %14s %14s\n' target "rps/nginx-logs" "rps/direct" "p99/nginx-logs"
  printf '%-10s %14s %14s %14s\n' pg-logs "$(ratio "${RPS[pg-logs]}" "${RPS[nginx-logs]}")" \
    "$(ratio "${RPS[pg-logs]}" "${RPS[direct]}")" "$(ratio "${P99[pg-logs]}" "${P99[nginx-logs]}")"
  echo
  echo "HTTP/2 over TLS: h2load -t$THREADS -c$CONNECTIONS -m$H2_STREAMS -D$DURATION (same rounds; h2load reports no percentiles)"
  printf '%-10s %10s %9s %7s  %s\n' target req/s mean_ms errors "what"
  for t in "${H2_TARGETS[@]}"; do
    printf '%-10s %10.0f %9.3f %7s  %s\n' "$t" "${RPS[$t]}" "${MEAN[$t]}" "${BAD[$t]}" "$(describe_h2 "$t")"
  done
  echo "(errors: non-2xx answers + failed/errored/timed-out requests, summed over the rounds)"
  printf '%-10s %14s %14s\n' target "rps/nginx-h2" "mean/nginx-h2"
  printf '%-10s %14s %14s\n' pg-h2 "$(ratio "${RPS[pg-h2]}" "${RPS[nginx-h2]}")" "$(ratio "${MEAN[pg-h2]}" "${MEAN[nginx-h2]}")"
  echo
  echo "per round (req/s):"
  for t in "${TARGETS[@]}" "${H2_TARGETS[@]}"; do
    printf '  %-10s %s\n' "$t" "$(cat "$TMP/rounds" "$TMP/h2rounds" | awk -v t="$t" '$1 == t {printf "%s ", $3}')"
  done
  echo
  echo "memory (paygate VmRSS; a fresh instance, Redis store, cache_capacity $((MEM_USERS + 1000)), cache_ttl 1h):"
  printf '  %-30s %s\n' "idle after start" "$(mib "$IDLE_RSS") MiB"
  printf '  %-30s %s\n' "during a $UPLOAD upload" "max $(mib "$UPLOAD_MAX") MiB ($samples samples, every 100 ms; VmHWM $(mib "$UPLOAD_HWM") MiB)"
  printf '  %-30s %s\n' "" "public route, streamed: answer ${UPLOAD_STATUS:-none}, curl sent ${UPLOAD_SENT:-0} bytes (chunked) in ${UPLOAD_SECS:-?} s,"
  printf '  %-30s %s\n' "" "the upstream finished reading the body after ${UPSTREAM_SECS:-?} s (status ${UPSTREAM_STATUS:-none})"
  printf '  %-30s %s\n' "after $MEM_USERS users cached" "$(mib "$USERS_RSS") MiB (+$(mib $((USERS_RSS - AFTER_UPLOAD_RSS))) MiB, ~$per_user bytes/user)"
  printf '  %-30s %s\n' "" "$mem_note in ${mem_secs}s ($mem_requests requests incl. repeats at the end);"
  printf '  %-30s %s\n' "" "answers: $((mem_requests - ${mem_non2xx:-0})) forwarded, ${mem_non2xx:-0} not (every user is entitled: expect 0);"
  printf '  %-30s %s\n' "" "includes the verified-token cache (at most 100000 tokens, full after the first 100000 users)"
  printf '  %-30s %s\n' "load instance (warm targets)" "$(mib "$WARM_RSS_BEFORE") MiB after the warm-up, $(mib "$WARM_RSS_AFTER") MiB after the rounds"
  echo
  echo "setup: $COLD_USERS users entitled by signed webhooks in ${ingest_secs}s (wrk, 16 connections); $entitled user keys in Redis; spot checks 200/402/401 passed"
} | tee "$TMP/report.txt"
cp "$TMP/report.txt" "$OUT/report.txt"

{
  echo "# paygate load benchmark; key=value; times in ms, memory in KiB"
  echo "run date=$(date -u +%Y-%m-%dT%H:%M:%SZ) revision=$revision cores=$(nproc) loadavg_at_start=${LOADAVG_AT_START// /,} threads=$THREADS connections=$CONNECTIONS duration=$DURATION rounds=$ROUNDS"
  while read -r t r rps p50 p99 non2xx errs requests per; do
    echo "round target=$t round=$r rps=$rps p50_ms=$p50 p99_ms=$p99 non2xx=$non2xx socket_errors=$errs requests=$requests redis_cmds_per_request=$per"
  done <"$TMP/rounds"
  for t in "${TARGETS[@]}"; do
    echo "median target=$t rps=${RPS[$t]} p50_ms=${P50[$t]} p99_ms=${P99[$t]} errors=${BAD[$t]} redis_cmds_per_request=${REDIS[$t]}"
  done
  while read -r t r rps mean non2xx failed requests; do
    echo "round target=$t round=$r rps=$rps mean_ms=$mean non2xx=$non2xx failed=$failed requests=$requests"
  done <"$TMP/h2rounds"
  for t in "${H2_TARGETS[@]}"; do
    echo "median target=$t rps=${RPS[$t]} mean_ms=${MEAN[$t]} errors=${BAD[$t]}"
  done
  echo "ratio target=pg-h2 rps_vs_nginx_h2=$(ratio "${RPS[pg-h2]}" "${RPS[nginx-h2]}") mean_vs_nginx_h2=$(ratio "${MEAN[pg-h2]}" "${MEAN[nginx-h2]}")"
  for t in pg-public pg-hs256 pg-rs256 pg-cold; do
    echo "ratio target=$t rps_vs_nginx=$(ratio "${RPS[$t]}" "${RPS[nginx]}") rps_vs_direct=$(ratio "${RPS[$t]}" "${RPS[direct]}") p99_vs_nginx=$(ratio "${P99[$t]}" "${P99[nginx]}")"
  done
  echo "ratio target=pg-logs rps_vs_nginx_logs=$(ratio "${RPS[pg-logs]}" "${RPS[nginx-logs]}") p99_vs_nginx_logs=$(ratio "${P99[pg-logs]}" "${P99[nginx-logs]}")"
  echo "memory idle_rss_kib=$IDLE_RSS"
  echo "memory upload_bytes=${UPLOAD_SENT:-0} upload_status=${UPLOAD_STATUS:-none} upload_secs=${UPLOAD_SECS:-0} upload_max_rss_kib=$UPLOAD_MAX upload_hwm_kib=$UPLOAD_HWM samples=$samples upstream_status=${UPSTREAM_STATUS:-none} upstream_secs=${UPSTREAM_SECS:-0}"
  echo "memory users=$MEM_USERS users_rss_kib=$USERS_RSS before_kib=$AFTER_UPLOAD_RSS bytes_per_user=$per_user requests=$mem_requests secs=$mem_secs"
  echo "memory warm_rss_before_kib=$WARM_RSS_BEFORE warm_rss_after_kib=$WARM_RSS_AFTER"
} >"$OUT/results.txt"
say "results: $OUT/results.txt, $OUT/report.txt, raw wrk output in $OUT/raw/"
