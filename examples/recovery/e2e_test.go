package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/canaltest/browser"
)

// pageState is what the page's window.feed holds.
type pageState struct {
	Got       []int    `json:"got"`
	Posts     []string `json:"posts"`
	Recovered []bool   `json:"recovered"`
	States    []string `json:"states"`
	Tickets   int      `json:"tickets"`
}

func readPage(tab context.Context) (pageState, error) {
	return chromedp.Run(tab, chromedp.Evaluate[pageState](`window.feed || {got: [], posts: [], recovered: [], states: [], tickets: 0}`))
}

// waitPage polls the page until ok holds, at most d.
func waitPage(t *testing.T, tab context.Context, d time.Duration, what string, ok func(pageState) bool) pageState {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := readPage(tab)
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; the page has %d items (last %v), recover %v, states %v",
				what, d, len(st.Got), st.Got[max(0, len(st.Got)-5):], st.Recovered, st.States)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deployment is Redis, the Django site, the balancer and a first Canal process.
type deployment struct {
	redis *canaltest.Redis
	proxy *proxy
	site  *site
	first *child
}

func deploy(t *testing.T) *deployment {
	d := &deployment{redis: canaltest.StartRedis(t), proxy: newProxy(t)}
	d.site = startSite(t, d.redis.URL(), d.proxy.URL())
	d.first = startChild(t, d.redis.URL(), d.site.URL)
	d.proxy.route(d.first.Addr, false)
	return d
}

// openFeed loads the feed page and waits for its first recover frame.
func (d *deployment) openFeed(t *testing.T, group, transport string) context.Context {
	tab := browser.New(t)
	if err := chromedp.Do(tab, chromedp.Navigate(d.site.URL+"/feed/"+group+"/?transport="+transport)); err != nil {
		t.Fatal(err)
	}
	waitPage(t, tab, 20*time.Second, "connected", func(s pageState) bool { return len(s.Recovered) == 1 })
	return tab
}

// checkAll fails unless the page holds 1..n exactly once each, in order.
func checkAll(t *testing.T, st pageState, n int) {
	t.Helper()
	want := make([]int, n)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(st.Got, want) {
		for i := range min(len(st.Got), n) {
			if st.Got[i] != i+1 {
				t.Fatalf("item %d is %d (%d items): a gap, a duplicate or out of order", i+1, st.Got[i], len(st.Got))
			}
		}
		t.Fatalf("%d items, want %d", len(st.Got), n)
	}
}

// feedThroughOutage: Django publishes 500 items at 50/s to feed_1 while outage takes
// the page's Canal process away (at item 150); the page ends with all 500, in order,
// once each, and it did reconnect (states, tickets).
func feedThroughOutage(t *testing.T, transport string, outage func(d *deployment)) {
	const total, rate = 500, 50
	d := deploy(t)
	tab := d.openFeed(t, "feed_1", transport)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	published := d.site.publish(ctx, "feed_1", total, rate)
	waitPage(t, tab, 30*time.Second, "150 items", func(s pageState) bool { return len(s.Got) >= 150 })
	outage(d)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	st := waitPage(t, tab, 30*time.Second, "all items", func(s pageState) bool { return len(s.Got) >= total })
	time.Sleep(300 * time.Millisecond) // a duplicate would come right after
	if st, err := readPage(tab); err == nil {
		checkAll(t, st, total)
	}
	if !slices.Equal(st.Recovered, []bool{true, true}) {
		t.Fatalf("recover events %v, want [true true]", st.Recovered)
	}
	tr := strings.Replace(transport, "auto", "websocket", 1)
	if st.Tickets < 2 || st.States[0] != "connecting/"+tr || !slices.Contains(st.States, "waiting/"+tr) {
		t.Fatalf("no reconnect seen: %d tickets, states %v", st.Tickets, st.States)
	}
	t.Logf("%d items in order after %d tickets; states %v", len(st.Got), st.Tickets, st.States)
}

// TestBrowserRestart: the Canal process is killed (SIGKILL) mid-feed and a new one
// starts a second later; the page loses nothing.
func TestBrowserRestart(t *testing.T) {
	for _, transport := range []string{"auto", "sse"} {
		t.Run(transport, func(t *testing.T) {
			feedThroughOutage(t, transport, func(d *deployment) {
				d.first.kill()
				d.proxy.route("", true)
				time.Sleep(time.Second)
				next := startChild(t, d.redis.URL(), d.site.URL)
				d.proxy.route(next.Addr, false)
			})
		})
	}
}

