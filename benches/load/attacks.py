"""Two resource attacks, measured against a running paygate.

    python3 attacks.py webhook  GATEWAY_PORT PID WEBHOOK_PATH
    python3 attacks.py churn    GATEWAY_PORT PID

`webhook`: 150 connections each send `POST WEBHOOK_PATH` with
`Content-Length: 2097152`, a Stripe-Signature header with a fresh `t`, and
2 MiB minus 4 KiB of body, then stall. Prints the gateway's VmRSS before,
the peak during, and after the connections closed, plus what the connections
were answered.

`churn`: 4,000 idle connections open and close continuously for 20 s while a
probe opens a new connection every 20 ms and sends `GET /health`. Prints the
probe's latency percentiles (connect + response) and VmRSS before, the peak
during, and after.

Every loop is bounded in count and time and only talks to 127.0.0.1.
"""

import asyncio
import random
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Peak:
    """Samples VmRSS every 50 ms until stopped."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, 0, True

    async def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            await asyncio.sleep(0.05)


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


async def webhook(port, pid, path):
    before = rss_kib(pid)
    peak = Peak(pid)
    sampler = asyncio.create_task(peak.run())
    body_len = 2 * 1024 * 1024 - 4096
    statuses = {}
    conns = []

    async def one(i):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        except Exception:
            statuses["connect failed"] = statuses.get("connect failed", 0) + 1
            return
        conns.append(writer)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: paygate.test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {2 * 1024 * 1024}\r\n"
            f"Stripe-Signature: t={int(time.time())},v1={'0' * 64}\r\n\r\n"
        ).encode()
        writer.write(head)
        # A refusal before the body (503 OVERLOADED, 400) comes at once.
        try:
            line = await asyncio.wait_for(reader.readline(), 0.5)
            status = line.decode(errors="replace").split(" ")[1] if line else "closed"
            statuses[status] = statuses.get(status, 0) + 1
            return
        except asyncio.TimeoutError:
            pass
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < body_len:
                n = min(len(chunk), body_len - sent)
                writer.write(chunk[:n])
                sent += n
                await asyncio.wait_for(writer.drain(), 15)
        except Exception:
            pass  # refused early: the gateway answered and stopped reading
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
            status = line.decode(errors="replace").split(" ")[1] if line else "closed"
        except asyncio.TimeoutError:
            status = "no answer in 30 s"
        except Exception as e:
            status = type(e).__name__
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in range(150)))
    during = peak.peak
    for w in conns:
        w.close()
    await asyncio.sleep(3)
    peak.running = False
    await sampler
    after = rss_kib(pid)
    print(f"webhook stall: RSS before {mib(before)}, peak during {mib(during)}, after {mib(after)}")
    print(f"webhook stall: answers {dict(sorted(statuses.items()))}")


async def churn(port, pid, idle=4000, seconds=20.0):
    before = rss_kib(pid)
    peak = Peak(pid)
    sampler = asyncio.create_task(peak.run())
    stop_at = time.monotonic() + seconds
    opened = [0]

    async def idler():
        while time.monotonic() < stop_at:
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
                opened[0] += 1
                await asyncio.sleep(random.uniform(0.2, 2.0))
                w.close()
            except Exception:
                await asyncio.sleep(0.1)

    # The probe runs in its own process with plain blocking sockets, so its
    # figures are the gateway's, not this event loop's lag under 4,000 tasks.
    probe = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "probe", str(port), "0", str(seconds - 1.0),
        stdout=asyncio.subprocess.PIPE,
    )
    await asyncio.gather(*(idler() for _ in range(idle)))
    probed, _ = await probe.communicate()
    during = peak.peak
    await asyncio.sleep(3)
    peak.running = False
    await sampler
    after = rss_kib(pid)
    print(f"churn: {opened[0]} idle connections opened")
    print(probed.decode().rstrip())
    print(f"churn: RSS before {mib(before)}, peak during {mib(during)}, after {mib(after)}")


def probe(port, seconds):
    """A new connection every 20 ms with `GET /health`; prints percentiles."""
    import socket

    time.sleep(1.0)  # let the idle pool fill first
    stop_at = time.monotonic() + seconds
    latencies, failures = [], 0
    while time.monotonic() < stop_at:
        start = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: paygate.test\r\nConnection: close\r\n\r\n")
                if not s.recv(64):
                    raise OSError("closed")
            latencies.append(time.monotonic() - start)
        except OSError:
            failures += 1
        time.sleep(0.02)
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else float("nan")
    print(f"churn: {len(latencies)} probes, {failures} failed; new-connection latency "
          f"p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {pct(1.0):.1f} ms")


def main():
    what, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if what == "webhook":
        asyncio.run(webhook(port, pid, sys.argv[4]))
    elif what == "churn":
        asyncio.run(churn(port, pid))
    elif what == "probe":
        probe(port, float(sys.argv[4]))
    else:
        sys.exit(f"unknown attack {what!r}")


if __name__ == "__main__":
    main()
