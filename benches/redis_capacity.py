#!/usr/bin/env python3
"""Redis capacity figures for paygate: memory, commands and Redis CPU per user,
per webhook and per cache miss, measured on a local redis-server.

Starts, on 127.0.0.1 and free ports: redis-server (no persistence), a tiny
upstream, and `paygate serve` on the Redis store. Then, measuring Redis
(`INFO commandstats`, `INFO cpu`, `INFO memory`, `MEMORY USAGE`) around each
phase:

  1. onboarding: USERS signed `checkout.session.completed` (new user, new
     customer), then USERS `customer.subscription.created` for them;
  2. renewals: RENEWALS rounds of `customer.subscription.updated` per user (a
     new period end each time: the record changes, the audit list grows);
  3. cache misses: one authorized request per user (first sight: a miss);
  4. duplicates: USERS redeliveries of already-applied events.

and prints a table: bytes per user and per event, commands and Redis CPU per
webhook and per miss.

  python3 benches/redis_capacity.py              # USERS=1000 RENEWALS=55
  USERS=500 RENEWALS=10 python3 benches/redis_capacity.py   # quick

Environment: USERS [1000], RENEWALS [55], PAYGATE_BIN [the newer of
target/release/paygate and target/debug/paygate; Redis figures do not depend on
the build profile],
CONCURRENCY [1] (webhooks in flight; at 1, socket reads per
operation are its round trips, higher lets the gateway's one multiplexed
connection batch several operations per read), AUDIT_MAX [50] (store.audit_max_entries).
Python 3 standard library, redis-server and redis-cli only. Everything it starts
is stopped on exit and its temp dir removed.
"""
import base64
import concurrent.futures
import copy
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "stripe")
WHSEC = "whsec_capacity_bench"
JWT_SECRET = "capacity-bench-jwt-secret-0123456789abcdef"
PREFIX = "paygate:"

