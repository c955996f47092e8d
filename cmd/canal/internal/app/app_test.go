package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/cmd/canal/internal/config"
	"github.com/canal-rt/canal/layers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}

const djangoToken = "test-django-token"

// serve runs an App on doc until the test ends.
func serve(t *testing.T, doc string) (addr string, logs *canaltest.LogBuffer) {
	t.Helper()
	cfg, err := config.Parse("canal.toml", []byte(doc), func(k string) string {
		if k == config.EnvDjangoToken {
			return djangoToken
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	logs = &canaltest.LogBuffer{}
	a, err := New(context.Background(), cfg, logs.Logger())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), logs
}

// django stands in for the Django views canal calls (authorize, receive mode
// "django"): the HTTP contract, answered as a test says.
type django struct {
	mu       sync.Mutex
	requests []map[string]any
	answer   func(path string) (int, string)
}

func (d *django) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+djangoToken || r.Method != http.MethodPost {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	var body map[string]any
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &body)
	d.mu.Lock()
	d.requests = append(d.requests, body)
	d.mu.Unlock()
	status, text := d.answer(r.URL.Path)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

func (d *django) last() map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requests[len(d.requests)-1]
}

func TestAuthorizeAndDjangoReceive(t *testing.T) {
	dj := &django{}
	var verdict sync.Map // room -> status
	dj.answer = func(path string) (int, string) {
		if strings.HasPrefix(path, "/authorize/") {
			if v, ok := verdict.Load(strings.TrimPrefix(path, "/authorize/")); ok {
				return v.(int), ""
			}
			return http.StatusOK, ""
		}
		switch path {
		case "/receive/echo":
			return http.StatusOK, `{"echo": true}`
		case "/receive/silent":
			return http.StatusNoContent, ""
		case "/receive/refuse":
			return http.StatusNotFound, "no"
		}
		return http.StatusInternalServerError, "boom"
	}
	hs := httptest.NewServer(dj)
	defer hs.Close()
	route := func(room, receive string) string {
		return fmt.Sprintf(`
[[route]]
path = "ws/%[1]s/<slug:room>/"
anonymous = true
authorize = "%[2]s/authorize/%[1]s"
groups = ["r_{room}"]
[route.receive]
mode = "django"
url = "%[2]s/receive/%[3]s"
`, room, hs.URL, receive)
	}
	addr, _ := serve(t, route("echo", "echo")+route("silent", "silent")+route("refuse", "refuse")+route("fail", "fail")+route("no", "echo"))
	url := func(p string) string { return "ws://" + addr + p }
	ctx := context.Background()
	dial := func(p string) *canaltest.Communicator {
		c, err := canaltest.Dial(ctx, url(p), canaltest.DialOptions{})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		t.Cleanup(c.Abort)
		return c
	}

	c := dial("/ws/echo/lobby/")
	got := dj.last()
	if got["path"] != "/ws/echo/lobby/" || fmt.Sprint(got["groups"]) != "[r_lobby]" || fmt.Sprint(got["route"]) != "map[room:lobby]" {
		t.Errorf("authorize got %v", got)
	}
	if err := c.SendText(`{"q": 1}`); err != nil {
		t.Fatal(err)
	}
	if s, err := c.ReceiveText(ctx); err != nil || s != `{"echo": true}` {
		t.Fatalf("echo: %q, %v", s, err)
	}
	got = dj.last()
	if msg, _ := json.Marshal(got["message"]); string(msg) != `{"q":1}` || !strings.HasPrefix(fmt.Sprint(got["channel_name"]), "specific.") {
		t.Errorf("receive got %v", got)
	}

	s := dial("/ws/silent/x/")
	if err := s.SendText(`{}`); err != nil {
		t.Fatal(err)
	}
	if err := s.ExpectNothing(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]int{"/ws/refuse/x/": 4404, "/ws/fail/x/": canal.CloseTryAgainLater} {
		c := dial(p)
		if err := c.SendText(`{}`); err != nil {
			t.Fatal(err)
		}
		if code, _, err := c.ExpectClose(ctx); err != nil || code != want {
			t.Errorf("%s: close %d, %v; want %d", p, code, err, want)
		}
	}

	verdict.Store("no", http.StatusForbidden)
	_, err := canaltest.Dial(ctx, url("/ws/no/x/"), canaltest.DialOptions{})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Errorf("authorize 403: %v", err)
	}
	verdict.Store("no", http.StatusBadGateway)
	_, err = canaltest.Dial(ctx, url("/ws/no/x/"), canaltest.DialOptions{})
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Errorf("authorize 502: %v", err)
	}
}

