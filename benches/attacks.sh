#!/usr/bin/env bash
# Resource attacks against a release paygate (docs/responses.md, "Limits"), with the
# gateway's VmRSS before, during and after each (see README, Security):
#   - 150 stalled 2 MiB webhook bodies;
#   - 4,000 idle connections opening and closing while a new client's request
#     latency is measured.
#
#   bash benches/attacks.sh            # ~1 minute after the build
#
# Environment: PAYGATE_BIN (else `cargo build --release`). Everything runs on
# 127.0.0.1 with free ports; every loop is bounded in count and time.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SCRIPT=attacks.sh
# shellcheck source=load/common.sh
. "$HERE/load/common.sh"
ensure_tools nginx curl python3
ensure_paygate
make_tmp attacks
# 4,000 client sockets here and as many in the gateway.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

UP_PORT=$(free_port)
PROXY_PORT=$(free_port)
mkdir -p "$TMP/up"
nginx_conf "$TMP/up" on "server { listen 127.0.0.1:$UP_PORT; default_type text/plain;
    location / { return 200 'ok\n'; } }" >"$TMP/up/nginx.conf"
"$NGINX" -p "$TMP/up" -c "$TMP/up/nginx.conf" &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"

cat >"$TMP/paygate.toml" <<EOF
[server]
listen = "127.0.0.1:$PROXY_PORT"
[upstream]
url = "http://127.0.0.1:$UP_PORT"
[jwt]
algorithms = ["HS256"]
secret = "attack-bench-secret-0123456789abcdef"
[stripe]
webhook_path = "/stripe/webhook"
webhook_secret = "whsec_attack_bench"
[log]
level = "error"
[[routes]]
prefix = "/health"
policy = "public"
EOF

run_gateway() {
  "$PAYGATE_BIN" serve --config "$TMP/paygate.toml" >"$TMP/out.log" 2>"$TMP/err.log" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  wait_http "http://127.0.0.1:$PROXY_PORT/health"
}

say "webhook bodies that stall (fresh gateway)"
run_gateway
python3 "$HERE/load/attacks.py" webhook "$PROXY_PORT" "$GW_PID" /stripe/webhook
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true

say "4,000 churning idle connections (fresh gateway)"
run_gateway
python3 "$HERE/load/attacks.py" churn "$PROXY_PORT" "$GW_PID"
