from django.template import Context, Template
from django.test import RequestFactory

from django_canal.middleware import RealtimeTicketMiddleware

from .base import RedisTestCase, sha256_key


class TemplateHelperTests(RedisTestCase):
    def assert_page_has_live_ticket(self, response, ticket):
        self.assertEqual(response.status_code, 200)
        self.assertRegex(ticket, r"^[A-Za-z0-9_-]{43}$")
        self.assertContains(response, 'data-ticket="%s"' % ticket)
        self.assertEqual(self.ticket_keys(), [sha256_key(ticket)])

    def test_middleware_class_based_view(self):
        response = self.logged_in_client().get("/chat/")
        self.assert_page_has_live_ticket(response, response.context_data["realtime_ticket"])

    def test_middleware_function_view(self):
        response = self.logged_in_client().get("/chat-fn/")
        self.assert_page_has_live_ticket(response, response.context_data["realtime_ticket"])

    def test_middleware_anonymous_gets_none(self):
        response = self.anonymous_client().get("/chat/")
        self.assertEqual(response.status_code, 200)
        self.assertIsNone(response.context_data["realtime_ticket"])
        self.assertContains(response, "no ticket")
        self.assertEqual(self.ticket_keys(), [])

    def test_template_tag(self):
        response = self.logged_in_client().get("/tag/")
        self.assertEqual(response.status_code, 200)
        ticket = response.content.decode().split('data-ticket="', 1)[1].split('"', 1)[0]
        self.assert_page_has_live_ticket(response, ticket)

    def test_template_tag_anonymous_gets_none(self):
        response = self.anonymous_client().get("/tag/")
        self.assertContains(response, 'data-ticket="">no ticket')
        self.assertEqual(self.ticket_keys(), [])

    def test_template_tag_without_request_gets_none(self):
        html = Template("{% load realtime %}{% realtime_ticket as t %}[{{ t }}]").render(Context())
        self.assertEqual(html, "[None]")
        self.assertEqual(self.ticket_keys(), [])

    def test_middleware_keeps_existing_context(self):
        from django.template.response import TemplateResponse

        request = RequestFactory().get("/")
        request.user = self.user
        response = TemplateResponse(request, "chat.html", {"room": "lobby"})
        middleware = RealtimeTicketMiddleware(lambda r: response)
        response = middleware.process_template_response(request, response)
        self.assertEqual(response.context_data["room"], "lobby")
        self.assertEqual(
            self.ticket_keys(), [sha256_key(response.context_data["realtime_ticket"])]
        )
