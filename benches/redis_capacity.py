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

With CLUSTER=1 it runs the same phases against a local Redis Cluster of
MASTERS masters (no replicas) that it starts itself (`redis-server
--cluster-enabled yes` per node, `redis-cli --cluster create`, then waits for
`cluster_state:ok`), with paygate on `store.redis_mode = "cluster"` seeded with
the first node. Commands, command time, CPU, reads and memory are the sums of
every node's `INFO` deltas; `MEMORY USAGE` asks the node that owns the key. It
also prints each node's share of the keys, memory and workload commands, to
show how the load spreads over the shards. The CPU figures then include the
cluster bus's gossip between nodes (idle cost, not the workload's).

  python3 benches/redis_capacity.py              # USERS=1000 RENEWALS=55
  USERS=500 RENEWALS=10 python3 benches/redis_capacity.py   # quick
  CLUSTER=1 python3 benches/redis_capacity.py    # on a 3-master cluster

Environment: USERS [1000], RENEWALS [55], PAYGATE_BIN [the newer of
target/release/paygate and target/debug/paygate; Redis figures do not depend on
the build profile],
CONCURRENCY [1] (webhooks in flight; at 1, socket reads per
operation are its round trips, higher lets the gateway's one multiplexed
connection batch several operations per read), AUDIT_MAX [50] (store.audit_max_entries),
CLUSTER [0] (1: on a local Redis Cluster, as above), MASTERS [3] (its masters).
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
CLUSTER = os.environ.get("CLUSTER", "0") not in ("", "0")
MASTERS = int(os.environ.get("MASTERS", "3"))


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
        self.nodes = [self]

    def cli(self, *args):
        out = subprocess.run(
            # -c: follow MOVED to the node that owns a key (cluster mode).
            ["redis-cli", "-c", "-p", str(self.port), *map(str, args)],
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
            "nodes": 1,
            "t": time.monotonic(),
        }

    def dbsize(self):
        return int(self.cli("DBSIZE"))

    def used_memory(self):
        return int(self.info("memory")["used_memory"])


class Cluster:
    """The nodes of a Redis Cluster measured as one: snapshots are sums."""

    def __init__(self, ports):
        self.nodes = [Redis(p) for p in ports]

    def cli(self, *args):
        # Key commands go to the first node; redis-cli -c follows the redirect.
        return self.nodes[0].cli(*args)

    def info(self, *sections):
        return self.nodes[0].info(*sections)

    def snapshot(self):
        shots = [n.snapshot() for n in self.nodes]
        cmds = {}
        for shot in shots:
            for name, (c, u) in shot["cmds"].items():
                c0, u0 = cmds.get(name, (0, 0))
                cmds[name] = (c0 + c, u0 + u)
        return {
            "cmds": cmds,
            "cpu": sum(s["cpu"] for s in shots),
            "mem": sum(s["mem"] for s in shots),
            "reads": sum(s["reads"] for s in shots),
            "nodes": len(shots),
            "t": shots[0]["t"],
            "per_node": shots,
        }

    def dbsize(self):
        return sum(n.dbsize() for n in self.nodes)

    def used_memory(self):
        return sum(n.used_memory() for n in self.nodes)


def delta(before, after):
    calls, usec, per = 0, 0, {}
    for name, (c, u) in after["cmds"].items():
        # The measurement's own commands are not the workload's.
        # (Redis 7 names subcommands `memory|usage`.)
        if name.split("|")[0] in ("info", "memory", "dbsize", "ping", "cluster"):
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
        # Less the reads of the INFO that took `after` and of the close of the
        # redis-cli connection that took `before` (on every node).
        "reads": after["reads"] - before["reads"] - 2 * after["nodes"],
        "secs": after["t"] - before["t"],
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


def wait_for(what, ok, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.05)
    die(f"timed out waiting for {what}")


def start_standalone(tmp, procs):
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
    return redis, ""


def start_cluster(tmp, procs):
    ports = []
    for _ in range(MASTERS):
        port, bus = free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{port}.conf", "--cluster-port", str(bus),
             "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports.append(port)
    cluster = Cluster(ports)
    for node in cluster.nodes:
        wait_for(f"redis-server on {node.port}", lambda n=node: n.cli("PING") == "PONG")
    created = subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
         "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True, text=True)
    if created.returncode != 0:
        die(f"redis-cli --cluster create failed: {created.stdout[-1000:]}{created.stderr[-1000:]}")
    for node in cluster.nodes:
        wait_for(f"cluster_state:ok on {node.port}",
                 lambda n=node: "cluster_state:ok" in n.cli("CLUSTER", "INFO"))
    return cluster, 'redis_mode = "cluster"\n'


