package server_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/canaltest/browser"
)

// ssePage opens the EventSource named by ?src= and shows what it gets.
const ssePage = `<!doctype html><meta charset="utf-8"><title>sse</title>
<p id="state">connecting</p><ul id="log"></ul><p id="closed"></p>
<script>
const es = new EventSource(new URLSearchParams(location.search).get("src"));
es.onopen = () => { document.getElementById("state").textContent = "open"; };
es.onmessage = (e) => {
  const li = document.createElement("li");
  li.textContent = JSON.parse(e.data).title;
  document.getElementById("log").append(li);
};
es.addEventListener("close", (e) => {
  es.close(); // or EventSource reconnects
  document.getElementById("closed").textContent = "closed " + JSON.parse(e.data).code;
});
es.onerror = () => { if (es.readyState === EventSource.CLOSED) document.getElementById("state").textContent = "failed"; };
</script>`

// TestEventStreamInBrowser: Chromium's EventSource reads Canal's stream from the same
// origin and, through the CORS answer, from another origin; it sees group messages
// and the close event.
func TestEventStreamInBrowser(t *testing.T) {
	news, layer := newsConsumer(t)
	o := sseOptions()
	o.Origins = []string{"127.0.0.1"} // the page's, for the cross-origin stream on localhost
	o.HTTP = func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		return c.SendString(ssePage)
	}
	s := canaltest.NewServer(t, news, o)
	_, port, _ := net.SplitHostPort(s.Addr)
	tab := browser.New(t)
	console := browser.WatchConsole(tab)

	for i, tc := range []struct{ name, src string }{
		{"same origin", "/news/"},
		{"cross origin", "http://localhost:" + port + "/news/"}, // the page is on 127.0.0.1
	} {
		title := fmt.Sprintf("item %d", i)
		if err := chromedp.Do(tab,
			chromedp.Navigate(s.HTTPURL("/page?src="+tc.src)),
			chromedp.WaitVisible(chromedp.Search(`//p[@id="state" and text()="open"]`)),
		); err != nil {
			t.Fatalf("%s: the stream did not open: %v\nconsole:\n%s", tc.name, err, console)
		}
		if err := layer.GroupSend(context.Background(), "news", canal.Message{"type": "news.item", "title": title}); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(tab,
			chromedp.WaitVisible(chromedp.Search(fmt.Sprintf(`//ul[@id="log"]/li[text()=%q]`, title))),
		); err != nil {
			t.Fatalf("%s: the page never showed %q: %v\nconsole:\n%s", tc.name, title, err, console)
		}
		// Django (or anything on the layer) closes the stream as it closes sockets.
		if err := layer.GroupSend(context.Background(), "news", canal.Message{"type": "websocket.close", "code": 4403}); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(tab,
			chromedp.WaitVisible(chromedp.Search(`//p[@id="closed" and text()="closed 4403"]`)),
		); err != nil {
			t.Fatalf("%s: the page never saw the close event: %v\nconsole:\n%s", tc.name, err, console)
		}
	}
	browser.Screenshot(t, tab, "sse-browser.png")
}
