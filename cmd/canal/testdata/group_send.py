"""Django's side of the e2e test: channels_redis' group_send, as a Django view or
signal would call it. Usage: group_send.py core|pubsub REDIS_URL PREFIX GROUP MESSAGE_JSON"""
import asyncio
import json
import sys

backend, url, prefix, group, message = sys.argv[1:6]
if backend == "core":
    from channels_redis.core import RedisChannelLayer as Layer
else:
    from channels_redis.pubsub import RedisPubSubChannelLayer as Layer


async def main():
    layer = Layer(hosts=[url], prefix=prefix)
    await layer.group_send(group, json.loads(message))
    if backend == "core":
        await layer.close_pools()


asyncio.run(main())
