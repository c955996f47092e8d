package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/client"
	"github.com/canal-rt/canal/layers"
)

// recoverConfig is a feed that keeps its last 5 messages and recovers them, and a
// route whose clients post to it (receive mode group: GroupSend, which publishes with
// history on a group that keeps one). %s is the [redis] table, or nothing for the
// memory layer.
const recoverConfig = `%s
[[layer.history]]
group = "feed_*"
size = 5
ttl = "1m"

[[route]]
path = "ws/feed/<slug:feed>/"
anonymous = true
groups = ["feed_{feed}"]
events = ["feed.item"]
recover = ["feed_*"]

[[route]]
path = "ws/post/<slug:feed>/"
anonymous = true
[route.receive]
mode = "group"
group = "feed_{feed}"
type = "feed.item"
`

// frame is what a feed socket receives: an item with its position under "canal",
// or a canal.recover frame.
type frame struct {
	Type      string `json:"type"`
	Text      string `json:"text"`
	Recovered bool   `json:"recovered"`
	Group     string `json:"group"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Canal     *struct {
		Group  string `json:"group"`
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	} `json:"canal"`
	Pos json.RawMessage `json:"__canal_pos__"`
}

func receiveFrame(t *testing.T, c *canaltest.Communicator) frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.ReceiveText(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	var f frame
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	if f.Pos != nil {
		t.Fatalf("the layer's position key reached the client: %s", s)
	}
	return f
}

// expectItems receives the items texts names, in order, each at the next offset
// after from.
func expectItems(t *testing.T, c *canaltest.Communicator, from uint64, epoch string, texts ...string) {
	t.Helper()
	for i, want := range texts {
		f := receiveFrame(t, c)
		off := from + uint64(i) + 1
		if f.Type != "feed.item" || f.Text != want || f.Canal == nil ||
			f.Canal.Group != "feed_news" || f.Canal.Offset != off || f.Canal.Epoch != epoch {
			t.Fatalf("got %+v (position %+v), want %q at offset %d of epoch %q", f, f.Canal, want, off, epoch)
		}
	}
}

func expectRecover(t *testing.T, c *canaltest.Communicator, recovered bool, offset uint64, epoch string) {
	t.Helper()
	f := receiveFrame(t, c)
	if f.Type != "canal.recover" || f.Group != "feed_news" || f.Recovered != recovered || f.Offset != offset ||
		(epoch != "" && f.Epoch != epoch) {
		t.Fatalf("got %+v, want canal.recover recovered %v at %d of epoch %q", f, recovered, offset, epoch)
	}
}

// recoverParam is the ?recover= value canal.js sends for one position.
func recoverParam(offset uint64, epoch string) string {
	b, _ := json.Marshal(map[string]any{"feed_news": []any{offset, epoch}})
	return base64.RawURLEncoding.EncodeToString(b)
}

// A client that comes back with its position gets what it missed, in order, then
// the live messages; one whose position the history no longer reaches is told so.
// Both layers that keep history, through the app's local layer wrapper.
func TestRecover(t *testing.T) {
	for _, backend := range []string{"redis", "memory"} {
		t.Run(backend, func(t *testing.T) {
			redis := ""
			if backend == "redis" {
				redis = fmt.Sprintf("[redis]\nurl = %q\n", canaltest.StartRedis(t).URL())
			}
			addr, _ := serve(t, fmt.Sprintf(recoverConfig, redis))
			dial := func(path string) *canaltest.Communicator {
				c, err := canaltest.Dial(context.Background(), "ws://"+addr+path, canaltest.DialOptions{})
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				t.Cleanup(c.Abort)
				return c
			}
			post := dial("/ws/post/news/")
			send := func(texts ...string) {
				for _, s := range texts {
					if err := post.SendJSON(map[string]any{"text": s}); err != nil {
						t.Fatal(err)
					}
				}
			}

			// No position: told the starting one, then live with positions.
			a := dial("/ws/feed/news/")
			start := receiveFrame(t, a)
			if start.Type != "canal.recover" || !start.Recovered || start.Offset != 0 {
				t.Fatalf("first frame %+v, want canal.recover recovered at 0", start)
			}
			watcher := dial("/ws/feed/news/")
			receiveFrame(t, watcher)
			send("m1", "m2", "m3")
			first := receiveFrame(t, a)
			epoch := first.Canal.Epoch
			if first.Text != "m1" || first.Canal.Offset != 1 || epoch == "" {
				t.Fatalf("first item %+v %+v", first, first.Canal)
			}
			expectItems(t, a, 1, epoch, "m2", "m3")
			expectItems(t, watcher, 0, epoch, "m1", "m2", "m3")

			// Away after m1: m2 to m5 come back in order, then live m6.
			a.Abort()
			send("m4", "m5")
			expectItems(t, watcher, 3, epoch, "m4", "m5") // published before the reconnect
			b := dial("/ws/feed/news/?recover=" + recoverParam(1, epoch))
			expectItems(t, b, 1, epoch, "m2", "m3", "m4", "m5")
			expectRecover(t, b, true, 5, epoch)
			send("m6")
			expectItems(t, b, 5, epoch, "m6")
			if err := b.ExpectNothing(100 * time.Millisecond); err != nil {
				t.Fatal(err)
			}

			// Too far behind: the history keeps 5 (2 to 6), so from 0 it cannot.
			cases := []struct {
				name   string
				offset uint64
				epoch  string
			}{
				{"trimmed", 0, epoch},
				{"other epoch", 6, "another-epoch"},
				{"ahead", 60, epoch},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					old := dial("/ws/feed/news/?recover=" + recoverParam(c.offset, c.epoch))
					expectRecover(t, old, false, 6, epoch)
					if err := old.ExpectNothing(100 * time.Millisecond); err != nil {
						t.Fatal(err)
					}
				})
			}
		})
	}
}

// GET /canal.js serves the browser client on the socket listener, as client.Handler
// does, unless [server] client_js = false; a WebSocket upgrade to the path is still
// the sockets' (404: no route).
func TestClientJS(t *testing.T) {
	const route = "[[route]]\npath = \"ws/\"\nanonymous = true\n"
	on, _ := serve(t, route)
	off, _ := serve(t, "[server]\nclient_js = false\n"+route)
	cases := []struct {
		name   string
		addr   string
		method string
		header map[string]string
		status int
		body   string
	}{
		{"get", on, http.MethodGet, nil, http.StatusOK, client.Source()},
		{"head", on, http.MethodHead, nil, http.StatusOK, ""},
		{"revalidate", on, http.MethodGet, map[string]string{"If-None-Match": client.ETag()}, http.StatusNotModified, ""},
		{"stale", on, http.MethodGet, map[string]string{"If-None-Match": `"old"`}, http.StatusOK, client.Source()},
		{"post", on, http.MethodPost, nil, http.StatusMethodNotAllowed, ""},
		{"off", off, http.MethodGet, nil, http.StatusNotFound, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, "http://"+c.addr+"/canal.js", nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != c.status {
				t.Fatalf("status %d, want %d", res.StatusCode, c.status)
			}
			if c.status == http.StatusOK && string(body) != c.body {
				t.Errorf("body: %d bytes, want %d", len(body), len(c.body))
			}
			if c.status == http.StatusOK || c.status == http.StatusNotModified {
				h := res.Header
				if h.Get("Content-Type") != client.ContentType || h.Get("Cache-Control") != "no-cache" ||
					h.Get("ETag") != client.ETag() || h.Get("Access-Control-Allow-Origin") != "*" {
					t.Errorf("headers %v", h)
				}
			}
		})
	}
	_, err := canaltest.Dial(context.Background(), "ws://"+on+"/canal.js", canaltest.DialOptions{})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Errorf("upgrade to /canal.js: %v, want 404 from the routes", err)
	}
}

// The local layer passes history through to a layer that keeps it, and says
// canal.ErrNoHistory for one that cannot.
func TestLocalLayerHistory(t *testing.T) {
	ctx := context.Background()
	mem, err := layers.NewMemory(layers.MemoryOptions{History: []layers.HistoryRule{{Group: "feed_*", Size: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close(ctx)
	cases := []struct {
		name  string
		layer canal.Layer
		group string
		want  error
	}{
		{"kept", mem, "feed_a", nil},
		{"no rule", mem, "chat_a", canal.ErrNoHistory},
		{"no history layer", struct{ canal.Layer }{mem}, "feed_a", canal.ErrNoHistory},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLocalLayer(c.layer, true)
			p, err := l.Publish(ctx, c.group, canal.Message{"type": "x.y", "n": 1})
			if !errors.Is(err, c.want) {
				t.Fatalf("Publish: %v, want %v", err, c.want)
			}
			msgs, cur, err := l.History(ctx, c.group, canal.Position{Offset: 0, Epoch: p.Epoch}, 0)
			if !errors.Is(err, c.want) {
				t.Fatalf("History: %v, want %v", err, c.want)
			}
			if c.want == nil && (len(msgs) != 1 || cur != p || !strings.HasPrefix(fmt.Sprint(msgs[0]["n"]), "1")) {
				t.Errorf("History: %v at %+v, want the message at %+v", msgs, cur, p)
			}
		})
	}
}
