from django.template.response import TemplateResponse
from django.utils.decorators import decorator_from_middleware, method_decorator
from django.views.generic import TemplateView

from realtime_ticket import RealtimeTicketMiddleware


class ChatView(TemplateView):
    """Per-view middleware, written exactly as the seed project's README."""

    template_name = "chat.html"

    @method_decorator(decorator_from_middleware(RealtimeTicketMiddleware))
    def dispatch(self, *args, **kwargs):
        return super().dispatch(*args, **kwargs)


@decorator_from_middleware(RealtimeTicketMiddleware)
def chat_function_view(request):
    return TemplateResponse(request, "chat.html")
