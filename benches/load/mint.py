#!/usr/bin/env python3
"""Pre-computes what the load benchmark sends, so the load generator only replays it.

  mint.py hs SECRET PREFIX COUNT OUT [SHARDS [VARIANTS]]
      HS256 JWTs for users PREFIX0..PREFIX{COUNT-1} ({"sub": user, "exp": now+2h}),
      one per line. With SHARDS > 1, line i goes to OUT.{i % SHARDS} (one file per
      wrk thread), otherwise to OUT. VARIANTS > 1 writes VARIANTS passes over the
      users, pass v with exp + v: as many distinct tokens per user.
  mint.py rs KEY_PEM USER
      One RS256 JWT for USER, signed with `openssl dgst -sha256 -sign KEY_PEM`.
  mint.py webhooks WHSEC PREFIX COUNT OUT SHARDS
      Signed `customer.subscription.updated` (status active) events linking customer
      cus_load_<n> to user PREFIX<n>, one `<Stripe-Signature>\\t<body>` line each,
      sharded like `hs`. Each subscription has one item (price_load_pro).
  mint.py records TEMPLATE_FILE PREFIX FROM TO KEY_PREFIX
      Redis protocol (for `redis-cli --pipe`) that SETs the user record of users
      PREFIX<FROM>..PREFIX<TO-1> to TEMPLATE_FILE (the stored record of PREFIX0,
      as webhooks wrote it) with its ids renamed: entitles many users in seconds.

Python 3 standard library (and the openssl CLI for `rs`) only.
"""
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def open_shards(out: str, shards: int):
    if shards <= 1:
        return [open(out, "w", buffering=1 << 20)]
    return [open(f"{out}.{k}", "w", buffering=1 << 20) for k in range(shards)]


def hs(secret: str, prefix: str, count: int, out: str, shards: int = 1, variants: int = 1) -> None:
    key = secret.encode()
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    exp = int(time.time()) + 7200
    files = open_shards(out, shards)
    base = hmac.new(key, digestmod=hashlib.sha256)
    line = 0
    for variant in range(variants):
        for i in range(count):
            body = b64url(b'{"sub":"%s%d","exp":%d}' % (prefix.encode(), i, exp + variant))
            signing_input = f"{head}.{body}"
            mac = base.copy()
            mac.update(signing_input.encode())
            files[line % len(files)].write(f"{signing_input}.{b64url(mac.digest())}\n")
            line += 1
    for f in files:
        f.close()


def rs(key_pem: str, user: str) -> None:
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps({"sub": user, "exp": int(time.time()) + 7200}, separators=(",", ":")).encode())
    signing_input = f"{head}.{body}"
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", key_pem],
        input=signing_input.encode(), capture_output=True, check=True,
    ).stdout
    print(f"{signing_input}.{b64url(signature)}")


def webhooks(whsec: str, prefix: str, count: int, out: str, shards: int) -> None:
    key = whsec.encode()
    now = int(time.time())
    files = open_shards(out, shards)
    for i in range(count):
        event = {
            "id": f"evt_load_{prefix}{i}", "object": "event",
            "type": "customer.subscription.updated", "created": now, "livemode": False,
            "data": {"object": {
                "id": f"sub_load_{prefix}{i}", "object": "subscription",
                "customer": f"cus_load_{prefix}{i}", "status": "active", "created": now,
                "metadata": {"user_id": f"{prefix}{i}"},
                "items": {"object": "list", "data": [{
                    "id": f"si_load_{prefix}{i}", "object": "subscription_item",
                    "price": {"id": "price_load_pro", "object": "price", "product": "prod_load"},
                }]},
            }},
        }
        body = json.dumps(event, separators=(",", ":"))
        mac = hmac.new(key, f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
        files[i % len(files)].write(f"t={now},v1={mac}\t{body}\n")
    for f in files:
        f.close()


def records(template_file: str, prefix: str, start: int, end: int, key_prefix: str) -> None:
    template = open(template_file).read().strip()
    marker = f'load_{prefix}0"'
    if marker not in template:
        sys.exit(f"records: {template_file} does not name {marker}")
    out = sys.stdout.buffer
    for i in range(start, end):
        key = f"{key_prefix}{{u:{prefix}{i}}}".encode()
        value = template.replace(marker, f'load_{prefix}{i}"').encode()
        out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "hs" and len(argv) in (6, 7, 8):
        hs(argv[2], argv[3], int(argv[4]), argv[5], *(int(a) for a in argv[6:]))
    elif cmd == "rs" and len(argv) == 4:
        rs(argv[2], argv[3])
    elif cmd == "webhooks" and len(argv) == 7:
        webhooks(argv[2], argv[3], int(argv[4]), argv[5], int(argv[6]))
    elif cmd == "records" and len(argv) == 7:
        records(argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
