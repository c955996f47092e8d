package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/client"
)

// feedConfig keeps the last 5 messages of the feed_* groups, as Django's
// REALTIME_HISTORY (feedHistory) does, and recovers them on ws/feed/<feed>/.
const feedConfig = `
[redis]
url = "%s"
[auth.ticket]

[[layer.history]]
group = "feed_*"
size = 5
ttl = "1m"

[[route]]
path = "ws/feed/<slug:feed>/"
groups = ["feed_{feed}"]
events = ["feed.item"]
recover = ["feed_*"]
`

// feedHistory is the Django side of feedConfig's [[layer.history]].
const feedHistory = `[{"group": "feed_*", "size": 5, "ttl": 60}]`

// position is a message's place in its group's history, as the wire gives it.
type position struct {
	Group  string `json:"group"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// historyPublish runs django_canal.history.publish in Debian's Python, as a Django
// view would, once per text (type feed.item); it returns their positions.
func historyPublish(t *testing.T, redisURL, group string, texts ...string) []position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"testdata/history_publish.py", redisURL, feedHistory, group}, texts...)
	cmd := exec.CommandContext(ctx, canaltest.DebianPython, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONPATH=../../python"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("history_publish.py: %v\n%s", err, errb.String())
	}
	var ps []position
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		off, epoch, _ := strings.Cut(line, " ")
		n, err := strconv.ParseUint(off, 10, 64)
		if err != nil {
			t.Fatalf("history_publish.py printed %q", line)
		}
		ps = append(ps, position{Group: group, Offset: n, Epoch: epoch})
	}
	if len(ps) != len(texts) {
		t.Fatalf("history_publish.py: %d positions for %d texts", len(ps), len(texts))
	}
	return ps
}

// feedFrame is a frame of a recovered route: an item carrying its position under
// "canal", or canal.recover.
type feedFrame struct {
	Type      string    `json:"type"`
	Text      string    `json:"text"`
	Canal     *position `json:"canal"`
	Recovered bool      `json:"recovered"`
	position
}

func receiveFeed(t *testing.T, c *canaltest.Communicator) feedFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.ReceiveText(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	var f feedFrame
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	if strings.Contains(s, "__canal_pos__") {
		t.Fatalf("the layer's position key reached the client: %s", s)
	}
	return f
}

// expectFeed receives the items published at ps with texts, in order.
func expectFeed(t *testing.T, c *canaltest.Communicator, ps []position, texts ...string) {
	t.Helper()
	for i, p := range ps {
		f := receiveFeed(t, c)
		if f.Type != "feed.item" || f.Text != texts[i] || f.Canal == nil || *f.Canal != p {
			t.Fatalf("got %+v (position %+v), want %q at %+v", f, f.Canal, texts[i], p)
		}
	}
}

func expectRecovered(t *testing.T, c *canaltest.Communicator, recovered bool, at position) {
	t.Helper()
	if f := receiveFeed(t, c); f.Type != "canal.recover" || f.Recovered != recovered || f.position != at {
		t.Fatalf("got %+v, want canal.recover recovered %v at %+v", f, recovered, at)
	}
}

// recoverQuery is the ?recover= canal.js sends for its last position in a group.
func recoverQuery(p position) string {
	b, _ := json.Marshal(map[string]any{p.Group: []any{p.Offset, p.Epoch}})
	return "?recover=" + base64.RawURLEncoding.EncodeToString(b)
}

// Issue 12's end-to-end: the built binary on a real Redis, Django publishing with
// django_canal.history, a client with a Django ticket that drops and comes back with
// its last position: it gets what it missed in order, then the live messages; one
// that was away longer than the history reaches is told recovered: false, and the
// stream goes on.
func TestServeRecover(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, fmt.Sprintf(feedConfig, r.URL()))
	feed := p.url("/ws/feed/news/")

	a := dialTicket(t, feed, issue(t, r, alice))
	if f := receiveFeed(t, a); f.Type != "canal.recover" || !f.Recovered || f.Offset != 0 {
		t.Fatalf("first frame %+v, want canal.recover recovered at 0", f)
	}
	first := historyPublish(t, r.URL(), "feed_news", "m1", "m2", "m3")
	expectFeed(t, a, first, "m1", "m2", "m3")
	last := first[2]
	a.Abort()

	missed := historyPublish(t, r.URL(), "feed_news", "m4", "m5")
	b := dialTicket(t, feed+recoverQuery(last), issue(t, r, alice))
	expectFeed(t, b, missed, "m4", "m5")
	expectRecovered(t, b, true, missed[1])
	live := historyPublish(t, r.URL(), "feed_news", "m6")
	expectFeed(t, b, live, "m6")

	// The history keeps 5 (m6 to m10): from m3 it cannot.
	later := historyPublish(t, r.URL(), "feed_news", "m7", "m8", "m9", "m10")
	c := dialTicket(t, feed+recoverQuery(last), issue(t, r, alice))
	expectRecovered(t, c, false, later[3])
	if err := c.ExpectNothing(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	next := historyPublish(t, r.URL(), "feed_news", "m11")
	expectFeed(t, c, next, "m11")
	expectFeed(t, b, append(later, next...), "m7", "m8", "m9", "m10", "m11")
}

// The binary serves canal.js on its socket listener, importable by a Django page on
// another origin.
func TestServeClientJS(t *testing.T) {
	p := startCanal(t, "[[route]]\npath = \"ws/\"\nanonymous = true\n")
	res, err := http.Get("http://" + p.addr + "/canal.js")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") ||
		res.Header.Get("Access-Control-Allow-Origin") != "*" || string(body) != client.Source() ||
		!strings.Contains(string(body), "export function connect") {
		t.Fatalf("GET /canal.js: %d %v, %d bytes", res.StatusCode, res.Header, len(body))
	}
}
