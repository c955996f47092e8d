package middleware_test

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/canaltest/browser"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/server"
)

// tokenPage opens one socket per case, one after the other, the way the package docs
// tell a browser developer to, and shows what the page could see of each: the first
// message, or the close event's code and reason.
const tokenPage = `<!doctype html><meta charset="utf-8"><title>token</title><ul id="log"></ul>
<script>
const token = "42:1tPZ3b:Xq0Kj0"; // a django.core.signing token: ':' is no subprotocol character
const b64 = btoa(token).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const url = "ws://" + location.host + "/ws/";
const cases = [
  ["subprotocol", () => new WebSocket(url, ["canal.token", "canal.token-b64." + b64]), null],
  ["bare", () => new WebSocket(url), token],
  ["json", () => new WebSocket(url, ["canal.token"]), JSON.stringify({token: token})],
  ["refused", () => new WebSocket(url + "?token=forged"), null],
  ["bad-first", () => new WebSocket(url), "forged"],
];
function show(id, text) {
  const li = document.createElement("li");
  li.id = id;
  li.textContent = text;
  document.getElementById("log").append(li);
}
(async () => {
  for (const [id, open, first] of cases) {
    await new Promise((done) => {
      const ws = open();
      let got = "";
      ws.onopen = () => { if (first) ws.send(first); };
      ws.onmessage = (e) => { got = e.data; ws.close(1000); };
      ws.onclose = (e) => { show(id, got ? "message " + got + " (" + ws.protocol + ")" : "close " + e.code + " [" + e.reason + "]"); done(); };
    });
  }
})();
</script>`

// TestTokenInBrowser: Chromium presents a token each way the docs describe (the
// base64url subprotocol computed with the documented JavaScript, the bare first message,
// the JSON one) and sees what errors.go says it sees of a refusal: 1006 and no reason
// for a refused upgrade, 4401 and the reason after a first-message token.
func TestTokenInBrowser(t *testing.T) {
	token, err := middleware.Token(testLookup, middleware.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	greet := canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
		if err := c.Accept(canal.AcceptOptions{}); err != nil {
			return nil, err
		}
		return &nopSession{}, c.Send(canal.Text("hello " + c.Scope().User.Username))
	})
	s := canaltest.NewServer(t, token(greet), server.Options{HTTP: func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		return c.SendString(tokenPage)
	}})
	tab := browser.New(t)
	console := browser.WatchConsole(tab)
	if err := chromedp.Do(tab,
		chromedp.Navigate(s.HTTPURL("/page")),
		chromedp.WaitVisible(chromedp.ID("bad-first")),
	); err != nil {
		t.Fatalf("the page did not finish: %v\nconsole:\n%s", err, console)
	}
	want := map[string]string{
		"subprotocol": "message hello signed (canal.token)",
		"bare":        "message hello signed ()",
		"json":        "message hello signed (canal.token)",
		"refused":     "close 1006 []",
		"bad-first":   "close 4401 [invalid token]",
	}
	for id, w := range want {
		got, err := chromedp.Run(tab, chromedp.TextContent(chromedp.ID(id)))
		if err != nil {
			t.Fatal(err)
		}
		if got != w {
			t.Errorf("%s: the page saw %q, want %q", id, got, w)
		}
	}
	browser.Screenshot(t, tab, "token-browser.png")
}
