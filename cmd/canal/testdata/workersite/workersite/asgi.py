from channels.routing import ChannelNameRouter, ProtocolTypeRouter

from .consumers import JobConsumer

application = ProtocolTypeRouter({"channel": ChannelNameRouter({"jobs": JobConsumer.as_asgi()})})
