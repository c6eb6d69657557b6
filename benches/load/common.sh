# Shared by benches/load.sh and benches/callgrind.sh (sourced, not run): tools,
# the paygate binary, a temp dir whose processes are stopped on exit, free ports.
#
# The sourcing script sets SCRIPT (its name, for messages) and REPO first.

say() { printf '%s\n' "$*" >&2; }
die() { say "$SCRIPT: $*"; exit 1; }

# ensure_tools TOOL...: installs the missing ones from Debian (apt-get). nginx is
# found in /usr/sbin too. A package install may start a system service (nginx on
# :80, redis on :6379): it is stopped, the benchmarks run their own. Sets NGINX.
ensure_tools() {
  local missing=() tool
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  for tool in "$@"; do
    case "$tool" in
      nginx) [ -x "$NGINX" ] || missing+=(nginx) ;;
      *) command -v "$tool" >/dev/null || missing+=("$tool") ;;
    esac
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing ${missing[*]} (apt-get)"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  stop_service() { # NAME PIDFILE: a service this install started
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
      $sudo systemctl stop "$1" 2>/dev/null || true
    fi
    if [ -s "$2" ]; then $sudo kill "$(cat "$2")" 2>/dev/null || true; fi
  }
  case " ${missing[*]} " in *" nginx "*) stop_service nginx /run/nginx.pid ;; esac
  case " ${missing[*]} " in *" redis-server "*) stop_service redis-server /run/redis/redis-server.pid ;; esac
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# ensure_paygate: PAYGATE_BIN, else a fresh `cargo build --release`.
ensure_paygate() {
  if [ -z "${PAYGATE_BIN:-}" ]; then
    say "building paygate (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    PAYGATE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/paygate
  fi
  [ -x "$PAYGATE_BIN" ] || die "no paygate binary at $PAYGATE_BIN"
}

# make_tmp NAME: sets TMP; every pid added to PIDS is stopped on exit and TMP
# removed (kept with KEEP_TMP=1).
PIDS=()
make_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/paygate-$1.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP_TMP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL [SECONDS]: until it answers at all (any status); 15 s by default.
wait_http() {
  local i tries=$(( ${2:-15} * 10 ))
  for i in $(seq "$tries"); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  die "$1 did not come up"
}

# nginx_conf DIR MASTER HTTP_BODY: an nginx.conf with one worker (MASTER: "on", or
# "off" to run it under valgrind), logs and temp files under DIR, no access log,
# unlimited keep-alive; HTTP_BODY goes inside `http { }`.
nginx_conf() {
  cat <<EOF
worker_processes 1;
master_process $2;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body; proxy_temp_path $1/proxy; fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
$3
}
EOF
}
