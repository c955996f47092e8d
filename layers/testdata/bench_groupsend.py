"""Time channels_redis' group_send until every member of the group has the message.

    python3 bench_groupsend.py --url redis://127.0.0.1:6379/0 --backend core|pubsub \
        --members N [--repeat R] [--budget SECONDS] [--prefix P] [--timeout SECONDS]

The Python side of layers/compare_bench_test.go (BenchmarkGroupSendCompare), doing
what the Go side does with Canal's layer, in one process and one event loop, as a
Daphne worker holding N consumers would:

  - setup: N channels from new_channel() on one layer, all added to one group
    (core: N process-local channels "specific.<process>!<id>", which share the
    process's queue key; pubsub: N local channels, each its own Pub/Sub channel);
  - then R times: N receive() calls wait, one per channel, as N consumers do; the
    clock starts, group_send sends one message, and the clock stops when all N
    receive() calls have returned it.

One warm-up round is not counted. It stops after R rounds, or after --budget
seconds once 3 rounds are done. It prints one JSON line on stdout:

    {"backend", "members", "rounds", "timings_ns": [...], "mean_ns", "median_ns",
     "min_ns", "setup_s", "versions": {...}}

and exits 1 with a message on stderr if a round takes longer than --timeout or a
member gets something else.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--backend", choices=("core", "pubsub"), required=True)
    p.add_argument("--members", type=int, required=True)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--budget", type=float, default=20.0)
    p.add_argument("--prefix", default="asgi")
    p.add_argument("--timeout", type=float, default=30.0, help="bound on one round")
    return p.parse_args()


def make_layer(args):
    if args.backend == "core":
        from channels_redis.core import RedisChannelLayer

        return RedisChannelLayer(hosts=[args.url], prefix=args.prefix)
    from channels_redis.pubsub import RedisPubSubChannelLayer

    return RedisPubSubChannelLayer(hosts=[args.url], prefix=args.prefix)


async def in_batches(coros, size=64):
    """Await coroutines size at a time (setup of 10,000 members, without opening
    10,000 connections at once)."""
    for i in range(0, len(coros), size):
        await asyncio.gather(*coros[i : i + size])


async def round_trip(layer, channels, group, message, timeout):
    """One round: N waiting receive() calls, group_send, all N returned. Returns
    the nanoseconds from group_send to the last receipt."""
    receivers = [asyncio.ensure_future(layer.receive(c)) for c in channels]
    # Let every receiver reach its wait (the receive lock or its queue): a few turns
    # of the loop. No pause beyond that: rounds follow each other at once, as the Go
    # benchmark's do (an idle pause costs both backends a CPU wake-up, +0.5-1 ms).
    for _ in range(5):
        await asyncio.sleep(0)
    start = time.perf_counter_ns()
    await layer.group_send(group, message)
    try:
        got = await asyncio.wait_for(asyncio.gather(*receivers), timeout)
    except asyncio.TimeoutError:
        missing = sum(1 for r in receivers if not r.done())
        raise SystemExit(
            "round timed out after %ss: %d of %d members got nothing" % (timeout, missing, len(channels))
        )
    elapsed = time.perf_counter_ns() - start
    for m in got:
        if m.get("type") != message["type"] or m.get("text") != message["text"]:
            raise SystemExit("a member got %r, want %r" % (m, message))
    return elapsed


async def main(args):
    import channels
    import channels_redis
    import msgpack

    layer = make_layer(args)
    group = "bench"
    message = {"type": "bench.message", "text": "hello"}

    t0 = time.perf_counter()
    channels_ = [await layer.new_channel() for _ in range(args.members)]
    await in_batches([layer.group_add(group, c) for c in channels_])
    setup = time.perf_counter() - t0

    await round_trip(layer, channels_, group, message, args.timeout)  # warm-up
    timings = []
    began = time.perf_counter()
    while len(timings) < args.repeat:
        timings.append(await round_trip(layer, channels_, group, message, args.timeout))
        if len(timings) >= 3 and time.perf_counter() - began > args.budget:
            break

    await layer.flush()
    if hasattr(layer, "close_pools"):
        await layer.close_pools()

    print(
        json.dumps(
            {
                "backend": args.backend,
                "members": args.members,
                "rounds": len(timings),
                "timings_ns": timings,
                "mean_ns": statistics.fmean(timings),
                "median_ns": statistics.median(timings),
                "min_ns": min(timings),
                "setup_s": setup,
                "versions": {
                    "python": sys.version.split()[0],
                    "channels": channels.__version__,
                    "channels_redis": channels_redis.__version__,
                    "msgpack": ".".join(map(str, msgpack.version)),
                },
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
