package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
)

func TestCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", "[[route]]\npath = \"ws/<slug:room>/\"\nanonymous = true\ngroups = [\"chat_{room}\"]\n")
	bad := write("bad.toml", "[[route]]\npath = \"ws/<slug:room>/\"\nanonymous = true\ngroups = [\"chat_{rom}\"]\nevents = [\"_x\"]\n")
	uncovered := write("uncovered.toml", "[[layer.history]]\ngroup = \"feed_news\"\nttl = \"10m\"\n[[route]]\npath = \"ws/\"\nanonymous = true\nrecover = [\"feed_*\"]\n")
	needsSecret := write("secret.toml", "[auth.session]\nurl = \"http://127.0.0.1:8000/session/\"\n[[route]]\npath = \"ws/\"\n")
	noEnv := func(string) string { return "" }
	cases := []struct {
		name       string
		args       []string
		env        func(string) string
		code       int
		out, err   string
		errPartial bool
	}{
		{"valid", []string{"check", "-config", good}, noEnv, 0, good + ": ok (1 routes, 0 bus inputs, layer memory)\n", "", false},
		{"invalid", []string{"check", "-config", bad}, noEnv, 1, "",
			"bad.toml:4: route[0].groups[0]: {rom}: the route pattern captures only room\n" +
				"bad.toml:5: route[0].events[0]: \"_x\" is not a message type (like \"chat.message\")\n", false},
		{"history", []string{"check", "-config", uncovered}, noEnv, 1, "",
			"uncovered.toml:7: route[0].recover[0]: \"feed_*\": no [[layer.history]] rule covers it (add one with group = \"feed_*\"): without a history there is nothing to recover\n", false},
		{"secret from env", []string{"check", "-config", needsSecret}, func(k string) string {
			if k == "CANAL_SESSION_TOKEN" {
				return "a-secret-of-at-least-32-characters-long"
			}
			return ""
		}, 0, needsSecret + ": ok (1 routes, 0 bus inputs, layer memory)\n", "", false},
		{"secret missing", []string{"check", "-config", needsSecret}, noEnv, 1, "",
			"secret.toml:1: auth.session: needs the environment variable CANAL_SESSION_TOKEN (Django's REALTIME_SESSION_TOKEN)\n", false},
		{"CANAL_CONFIG", []string{"check"}, func(k string) string {
			if k == "CANAL_CONFIG" {
				return good
			}
			return ""
		}, 0, good + ": ok (1 routes, 0 bus inputs, layer memory)\n", "", false},
		{"missing file", []string{"check", "-config", filepath.Join(dir, "nope.toml")}, noEnv, 1, "", "canal: cannot read the configuration: open ", true},
		{"no command", nil, noEnv, 2, "", "usage:", true},
		{"unknown command", []string{"run"}, noEnv, 2, "", "canal: unknown command \"run\"", true},
		{"unknown flag", []string{"check", "-conf", good}, noEnv, 2, "", "flag provided but not defined: -conf", true},
		{"extra argument", []string{"check", good}, noEnv, 2, "", "canal check: unexpected argument", true},
		{"version", []string{"--version"}, noEnv, 0, "canal (devel)\n", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(c.args, c.env, &out, &errb)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errb.String())
			}
			if out.String() != c.out {
				t.Errorf("stdout %q, want %q", out.String(), c.out)
			}
			if c.errPartial && !strings.Contains(errb.String(), c.err) || !c.errPartial && errb.String() != c.err {
				t.Errorf("stderr %q, want %q", errb.String(), c.err)
			}
		})
	}
}

// The binary's own exit codes, for scripts and CI.
func TestCheckBinary(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte("listen = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for args, want := range map[string]int{"check -config " + p: 1, "--version": 0, "nope": 2} {
		err := execBinary(strings.Fields(args)...)
		code := 0
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != want {
			t.Errorf("canal %s: exit %d, want %d", args, code, want)
		}
	}
}

