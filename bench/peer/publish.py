"""Publishes the benchmark's group messages, as Django code would.

    publish.py --backend core|pubsub|publish --redis URL --count N [--rate R]
               [--seq-base B] [--text-bytes K] [--group bench]

core, pubsub  channel_layer.group_send(group, {"type": "bench.message", "seq", "ts", "text"})
              through Django's configured layer (benchpeer.settings, BENCH_LAYER), the way a
              view or a Celery task reaches Channels consumers, Daphne's or Canal's.
publish       PUBLISH bench:<group> with the same fields as JSON, for the baseline server.

"ts" is the send time in Unix nanoseconds, taken just before each send; the load
generator measures latency against it (same machine, same clock). --rate 0 sends
back to back (burst); --rate R sends on a fixed schedule of R messages per second.

With --wait-go it first connects, prints {"ready": true} and waits for a line on
stdin, so that the load generator starts its clocks after Python's start-up.
Then it prints one JSON line: {"sent", "first_ts", "last_ts", "cpu_s", "wall_s"}; cpu_s and
wall_s cover the sending only, not Python's start-up.
"""
import argparse
import asyncio
import json
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--backend", choices=["core", "pubsub", "publish"], required=True)
    p.add_argument("--redis", required=True)
    p.add_argument("--group", default="bench")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--seq-base", type=int, default=0)
    p.add_argument("--text-bytes", type=int, default=64)
    p.add_argument(
        "--wait-go",
        action="store_true",
        help='print {"ready": true} once connected, then wait for a line on stdin',
    )
    return p.parse_args()


def ready(args):
    if args.wait_go:
        print(json.dumps({"ready": True}), flush=True)
        if not sys.stdin.readline():
            sys.exit("publish.py: stdin closed before go")


async def run(args, send):
    text = "x" * args.text_bytes
    start_wall = time.monotonic()
    start_cpu = time.process_time()
    first = last = 0
    for i in range(args.count):
        if args.rate > 0:
            delay = start_wall + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        ts = time.time_ns()
        if i == 0:
            first = ts
        last = ts
        await send(args.seq_base + i, ts, text)
    return {
        "sent": args.count,
        "first_ts": first,
        "last_ts": last,
        "cpu_s": time.process_time() - start_cpu,
        "wall_s": time.monotonic() - start_wall,
    }


async def main_layer(args):
    os.environ["BENCH_REDIS_URL"] = args.redis
    os.environ["BENCH_LAYER"] = args.backend
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchpeer.settings")
    import django

    django.setup()
    from channels.layers import get_channel_layer

    layer = get_channel_layer()

    async def send(seq, ts, text):
        await layer.group_send(
            args.group, {"type": "bench.message", "seq": seq, "ts": ts, "text": text}
        )

    # Connect before the clock starts, as a running Django process would be.
    await layer.group_send(args.group + "-warmup", {"type": "bench.warmup"})
    ready(args)
    out = await run(args, send)
    if args.backend == "core":
        await layer.close_pools()
    return out


async def main_publish(args):
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(args.redis)
    await r.ping()
    ready(args)
    channel = "bench:" + args.group

    async def send(seq, ts, text):
        await r.publish(channel, json.dumps({"seq": seq, "ts": ts, "text": text}))

    out = await run(args, send)
    await r.close()
    return out


def main():
    args = parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.backend == "publish":
        out = asyncio.run(main_publish(args))
    else:
        out = asyncio.run(main_layer(args))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