def count_slots(node):
    """How many hash slots the node serves, from its CLUSTER NODES line."""
    for line in node.cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            total = 0
            for r in fields[8:]:
                if r.startswith("["):
                    continue
                lo, _, hi = r.partition("-")
                total += int(hi or lo) - int(lo) + 1
            return total
    return 0


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
        redis, mode = (start_cluster if CLUSTER else start_standalone)(tmp, procs)
        rport = redis.nodes[0].port
        # Each node's memory before paygate, to show how its data spreads.
        baseline = [n.info("memory") for n in redis.nodes]
        baseline = [{"used_memory": int(b["used_memory"])} for b in baseline]
        slots = {n.port: int(n.info("cluster").get("cluster_enabled", "0")) and count_slots(n)
                 for n in redis.nodes}
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
{mode}redis_url = "redis://127.0.0.1:{rport}/0"
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
        # Warm up (script loads, connections) on users outside the measured range;
        # on a cluster, enough users that every node has seen every script.
        warm = 32 if CLUSTER else 8
        run_all(pool, [lambda i=i: gw.webhook(checkout(USERS + i, t0), "applied") for i in range(warm)])

        rows = []
        if CLUSTER:
            # What the cluster costs doing nothing (the bus's gossip, the client's
            # topology checks), to read the phases' CPU against.
            idle = 3
            i0 = redis.snapshot()
            time.sleep(idle)
            rows.append(("idle, per second (no traffic)", idle, delta(i0, redis.snapshot())))
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

        topology = (f"a {len(redis.nodes)}-master Redis Cluster (sums over its nodes)"
                    if CLUSTER else "standalone")
        print(f"redis {redis.cli('INFO', 'server').split('redis_version:')[1].split()[0]}, {topology}, "
              f"{USERS} users, {RENEWALS} renewals each, audit_max_entries = {AUDIT_MAX}, "
              f"paygate {binary}")
        print()
        # On a cluster, also the CPU less what the idle cluster burns meanwhile.
        idle_cpu = rows[0][2]["cpu"] / rows[0][2]["secs"] if CLUSTER else 0
        net = f" {'net cpu':>9}" if CLUSTER else ""
        print(f"{'workload':42} {'n':>7} {'reads/op':>8} {'cmds/op':>8} {'usec/op':>8} {'cpu us/op':>9}{net}  commands per op")
        for name, n, d in rows:
            per = ", ".join(f"{c} {v / n:.2f}" for c, v in sorted(d["per"].items(), key=lambda kv: -kv[1]))
            net = f" {(d['cpu'] - idle_cpu * d['secs']) * 1e6 / n:9.1f}" if CLUSTER else ""
            print(f"{name:42} {n:7} {d['reads'] / n:8.2f} {d['calls'] / n:8.2f} {d['usec'] / n:8.1f} "
                  f"{d['cpu'] * 1e6 / n:9.1f}{net}  {per}")
        print()
        print("memory (used_memory deltas; MEMORY USAGE of one key)")
        print(f"  per onboarded user (checkout + subscription.created): {onboard_mem / USERS:8.0f} B")
        print(f"  per renewal event (event id + audit growth):          {(s4['mem'] - s3['mem']) / renewals:8.0f} B")
        for name, bytes_ in usage.items():
            print(f"  {name:52} {bytes_:8} B")
        if CLUSTER:
            print(f"  total after the run: {redis.used_memory() / 2**20:.2f}M, "
                  f"{redis.dbsize()} keys")
            print()
            print("per node (the spread over the shards)")
            keys = [n.dbsize() for n in redis.nodes]
            mems = [n.used_memory() for n in redis.nodes]
            base = [b["used_memory"] for b in baseline]
            work = [delta(b, a) for b, a in zip(s0["per_node"], s7["per_node"])]
            mix = [", ".join(f"{c} {v}" for c, v in sorted(w["per"].items(), key=lambda kv: -kv[1]))
                   for w in work]
            work = [w["calls"] for w in work]
            print(f"  {'node':>6} {'slots':>6} {'keys':>8} {'used_memory':>12} {'data (MB)':>10} {'commands':>9}")
            for n, k, m, b, w in zip(redis.nodes, keys, mems, base, work):
                print(f"  {n.port:6} {slots[n.port]:6} {k:8} {m / 2**20:11.2f}M {(m - b) / 2**20:10.2f} {w:9}"
                      f"   keys {k / max(sum(keys), 1):5.1%}, data {(m - b) / max(sum(mems) - sum(base), 1):5.1%}, "
                      f"commands {w / max(sum(work), 1):5.1%}")
            for n, m in zip(redis.nodes, mix):
                print(f"  {n.port:6} commands: {m}")
            print("  (data: used_memory less the node's before paygate started; commands: the "
                  "measured phases' workload commands)")
        else:
            print(f"  total after the run: {redis.info('memory')['used_memory_human']}, "
                  f"{redis.cli('DBSIZE')} keys")
        print("\n(reads/op: socket reads, INFO total_reads_processed = round trips at CONCURRENCY=1; "
              "cmds/op: INFO commandstats calls, commands run inside scripts included; usec/op: Redis's "
              "own command time; cpu us/op: the redis-server process's user+sys CPU, INFO cpu, which "
              "adds networking and is coarse" + ("; net cpu: less the idle cluster's CPU over the "
              "phase's duration (the idle row), which is mostly the cluster bus's gossip" if CLUSTER else "") + ")")
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