const chatConfig = `
[redis]
url = "%[1]s"
[layer]
backend = "%[2]s"
[auth.ticket]
[[bus]]
channel = "events"
group = "ct_{content_type_id}"

[[route]]
path = "ws/chat/<slug:room>/"
groups = ["chat_{room}", "user_{user.id}", "ct_{user.content_types}"]
events = ["chat.message", "notify"]
[route.receive]
mode = "group"
group = "chat_{room}"
type = "chat.message"

[[route]]
path = "ws/staff/"
require = ["user.is_staff", 'user.permissions contains "app.view_x"']
groups = ["staff"]

[[route]]
path = "ws/jobs/<int:job>/"
groups = ["job_{job}"]
[route.receive]
mode = "worker"
channel = "jobs"
type = "job.submit"
`

var (
	alice = canal.User{ID: "1", Username: "alice", Attrs: map[string]any{
		"is_staff": true, "permissions": []any{"app.view_x"}, "content_types": []any{7, 9}}}
	bob = canal.User{ID: "2", Username: "bob", Attrs: map[string]any{
		"is_staff": false, "content_types": []any{9}}}
)

// The issue's end-to-end: the built binary, a real Redis, a Django-issued ticket
// (written as django_canal writes it), and Django's own channels_redis group_send,
// through the core and the Pub/Sub layer.
func TestServeGroupSend(t *testing.T) {
	for _, backend := range []string{"redis", "pubsub"} {
		t.Run(backend, func(t *testing.T) {
			r := canaltest.StartRedis(t)
			p := startCanal(t, fmt.Sprintf(chatConfig, r.URL(), backend))
			a := dialTicket(t, p.url("/ws/chat/lobby/"), issue(t, r, alice))
			ctx := context.Background()
			py := map[string]string{"redis": "core", "pubsub": "pubsub"}[backend]

			groupSend(t, py, r.URL(), "chat_lobby", map[string]any{"type": "chat.message", "message": "héllo", "n": 3})
			if got, err := a.ReceiveText(ctx); err != nil || got != `{"message":"héllo","n":3,"type":"chat.message"}` {
				t.Fatalf("chat.message: %q, %v", got, err)
			}
			groupSend(t, py, r.URL(), "user_1", map[string]any{"type": "notify", "text": "for alice"})
			if got, err := a.ReceiveText(ctx); err != nil || got != `{"text":"for alice","type":"notify"}` {
				t.Fatalf("notify: %q, %v", got, err)
			}
			// A type the route does not list is dropped, and the socket stays.
			groupSend(t, py, r.URL(), "chat_lobby", map[string]any{"type": "secret.thing", "x": 1})
			groupSend(t, py, r.URL(), "chat_lobby", map[string]any{"type": "chat.message", "message": "after"})
			if got, err := a.ReceiveText(ctx); err != nil || !strings.Contains(got, `"after"`) {
				t.Fatalf("after an unlisted type: %q, %v", got, err)
			}
		})
	}
}