USERS = int(os.environ.get("USERS", "1000"))
RENEWALS = int(os.environ.get("RENEWALS", "55"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "1"))
AUDIT_MAX = int(os.environ.get("AUDIT_MAX", "50"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def die(message):
    sys.exit(f"redis_capacity: {message}")


class Redis:
    def __init__(self, port):
        self.port = port

    def cli(self, *args):
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *map(str, args)],
            capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()

    def info(self, *sections):
        fields = {}
        for line in self.cli("INFO", *sections).splitlines():
            if ":" in line and not line.startswith("#"):
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        return fields

    def snapshot(self):
        """Commands and server-side usec per command name, CPU seconds, memory."""
        # One INFO call (one connection, one read) for everything.
        info = self.info("commandstats", "cpu", "memory", "stats")
        stats = {}
        for key, value in info.items():
            if key.startswith("cmdstat_"):
                parts = dict(p.split("=") for p in value.split(","))
                stats[key[len("cmdstat_"):]] = (int(parts["calls"]), int(parts["usec"]))
        return {
            "cmds": stats,
            "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            "mem": int(info["used_memory"]),
            "reads": int(info["total_reads_processed"]),
        }


def delta(before, after):
    calls, usec, per = 0, 0, {}
    for name, (c, u) in after["cmds"].items():
        # The measurement's own commands are not the workload's.
        if name in ("info", "memory", "dbsize", "ping"):
            continue
        c0, u0 = before["cmds"].get(name, (0, 0))
        if c - c0:
            per[name] = c - c0
        calls += c - c0
        usec += u - u0
    return {
        "calls": calls,
        "usec": usec,
        "per": per,
        "cpu": after["cpu"] - before["cpu"],
        "mem": after["mem"] - before["mem"],
        # Less the read of the INFO that took `after`.
        "reads": after["reads"] - before["reads"] - 1,
    }


class Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(user):
    head = b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = b64url(json.dumps({"sub": user, "exp": int(time.time()) + 7200}).encode())
    mac = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


CHECKOUT = fixture("captured.event.checkout.session.completed.subscription-mode.json")
SUBSCRIPTION = fixture("sync-engine.event.subscription_created.json")


def envelope(event, event_id, created):
    event["id"] = event_id
    event["created"] = created
    event["livemode"] = False
    event["data"]["object"]["livemode"] = False
    return event


def checkout(i, created):
    event = envelope(copy.deepcopy(CHECKOUT), f"evt_cap_co_{i}", created)
    s = event["data"]["object"]
    s["id"] = f"cs_cap_{i}"
    s["client_reference_id"] = f"user_{i}"
    s["customer"] = f"cus_cap_{i}"
    s["subscription"] = f"sub_cap_{i}"
    s["metadata"] = {}
    s["created"] = created - 60
    return event


def subscription(i, action, event_id, created, period_end):
    event = envelope(copy.deepcopy(SUBSCRIPTION), event_id, created)
    event["type"] = f"customer.subscription.{action}"
    s = event["data"]["object"]
    s["id"] = f"sub_cap_{i}"
    s["customer"] = f"cus_cap_{i}"
    s["status"] = "active"
    s["metadata"] = {}
    s["current_period_end"] = period_end
    for item in s["items"]["data"]:
        item["subscription"] = f"sub_cap_{i}"
        item["current_period_end"] = period_end
    return event


class Gateway:
    def __init__(self, port):
        self.port = port
        self.local = threading.local()

    def conn(self):
        if not hasattr(self.local, "c"):
            self.local.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return self.local.c

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            try:
                c = self.conn()
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.local.c.close()
                del self.local.c
                if attempt:
                    raise

    def webhook(self, event, expect):
        body = json.dumps(event, separators=(",", ":"))
        t = int(time.time())
        mac = hmac.new(WHSEC.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
        status, answer = self.request(
            "POST", "/stripe/webhook", body,
            {"Stripe-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"},
        )
        if status != 200 or f'"{expect}"'.encode() not in answer:
            die(f"webhook {event['id']}: {status} {answer[:200]!r} (wanted {expect})")

    def get(self, user):
        status, _ = self.request("GET", "/api/data", headers={"Authorization": f"Bearer {jwt(user)}"})
        if status != 200:
            die(f"GET for {user}: {status}")


def run_all(pool, jobs):
    for future in [pool.submit(job) for job in jobs]:
        future.result()


def main():
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            die(f"{tool} is not installed")
    built = [p for p in (os.path.join(ROOT, "target", d, "paygate") for d in ("release", "debug"))
             if os.path.exists(p)]
    binary = os.environ.get("PAYGATE_BIN") or max(built, key=os.path.getmtime, default=None)
    if not binary:
        die("no paygate binary: cargo build --release, or set PAYGATE_BIN")
    tmp = tempfile.mkdtemp(prefix="paygate-capacity-")
    procs = []
    try:
        rport = free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        redis = Redis(rport)
        for _ in range(100):
            try:
                if redis.cli("PING") == "PONG":
                    break
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        config = os.path.join(tmp, "paygate.toml")
        with open(config, "w") as f:
            f.write(f"""[server]
listen = "127.0.0.1:0"

[upstream]
url = "http://127.0.0.1:{upstream.server_address[1]}"

[jwt]
algorithms = ["HS256"]
secret = "{JWT_SECRET}"

[store]
redis_url = "redis://127.0.0.1:{rport}/0"
key_prefix = "{PREFIX}"
cache_capacity = {max(USERS * 2, 1000)}
cache_ttl = "10m"
audit_max_entries = {AUDIT_MAX}

[stripe]
webhook_secret = "{WHSEC}"

[log]
level = "warn"

[[routes]]
prefix = "/api"
policy = "subscription"
""")
        pg = subprocess.Popen([binary, "serve", "--config", config], stdout=subprocess.PIPE,
                              stderr=open(os.path.join(tmp, "paygate.err"), "w"), text=True)
        procs.append(pg)
        line = pg.stdout.readline()
        if not line.startswith("paygate listening on "):
            die(f"paygate did not start: {line!r}; {open(os.path.join(tmp, 'paygate.err')).read()[-2000:]}")
        gw = Gateway(int(line.rsplit(":", 1)[1]))
        pool = concurrent.futures.ThreadPoolExecutor(CONCURRENCY)
        t0 = int(time.time()) - 3600
        # Warm up (script loads, connections) on users outside the measured range.
        run_all(pool, [lambda i=i: gw.webhook(checkout(USERS + i, t0), "applied") for i in range(8)])

        rows = []
        s0 = redis.snapshot()
        run_all(pool, [lambda i=i: gw.webhook(checkout(i, t0), "applied") for i in range(USERS)])
        s1 = redis.snapshot()
        rows.append(("checkout.session.completed (new user)", USERS, delta(s0, s1)))
        run_all(pool, [lambda i=i: gw.webhook(
            subscription(i, "created", f"evt_cap_sc_{i}", t0 + 1, t0 + 30 * 86400), "applied")
            for i in range(USERS)])
        s2 = redis.snapshot()
        rows.append(("customer.subscription.created", USERS, delta(s1, s2)))
        onboard_mem = s2["mem"] - s0["mem"]
        sample = {
            "user record": f"{PREFIX}{{u:user_0}}",
            "customer record": f"{PREFIX}{{c:cus_cap_0}}",
            "event id": f"{PREFIX}{{e:evt_cap_co_0}}",
            "audit list (after onboarding)": f"{PREFIX}{{u:user_0}}:audit",
        }
        usage = {name: int(redis.cli("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
                 for name, key in sample.items()}

        s3 = redis.snapshot()  # after MEMORY USAGE: its reads are not the workload's
        for k in range(1, RENEWALS + 1):
            run_all(pool, [lambda i=i, k=k: gw.webhook(subscription(
                i, "updated", f"evt_cap_r{k}_{i}", t0 + 1 + k, t0 + (k + 1) * 30 * 86400), "applied")
                for i in range(USERS)])
        s4 = redis.snapshot()
        renewals = USERS * RENEWALS
        rows.append(("customer.subscription.updated (renewal)", renewals, delta(s3, s4)))
        usage[f"audit list (after {RENEWALS} renewals)"] = int(redis.cli(
            "MEMORY", "USAGE", sample["audit list (after onboarding)"], "SAMPLES", "0") or 0)
        usage["event id (renewal)"] = int(redis.cli(
            "MEMORY", "USAGE", f"{PREFIX}{{e:evt_cap_r1_0}}", "SAMPLES", "0") or 0)

        s4b = redis.snapshot()
        run_all(pool, [lambda i=i: gw.get(f"user_{i}") for i in range(USERS)])
        s5 = redis.snapshot()
        rows.append(("request, cache miss", USERS, delta(s4b, s5)))
        run_all(pool, [lambda i=i: gw.get(f"user_{i}") for i in range(USERS)])
        s6 = redis.snapshot()
        rows.append(("request, cache hit", USERS, delta(s5, s6)))
        run_all(pool, [lambda i=i: gw.webhook(
            subscription(i, "created", f"evt_cap_sc_{i}", t0 + 1, t0 + 30 * 86400), "duplicate")
            for i in range(USERS)])
        s7 = redis.snapshot()
        rows.append(("redelivery (duplicate)", USERS, delta(s6, s7)))

        print(f"redis {redis.cli('INFO', 'server').split('redis_version:')[1].split()[0]}, "
              f"{USERS} users, {RENEWALS} renewals each, audit_max_entries = {AUDIT_MAX}, "
              f"paygate {binary}")
        print()
        print(f"{'workload':42} {'n':>7} {'reads/op':>8} {'cmds/op':>8} {'usec/op':>8} {'cpu us/op':>9}  commands per op")
        for name, n, d in rows:
            per = ", ".join(f"{c} {v / n:.2f}" for c, v in sorted(d["per"].items(), key=lambda kv: -kv[1]))
            print(f"{name:42} {n:7} {d['reads'] / n:8.2f} {d['calls'] / n:8.2f} {d['usec'] / n:8.1f} "
                  f"{d['cpu'] * 1e6 / n:9.1f}  {per}")
        print()
        print("memory (used_memory deltas; MEMORY USAGE of one key)")
        print(f"  per onboarded user (checkout + subscription.created): {onboard_mem / USERS:8.0f} B")
        print(f"  per renewal event (event id + audit growth):          {(s4['mem'] - s3['mem']) / renewals:8.0f} B")
        for name, bytes_ in usage.items():
            print(f"  {name:52} {bytes_:8} B")
        print(f"  total after the run: {redis.info('memory')['used_memory_human']}, "
              f"{redis.cli('DBSIZE')} keys")
        print("\n(reads/op: socket reads, INFO total_reads_processed = round trips at CONCURRENCY=1; "
              "cmds/op: INFO commandstats calls, commands run inside scripts included; usec/op: Redis's "
              "own command time; cpu us/op: the redis-server process's user+sys CPU, INFO cpu, which "
              "adds networking and is coarse)")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
