"""Codec cross-checks for Canal's Go tests, with channels_redis' own functions.

    python3 codec.py shard    < JSON {"names": [...], "sizes": [...]}  -> JSON [[index per size] per name]
    python3 codec.py msgpack  < hex msgpack values, one per line       -> each re-packed by Python, hex
    python3 codec.py fernet   < JSON {"keys": [...], "tokens": [...], "ttl": n}
                                                                        -> JSON [hex plaintext or null]
"""

import base64
import hashlib
import json
import sys


def main():
    cmd = sys.argv[1]
    if cmd == "shard":
        from channels_redis.utils import _consistent_hash

        req = json.load(sys.stdin)
        out = [[_consistent_hash(name, n) for n in req["sizes"]] for name in req["names"]]
        json.dump(out, sys.stdout)
    elif cmd == "msgpack":
        import msgpack

        for line in sys.stdin:
            line = line.strip()
            if line:
                v = msgpack.unpackb(bytes.fromhex(line), raw=False)
                print(msgpack.packb(v, use_bin_type=True).hex())
    elif cmd == "fernet":
        from cryptography.fernet import Fernet, InvalidToken, MultiFernet

        req = json.load(sys.stdin)
        f = MultiFernet([
            Fernet(base64.urlsafe_b64encode(hashlib.sha256(k.encode("utf8")).digest()))
            for k in req["keys"]
        ])
        out = []
        for tok in req["tokens"]:
            try:
                out.append(f.decrypt(tok.encode(), req.get("ttl")).hex())
            except InvalidToken:
                out.append(None)
        json.dump(out, sys.stdout)
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