// A raw Pub/Sub message (the websockets guide's events bus) reaches the members of
// the group its field names, byte for byte, and nobody else.
func TestServeBus(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, fmt.Sprintf(chatConfig, r.URL(), "redis"))
	a := dialTicket(t, p.url("/ws/chat/a/"), issue(t, r, alice)) // content types 7, 9
	b := dialTicket(t, p.url("/ws/chat/b/"), issue(t, r, bob))   // 9
	waitReady(t, r)
	ctx := context.Background()
	client := r.Client(t)
	publish := func(payload string) {
		if err := client.Do(ctx, client.B().Publish().Channel("events").Message(payload).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	seven := `{"model": "article", "object": "Über", "content_type_id": 7,  "message": "[{\"changed\": {}}]"}`
	publish(seven)
	if got, err := a.ReceiveText(ctx); err != nil || got != seven {
		t.Fatalf("alice: %q, %v; want the message as published", got, err)
	}
	if err := b.ExpectNothing(300 * time.Millisecond); err != nil {
		t.Fatalf("bob got content type 7: %v", err)
	}
	// Bad messages are dropped and logged; the bus goes on.
	publish("not json")
	publish(`{"no_field": 1}`)
	publish(`[1, 2]`)
	nine := `{"content_type_id": "9", "object": "x"}`
	publish(nine)
	for _, c := range []*canaltest.Communicator{a, b} {
		if got, err := c.ReceiveText(ctx); err != nil || got != nine {
			t.Fatalf("content type 9: %q, %v", got, err)
		}
	}
	if err := a.ExpectNothing(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// Logged, rate-limited to a line a second per kind: the two non-objects published
	// back to back give one line (two only if a second passed between them).
	logs := p.logs.String()
	if n := strings.Count(logs, "bus: message dropped"); n < 2 || n > 3 ||
		!strings.Contains(logs, "not a JSON object in UTF-8") || !strings.Contains(logs, "{content_type_id} is missing") {
		t.Errorf("%d drop lines, want one per kind\n%s", n, logs)
	}
	if strings.Contains(p.logs.String(), "not json") {
		t.Error("a dropped message's content reached the log")
	}
}

// waitReady waits until the bus is subscribed (Redis counts the subscriber).
func waitReady(t *testing.T, r *canaltest.Redis) { waitSubscribers(t, r, 1) }

// waitSubscribers waits until n processes subscribe to the bus.
func waitSubscribers(t *testing.T, r *canaltest.Redis, want int64) {
	t.Helper()
	client := r.Client(t)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		res, err := client.Do(context.Background(), client.B().PubsubNumsub().Channel("events").Build()).ToArray()
		if err == nil && len(res) == 2 {
			if n, _ := res[1].AsInt64(); n >= want {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the bus did not subscribe within 10 s")
}

// What client messages do: refused (1008), relayed to a group, forwarded to a
// worker channel whose Go receiver replies on reply_channel.
func TestServeReceive(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, fmt.Sprintf(chatConfig, r.URL(), "redis"))
	ctx := context.Background()

	t.Run("refuse", func(t *testing.T) {
		s := dialTicket(t, p.url("/ws/staff/"), issue(t, r, alice))
		if err := s.SendText(`{"hello": 1}`); err != nil {
			t.Fatal(err)
		}
		if code, reason, err := s.ExpectClose(ctx); err != nil || code != canal.ClosePolicyViolation || reason != "this socket takes no messages" {
			t.Fatalf("close %d %q, %v", code, reason, err)
		}
	})

	t.Run("group", func(t *testing.T) {
		a := dialTicket(t, p.url("/ws/chat/room1/"), issue(t, r, alice))
		b := dialTicket(t, p.url("/ws/chat/room1/"), issue(t, r, bob))
		other := dialTicket(t, p.url("/ws/chat/room2/"), issue(t, r, bob))
		// "type" and "sender" are the server's; "__asgi_channel__" is dropped.
		if err := a.SendText(`{"message": "hi", "type": "forged", "sender": "forged", "__asgi_channel__": "x", "n": 12345678901}`); err != nil {
			t.Fatal(err)
		}
		want := `{"message":"hi","n":12345678901,"sender":{"id":"1","username":"alice"},"type":"chat.message"}`
		for _, c := range []*canaltest.Communicator{a, b} {
			if got, err := c.ReceiveText(ctx); err != nil || got != want {
				t.Fatalf("relayed: %q, %v; want %s", got, err, want)
			}
		}
		if err := other.ExpectNothing(200 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := a.SendText(`[1, 2]`); err != nil {
			t.Fatal(err)
		}
		if code, _, err := a.ExpectClose(ctx); err != nil || code != canal.CloseInvalidPayload {
			t.Fatalf("a JSON array: close %d, %v; want 1007", code, err)
		}
	})

	t.Run("worker", func(t *testing.T) {
		worker, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{r.URL()}})
		if err != nil {
			t.Fatal(err)
		}
		defer worker.Close(context.Background())
		s := dialTicket(t, p.url("/ws/jobs/17/"), issue(t, r, bob))
		if err := s.SendText(`{"size": 3}`); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		m, err := worker.Receive(rctx, "jobs")
		if err != nil {
			t.Fatal(err)
		}
		reply := m.String("reply_channel")
		sender, _ := m["sender"].(map[string]any)
		route, _ := m["route"].(map[string]any)
		if m.Type() != "job.submit" || !strings.HasPrefix(reply, "specific.") || fmt.Sprint(m["size"]) != "3" ||
			sender["username"] != "bob" || fmt.Sprint(route["job"]) != "17" {
			t.Fatalf("worker got %v", m)
		}
		if err := worker.Send(ctx, reply, canal.Message{"type": "websocket.send", "text": `{"done": true}`}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.ReceiveText(ctx); err != nil || got != `{"done": true}` {
			t.Fatalf("reply: %q, %v", got, err)
		}
	})
}

// require: a user whose claims fail a predicate gets 403 before the upgrade; no
// ticket 403; an unknown path 404.
func TestServeRefusals(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, fmt.Sprintf(chatConfig, r.URL(), "redis"))
	ctx := context.Background()
	status := func(url string, subprotocols ...string) int {
		c, err := canaltest.Dial(ctx, url, canaltest.DialOptions{Subprotocols: subprotocols})
		var he *canaltest.HandshakeError
		if errors.As(err, &he) {
			return he.Status
		}
		if err != nil {
			t.Fatal(err)
		}
		c.Abort()
		return http.StatusSwitchingProtocols
	}
	tb := issue(t, r, bob)
	if got := status(p.url("/ws/staff/"), "canal.ticket", "canal.ticket."+tb); got != http.StatusForbidden {
		t.Errorf("bob on the staff route: %d, want 403", got)
	}
	if got := status(p.url("/ws/staff/"), "canal.ticket", "canal.ticket."+tb); got != http.StatusForbidden {
		t.Errorf("a used ticket: %d, want 403", got)
	}
	if got := status(p.url("/ws/staff/"), "canal.ticket", "canal.ticket."+issue(t, r, alice)); got != http.StatusSwitchingProtocols {
		t.Errorf("alice on the staff route: %d, want 101", got)
	}
	noClaim := canal.User{ID: "3", Username: "carol"} // no content_types claim: refused, not put in "ct_"
	if got := status(p.url("/ws/chat/x/"), "canal.ticket", "canal.ticket."+issue(t, r, noClaim)); got != http.StatusForbidden {
		t.Errorf("missing claim: %d, want 403", got)
	}
	if got := status(p.url("/ws/nothing/")); got != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", got)
	}
	if strings.Contains(p.logs.String(), tb) {
		t.Error("a ticket reached the log")
	}
}

// SIGTERM: open sockets close with 1001 after their groups are left, the process
// exits 0.
func TestServeSIGTERM(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, fmt.Sprintf(chatConfig, r.URL(), "redis"))
	s := dialTicket(t, p.url("/ws/chat/lobby/"), issue(t, r, alice))
	client := r.Client(t)
	ctx := context.Background()
	members := func() int64 {
		n, err := client.Do(ctx, client.B().Zcard().Key("asgi:group:chat_lobby").Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := members(); n != 1 {
		t.Fatalf("%d members before, want 1", n)
	}
	errc := make(chan error, 1)
	go func() { errc <- p.stop(t) }()
	if code, _, err := s.ExpectClose(ctx); err != nil || code != canal.CloseGoingAway {
		t.Fatalf("close %d, %v; want 1001", code, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("exit: %v\n%s", err, p.logs)
	}
	if n := members(); n != 0 {
		t.Errorf("%d members after shutdown, want 0 (the group is left)", n)
	}
	if !strings.Contains(p.logs.String(), `"msg":"canal: stopped"`) {
		t.Errorf("no stop line\n%s", p.logs)
	}
}

func execBinary(args ...string) error {
	return exec.Command(binary, args...).Run()
}

// The admin listener's health checks, and a drain that runs out of shutdown_timeout:
// the sockets are dropped and the process still exits 0.
func TestServeAdminAndDrainTimeout(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, "shutdown_timeout = \"1ns\"\n"+fmt.Sprintf(chatConfig, r.URL(), "redis"), "CANAL_ADMIN_LISTEN=127.0.0.1:0")
	if p.admin == "" {
		t.Fatalf("no admin listener\n%s", p.logs)
	}
	waitReady(t, r)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + p.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s: %d %q", path, code, body)
		}
	}
	s := dialTicket(t, p.url("/ws/chat/lobby/"), issue(t, r, alice))
	// The observer hears of the handshake once the 101 is out: wait for it.
	code, body := get("/metrics")
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(body, "canal_connections{") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		code, body = get("/metrics")
	}
	for _, want := range []string{
		`canal_handshakes_total{outcome="accepted",route="ws/chat/<slug:room>/",status="101",transport="websocket"} 1`,
		`canal_connections{route="ws/chat/<slug:room>/",transport="websocket"} 1`,
		"canal_layer_messages_total", "canal_session_workers_limit 256", "go_goroutines",
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics: %d, no %s", code, want)
		}
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.logs)
	}
	if _, err := s.Receive(context.Background()); err == nil {
		t.Error("the socket outlived the server")
	}
	if !strings.Contains(p.logs.String(), "shutdown timed out") {
		t.Errorf("no timeout line\n%s", p.logs)
	}
}