// The local group index forgets a socket's groups when its channel goes, even when
// GroupDiscard never came (a layer error at cleanup).
func TestLocalLayerForgets(t *testing.T) {
	mem, err := layers.NewMemory(layers.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := newLocalLayer(mem, true)
	defer l.Close(context.Background())
	ctx := context.Background()
	var got []canal.Message
	var mu sync.Mutex
	ch, detach, err := l.Attach(ctx, "specific", func(m canal.Message) bool {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"a", "b"} {
		if err := l.GroupAdd(ctx, g, ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.GroupAdd(ctx, "a", "other.channel"); err != nil { // not a socket of this process
		t.Fatal(err)
	}
	msg := canal.Message{"type": "x"}
	if n := l.publishLocal("a", msg); n != 1 {
		t.Fatalf("publish to a: %d members", n)
	}
	if err := l.GroupDiscard(ctx, "a", ch); err != nil {
		t.Fatal(err)
	}
	if n := l.publishLocal("a", msg); n != 0 {
		t.Fatalf("after discard: %d members", n)
	}
	detach()
	if n := l.publishLocal("b", msg); n != 0 {
		t.Fatalf("after detach: %d members", n)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.groups) != 0 || len(l.members) != 0 {
		t.Errorf("index not empty: %v %v", l.groups, l.members)
	}
}

// The local group index follows GroupAddMany and GroupDiscardMany, whether the layer
// below batches them (Redis) or not (memory, one call per group), and the layer
// itself gets the memberships: a GroupSend reaches the socket. Without a bus nothing
// reads the index, so a socket costs no entry in it, and the layer still gets them.
func TestLocalLayerBatches(t *testing.T) {
	ctx := context.Background()
	mem, err := layers.NewMemory(layers.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close(ctx)
	rds, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{canaltest.StartRedis(t).URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer rds.Close(ctx)
	cases := []struct {
		name    string
		layer   canal.Layer
		batches bool
		index   bool // a bus is configured
	}{
		{"memory", mem, false, true},
		{"redis", rds, true, true},
		{"memory, no bus", mem, false, false},
		{"redis, no bus", rds, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, ok := c.layer.(canal.GroupBatcher); ok != c.batches {
				t.Fatalf("%T batches: %v, want %v", c.layer, ok, c.batches)
			}
			l := newLocalLayer(c.layer, c.index)
			got := make(chan canal.Message, 4)
			ch, detach, err := l.Attach(ctx, "specific", func(m canal.Message) bool { got <- m; return true })
			if err != nil {
				t.Fatal(err)
			}
			defer detach()
			if err := l.GroupAddMany(ctx, []string{"a", "b", "c"}, ch); err != nil {
				t.Fatal(err)
			}
			indexed := 0 // members publishLocal reaches
			if c.index {
				indexed = 1
			}
			msg := canal.Message{"type": "x"}
			for _, g := range []string{"a", "b", "c"} {
				if n := l.publishLocal(g, msg); n != indexed {
					t.Fatalf("publish to %s after GroupAddMany: %d members, want %d", g, n, indexed)
				}
				if n := len(got); n != indexed {
					t.Fatalf("publish to %s delivered %d messages, want %d", g, n, indexed)
				}
				if indexed == 1 {
					<-got
				}
			}
			if !c.index {
				l.mu.RLock()
				n, g := len(l.members), len(l.groups)
				l.mu.RUnlock()
				if n != 0 || g != 0 {
					t.Fatalf("index holds %d members, %d groups; want none", n, g)
				}
			}
			if err := l.GroupSend(ctx, "b", canal.Message{"type": "y"}); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-got:
				if m["type"] != "y" {
					t.Fatalf("GroupSend delivered %v", m)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("GroupSend to b did not reach the member")
			}
			if err := l.GroupDiscardMany(ctx, []string{"a", "b"}, ch); err != nil {
				t.Fatal(err)
			}
			for g, want := range map[string]int{"a": 0, "b": 0, "c": indexed} {
				if n := l.publishLocal(g, msg); n != want {
					t.Errorf("publish to %s after GroupDiscardMany: %d members, want %d", g, n, want)
				}
			}
		})
	}
}