// TestBrowserMove: the balancer moves the page to a second Canal process mid-feed
// (the first keeps running); the page loses nothing.
func TestBrowserMove(t *testing.T) {
	feedThroughOutage(t, "auto", func(d *deployment) {
		second := startChild(t, d.redis.URL(), d.site.URL)
		d.proxy.route(second.Addr, true)
	})
}

// TestBrowserNotRecovered: a page away while more items were published than the
// history keeps (short_1 keeps 10) is told so (recover event, recovered false) and
// then gets the live items.
func TestBrowserNotRecovered(t *testing.T) {
	d := deploy(t)
	tab := d.openFeed(t, "short_1", "auto")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d.proxy.route("", true) // the page's network is down
	if err := <-d.site.publish(ctx, "short_1", 30, 200); err != nil {
		t.Fatal(err)
	}
	d.proxy.route(d.first.Addr, false)
	st := waitPage(t, tab, 20*time.Second, "not recovered", func(s pageState) bool { return len(s.Recovered) == 2 })
	if st.Recovered[1] || len(st.Got) != 0 {
		t.Fatalf("recover events %v with items %v; want [true false] and none of the 30", st.Recovered, st.Got)
	}
	if err := <-d.site.publish(ctx, "short_1", 1, 10); err != nil {
		t.Fatal(err)
	}
	st = waitPage(t, tab, 10*time.Second, "live after not recovered", func(s pageState) bool { return len(s.Got) == 1 })
	if fmt.Sprint(st.Got) != "[1]" {
		t.Fatalf("items %v", st.Got)
	}
}

// send calls canal.send in the page and returns its answer.
func send(t *testing.T, tab context.Context, text string) {
	t.Helper()
	ok, err := chromedp.Run(tab, chromedp.Evaluate[bool](fmt.Sprintf(`window.canal.send({text: %q})`, text)))
	if err != nil || !ok {
		t.Fatalf("canal.send(%q) = %v, %v", text, ok, err)
	}
}

// TestBrowserSendQueue: what the page sends while offline is queued and sent, in
// order, once the socket is back.
func TestBrowserSendQueue(t *testing.T) {
	d := deploy(t)
	tab := d.openFeed(t, "feed_2", "auto")
	send(t, tab, "online")
	waitPage(t, tab, 10*time.Second, "online post", func(s pageState) bool { return len(s.Posts) == 1 })
	d.proxy.route("", true)
	waitPage(t, tab, 10*time.Second, "offline", func(s pageState) bool { return slices.Contains(s.States, "waiting/websocket") })
	send(t, tab, "offline 1")
	send(t, tab, "offline 2")
	d.proxy.route(d.first.Addr, false)
	st := waitPage(t, tab, 20*time.Second, "queued posts", func(s pageState) bool { return len(s.Posts) >= 3 })
	if want := []string{"reader: online", "reader: offline 1", "reader: offline 2"}; !slices.Equal(st.Posts, want) {
		t.Fatalf("posts %q, want %q", st.Posts, want)
	}
}

// TestBrowserFallback: a balancer that refuses WebSocket upgrades; canal.js falls
// back to an event stream, recovers on it, and its sends go to Django by POST.
func TestBrowserFallback(t *testing.T) {
	d := deploy(t)
	d.proxy.blockWebSockets()
	tab := d.openFeed(t, "feed_3", "auto")
	st, err := readPage(tab)
	if err != nil || !slices.Contains(st.States, "open/sse") || slices.Contains(st.States, "open/websocket") {
		t.Fatalf("states %v (%v): want an event stream, no WebSocket", st.States, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := <-d.site.publish(ctx, "feed_3", 20, 100); err != nil {
		t.Fatal(err)
	}
	send(t, tab, "by post")
	st = waitPage(t, tab, 20*time.Second, "items and the post", func(s pageState) bool { return len(s.Got) >= 20 && len(s.Posts) >= 1 })
	checkAll(t, st, 20)
	if !slices.Equal(st.Posts, []string{"reader: by post"}) {
		t.Fatalf("posts %q", st.Posts)
	}
}