// Receive mode "worker" with Django's own worker: `manage.py runworker jobs` (Debian's
// Channels and channels_redis) runs a SyncConsumer that reads the forwarded client
// message and replies on reply_channel with websocket.send.
func TestServeRunworker(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, fmt.Sprintf(chatConfig, r.URL(), "redis"))
	startRunworker(t, r.URL())
	s := dialTicket(t, p.url("/ws/jobs/17/"), issue(t, r, bob))
	if err := s.SendText(`{"size": 21}`); err != nil {
		t.Fatal(err)
	}
	want := `{"by": "bob", "double": 42, "job": 17, "types": ["int", "int"]}`
	if got, err := s.ReceiveText(context.Background()); err != nil || got != want {
		t.Fatalf("worker's reply: %q, %v; want %s", got, err, want)
	}
}

// startRunworker runs `python -m django runworker jobs` on testdata/workersite until
// the test ends, and waits until it listens.
func startRunworker(t *testing.T, redisURL string) {
	t.Helper()
	dir, err := filepath.Abs("testdata/workersite")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", "-m", "django", "runworker", "jobs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DJANGO_SETTINGS_MODULE=workersite.settings", "PYTHONPATH="+dir,
		"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "REDIS_URL="+redisURL)
	out := &logLines{}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			out.add(sc.Text())
			if !once && strings.Contains(sc.Text(), "Running worker for channels") {
				once = true
				close(ready)
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-scanned
		_ = cmd.Wait()
	})
	select {
	case <-ready:
	case <-scanned:
		t.Fatalf("runworker exited:\n%s", out)
	case <-time.After(30 * time.Second):
		t.Fatalf("runworker not ready in 30 s:\n%s", out)
	}
}

