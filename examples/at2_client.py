#!/usr/bin/env python3
"""A minimal AT2 client for byzscale nodes, in Python.

It owns an account (an ed25519 key), signs transfers over the canonical
encoding of docs/AT2.md and submits them to any node's HTTP API. Needs the
`cryptography` package (pip install cryptography); everything else is the
standard library.

    python3 examples/at2_client.py new alice.key
    python3 examples/at2_client.py transfer --node http://127.0.0.1:7300 \\
        --from alice.key --to <64 hex digits> 25
    python3 examples/at2_client.py balance --node http://127.0.0.1:7300 alice.key

Key files are the ones `byzscale client account new` writes (TOML with
`secret` and `public`, 64 hex digits each), so both tools share accounts.
"""

import argparse
import json
import os
import re
import struct
import sys
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DOMAIN = b"byzscale-at2-transfer-v1"


def signing_bytes(sender, seq, recipient, amount, deps):
    """The canonical encoding an owner signs (docs/AT2.md).

    sender, recipient: 32-byte public keys; deps: [(32-byte key, seq)].
    """
    out = bytearray(DOMAIN)
    out += sender + struct.pack(">Q", seq) + recipient + struct.pack(">Q", amount)
    out += struct.pack(">I", len(deps))
    for key, s in deps:
        out += key + struct.pack(">Q", s)
    return bytes(out)


def public_hex(key):
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def write_key(path, key):
    if os.path.exists(path):
        sys.exit(f"error: {path} exists; refusing to overwrite a key")
    secret = key.private_bytes_raw().hex()
    with open(path, "w") as f:
        f.write("# byzscale AT2 account key: whoever holds `secret` owns the account; keep it private\n")
        f.write(f'secret = "{secret}"\npublic = "{public_hex(key)}"\n')
    os.chmod(path, 0o600)


def read_key(path):
    text = open(path).read()
    m = re.search(r'^secret\s*=\s*"([0-9a-fA-F]{64})"', text, re.M)
    if not m:
        sys.exit(f"error: {path} has no `secret` of 64 hex digits")
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(m.group(1)))


def account_of(arg):
    """A public key in hex, or a key file's public key."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", arg):
        return arg.lower()
    return public_hex(read_key(arg))


def call(node, method, path, body=None):
    """(status, JSON answer) of one request to a node's HTTP API."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(node.rstrip("/") + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=40) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def transfer(node, key, to_hex, amount):
    """Sign and submit the account's next transfer; the node's answer."""
    me = public_hex(key)
    status, acct = call(node, "GET", f"/account/{me}")
    if status != 200:
        return status, acct
    deps = [(bytes.fromhex(d["from"]), d["seq"]) for d in acct["deps"]]
    seq = acct["next_seq"]
    msg = signing_bytes(bytes.fromhex(me), seq, bytes.fromhex(to_hex), amount, deps)
    body = {
        "from": me,
        "seq": seq,
        "to": to_hex,
        "amount": amount,
        "deps": [{"from": k.hex(), "seq": s} for k, s in deps],
        "signature": key.sign(msg).hex(),
    }
    return call(node, "POST", "/transfer", body)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("new", help="create an account key file, print its public key")
    n.add_argument("keyfile")
    t = sub.add_parser("transfer", help="sign and submit a transfer")
    t.add_argument("--node", required=True, help="a node's HTTP API, e.g. http://127.0.0.1:7300")
    t.add_argument("--from", dest="frm", required=True, help="the sender's key file")
    t.add_argument("--to", required=True, help="the recipient: 64 hex digits or a key file")
    t.add_argument("amount", type=int)
    b = sub.add_parser("balance", help="an account's balance at a node")
    b.add_argument("--node", required=True)
    b.add_argument("account", help="64 hex digits or a key file")
    a = p.parse_args()
    if a.cmd == "new":
        key = Ed25519PrivateKey.generate()
        write_key(a.keyfile, key)
        print(public_hex(key))
        return
    if a.cmd == "transfer":
        status, v = transfer(a.node, read_key(a.frm), account_of(a.to), a.amount)
        if status != 200:
            sys.exit(f"error: {status}: {v.get('error', v)}")
        print(f"transferred {v['amount']} from {v['from']} to {v['to']}: {v['id']}")
        return
    status, v = call(a.node, "GET", f"/balance/{account_of(a.account)}")
    if status != 200:
        sys.exit(f"error: {status}: {v.get('error', v)}")
    print(f"{v['account']}: {v['balance']}")


if __name__ == "__main__":
    main()