// Token kinds: a django.core.signing token and a simplejwt access token minted by
// Django's own code, on one route that takes both (tried in turn), by query string,
// bearer subprotocol and first message; a bad token is refused.
func TestServeTokens(t *testing.T) {
	const key = "token-test-secret-key-long-enough-for-hs256"
	r := canaltest.StartRedis(t)
	p := startCanal(t, fmt.Sprintf(`
[redis]
url = %q
[auth.signed]
salt = "canal.socket"
max_age = "1m"
[auth.jwt]
[[route]]
path = "ws/staff/"
require = ["user.is_staff"]
groups = ["user_{user.id}"]
events = ["notify"]
`, r.URL()), "CANAL_SIGNING_KEY="+key, "CANAL_JWT_SIGNING_KEY="+key)
	mint := func(kind string) string {
		out, err := exec.Command("/usr/bin/python3", "testdata/mint.py", kind, key).Output()
		if err != nil {
			t.Fatalf("mint %s: %v", kind, err)
		}
		return strings.TrimSpace(string(out))
	}
	signed, jwt := mint("signed"), mint("jwt")
	ctx := context.Background()
	worker, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{r.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close(context.Background())
	check := func(what string, c *canaltest.Communicator, user string) {
		t.Helper()
		if err := worker.GroupSend(ctx, "user_"+user, canal.Message{"type": "notify", "to": user}); err != nil {
			t.Fatal(err)
		}
		if got, err := c.ReceiveText(ctx); err != nil || got != `{"to":"`+user+`","type":"notify"}` {
			t.Fatalf("%s: %q, %v", what, got, err)
		}
	}
	q, err := canaltest.Dial(ctx, p.url("/ws/staff/?token="+url.QueryEscape(signed)), canaltest.DialOptions{})
	if err != nil {
		t.Fatalf("signed by query: %v", err)
	}
	defer q.Abort()
	check("signed token by query", q, "5")
	sp, err := canaltest.Dial(ctx, p.url("/ws/staff/"), canaltest.DialOptions{Subprotocols: []string{"canal.token", "canal.token." + jwt}})
	if err != nil {
		t.Fatalf("jwt by subprotocol: %v", err)
	}
	defer sp.Abort()
	check("jwt by subprotocol", sp, "6")
	fm, err := canaltest.Dial(ctx, p.url("/ws/staff/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Abort()
	if err := fm.SendText(signed); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, r, "user_5", 2) // the first message is checked, then the group joined
	check("signed token by first message", fm, "5")

	_, err = canaltest.Dial(ctx, p.url("/ws/staff/?token="+url.QueryEscape(signed+"x")), canaltest.DialOptions{})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Errorf("a tampered token: %v, want 403", err)
	}
	if logs := p.logs.String(); strings.Contains(logs, signed) || strings.Contains(logs, jwt[40:]) {
		t.Error("a token reached the log")
	}
}

// waitMembers waits until a core-layer group has n members.
func waitMembers(t *testing.T, r *canaltest.Redis, group string, n int64) {
	t.Helper()
	client := r.Client(t)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got, err := client.Do(context.Background(), client.B().Zcard().Key("asgi:group:"+group).Build()).AsInt64()
		if err == nil && got == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("group %s did not reach %d members in 10 s", group, n)
}

// [auth.django]: kinds checked by Django itself at django_canal's /auth/ (the repository's
// test site, with Debian's DRF): a DRF token by subprotocol, a django-sesame-shaped
// token by first message; an inactive user's token is refused.
func TestServeDjangoKinds(t *testing.T) {
	const secret = "django-kinds-secret-django-kinds-secret"
	r := canaltest.StartRedis(t)
	site := canaltest.StartDjangoTests(t, secret)
	alice, idle := site.Users["alice"], site.Users["idle"]
	if alice["drf"] == "" {
		t.Fatal("the test site has no DRF token: Debian's python3-djangorestframework is missing")
	}
	p := startCanal(t, fmt.Sprintf(`
[redis]
url = %q
[auth.django]
url = %q
kinds = ["drf", "sesame"]
cache = "10s"
[[route]]
path = "ws/me/"
groups = ["user_{user.id}"]
events = ["notify"]
`, r.URL(), site.URL+"/auth/"), "CANAL_SESSION_TOKEN="+secret)
	ctx := context.Background()
	worker, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{r.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close(context.Background())

	byDRF, err := canaltest.Dial(ctx, p.url("/ws/me/"), canaltest.DialOptions{Subprotocols: []string{"canal.token", "canal.token." + alice["drf"]}})
	if err != nil {
		t.Fatalf("DRF token: %v\n%s", err, p.logs)
	}
	defer byDRF.Abort()
	bySesame, err := canaltest.Dial(ctx, p.url("/ws/me/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bySesame.Abort()
	if err := bySesame.SendText(alice["sesame"]); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, r, "user_"+alice["id"], 2)
	if err := worker.GroupSend(ctx, "user_"+alice["id"], canal.Message{"type": "notify", "n": 1}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*canaltest.Communicator{byDRF, bySesame} {
		if got, err := c.ReceiveText(ctx); err != nil || got != `{"n":1,"type":"notify"}` {
			t.Fatalf("notify: %q, %v", got, err)
		}
	}
	_, err = canaltest.Dial(ctx, p.url("/ws/me/"), canaltest.DialOptions{Subprotocols: []string{"canal.token", "canal.token." + idle["drf"]}})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Errorf("an inactive user's DRF token: %v, want 403", err)
	}
	if logs := p.logs.String(); strings.Contains(logs, alice["drf"]) || strings.Contains(logs, secret) {
		t.Error("a credential reached the log")
	}
}

// A Redis that cannot be reached at start: exit 1 with a message that names the
// Redis without its password.
func TestServeRedisDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "canal.toml")
	doc := "[redis]\nurl = \"redis://:hunter2@127.0.0.1:1/0\"\n[auth.ticket]\n[[route]]\npath = \"ws/\"\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "-config", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "127.0.0.1:1") {
		t.Errorf("output: %s", out)
	}
}

// A claims refresh (consumer.RefreshUser here; django_canal.realtime.refresh_user from
// Django) moves an open socket between the groups its templates name, and closes it
// with 4403 when the route's rules no longer hold: no reconnect.
func TestServeRefresh(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, fmt.Sprintf(chatConfig, r.URL(), "redis"))
	ctx := context.Background()
	django, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{r.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer django.Close(context.Background())
	chat := dialTicket(t, p.url("/ws/chat/x/"), issue(t, r, bob)) // content types [9]
	staff := dialTicket(t, p.url("/ws/staff/"), issue(t, r, alice))
	send := func(group, text string) {
		t.Helper()
		if err := django.GroupSend(ctx, group, canal.Message{"type": "notify", "text": text}); err != nil {
			t.Fatal(err)
		}
	}
	send("ct_7", "before")
	if err := chat.ExpectNothing(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	bob2 := canal.User{ID: bob.ID, Username: bob.Username, Attrs: map[string]any{"content_types": []any{7}}}
	if err := consumer.RefreshUser(ctx, django, bob2); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, r, "ct_7", 1)
	waitMembers(t, r, "ct_9", 0)
	send("ct_9", "old")
	send("ct_7", "new")
	if got, err := chat.ReceiveText(ctx); err != nil || got != `{"text":"new","type":"notify"}` {
		t.Fatalf("after the refresh: %q, %v", got, err)
	}
	alice2 := canal.User{ID: alice.ID, Username: alice.Username, Attrs: map[string]any{"is_staff": false}}
	if err := consumer.RefreshUser(ctx, django, alice2); err != nil {
		t.Fatal(err)
	}
	if code, _, err := staff.ExpectClose(ctx); err != nil || code != canal.CloseForbidden {
		t.Fatalf("no longer staff: close %d, %v; want 4403", code, err)
	}
}

// The bus survives a Redis restart: it subscribes again, and messages published
// afterwards reach the sockets that stayed open.
func TestServeBusRedisRestart(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, fmt.Sprintf(`
[redis]
url = %q
[layer]
backend = "memory"
[[bus]]
channel = "events"
group = "all"
[[route]]
path = "ws/"
anonymous = true
groups = ["all"]
`, r.URL()))
	c, err := canaltest.Dial(context.Background(), p.url("/ws/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	waitReady(t, r)
	r.Restart()
	waitReady(t, r)
	client := r.Client(t)
	if err := client.Do(context.Background(), client.B().Publish().Channel("events").Message(`{"after":"restart"}`).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReceiveText(context.Background()); err != nil || got != `{"after":"restart"}` {
		t.Fatalf("after the restart: %q, %v\n%s", got, err, p.logs)
	}
}

// server.event_streams: the same route serves an EventSource (ticket in the query
// string), which gets group_send events and bus messages like a socket.
func TestServeEventStream(t *testing.T) {
	r := canaltest.StartRedis(t)
	p := startCanal(t, "[server]\nevent_streams = true\n"+fmt.Sprintf(chatConfig, r.URL(), "redis"))
	ctx := context.Background()
	es, err := canaltest.DialEvents(ctx, "http://"+p.addr+"/ws/chat/lobby/?ticket="+issue(t, r, alice), canaltest.DialOptions{})
	if err != nil {
		t.Fatalf("event stream: %v\n%s", err, p.logs)
	}
	defer es.Close()
	waitMembers(t, r, "chat_lobby", 1)
	groupSend(t, "core", r.URL(), "chat_lobby", map[string]any{"type": "chat.message", "message": "to a stream"})
	if ev, err := es.Next(ctx); err != nil || ev.Data != `{"message":"to a stream","type":"chat.message"}` {
		t.Fatalf("group_send: %+v, %v", ev, err)
	}
	waitReady(t, r)
	client := r.Client(t)
	if err := client.Do(ctx, client.B().Publish().Channel("events").Message(`{"content_type_id": 7}`).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if ev, err := es.Next(ctx); err != nil || ev.Data != `{"content_type_id": 7}` {
		t.Fatalf("bus: %+v, %v", ev, err)
	}
}
