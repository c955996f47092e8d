package consumer_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/internal/redisconn"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/presence"
	"github.com/canal-rt/canal/server"
)

// The two-process tests re-run this test binary as Canal servers (childEnv names the
// Redis), each with its own channel layer and presence store on one real Redis, and
// drive them from this process and from Django (testdata/django_users.py).
const (
	childEnv   = "CANAL_TEST_USERS_CHILD"
	pythonBin  = "/usr/bin/python3"
	liveness   = time.Second // the children's presence and layer liveness
	childLimit = 2 * time.Minute
)

// runChild serves the member consumer (room "room", presence, user groups) until
// stdin closes (a graceful stop) or the process is killed. It prints its address.
func runChild(redisURL string) int {
	ctx, cancel := context.WithTimeout(context.Background(), childLimit)
	defer cancel()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 1 }
	layer, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{redisURL}, Liveness: liveness, Logger: quiet})
	if err != nil {
		return fail(err)
	}
	defer layer.Close(context.Background())
	client, _, err := redisconn.DialURL(ctx, redisURL, nil)
	if err != nil {
		return fail(err)
	}
	defer client.Close()
	store, err := presence.NewRedis(ctx, client, presence.RedisOptions{Liveness: liveness, Logger: quiet})
	if err != nil {
		return fail(err)
	}
	defer store.Close(context.Background())
	h, err := consumer.New(func() *member { return &member{} }, consumer.Options[*member]{
		Layer: layer, Groups: []string{"room"}, Presence: store, PresenceEvents: true, Logger: quiet,
	})
	if err != nil {
		return fail(err)
	}
	srv, err := server.New(asUser(h), server.Options{Logger: quiet, CloseTimeout: 500 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	go func() { _ = app.Listener(srv.Listener(ln)) }()
	fmt.Println(ln.Addr().String())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	go func() { _, _ = bufio.NewReader(os.Stdin).ReadString('\n'); stop <- syscall.SIGTERM }()
	select {
	case <-stop:
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx) // the consumers leave their groups and presence
	_ = app.ShutdownWithContext(sctx)
	return 0
}

// child is one server process.
type child struct {
	cmd   *exec.Cmd
	stdin interface{ Close() error }
	addr  string
	done  chan error
}

func startChild(t *testing.T, redisURL string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+redisURL)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	t.Cleanup(func() { c.kill() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = bufio.NewReader(out).WriteTo(discard{})
		c.done <- cmd.Wait()
	}()
	select {
	case c.addr = <-line:
	case <-time.After(20 * time.Second):
		t.Fatal("child server did not start")
	}
	if c.addr == "" {
		t.Fatal("child server failed (see its stderr)")
	}
	return c
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// stop ends the child gracefully and waits for it.
func (c *child) stop(t *testing.T) {
	t.Helper()
	_ = c.stdin.Close()
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("child exited: %v", err)
		}
		c.done <- nil
	case <-time.After(15 * time.Second):
		t.Error("child did not stop")
	}
}

// kill sends SIGKILL, as a crash, and reaps the process.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	select {
	case <-c.done:
		c.done <- nil
	case <-time.After(10 * time.Second):
	}
}

func (c *child) dial(t *testing.T, query string) *canaltest.Communicator {
	t.Helper()
	conn, err := canaltest.Dial(ctxT(t), "ws://"+c.addr+"/?"+query, canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Abort)
	// The first frame is the connection's own presence.join (or none, for a second
	// tab); a round trip proves the handshake and its group joins are done.
	if err := conn.SendText("{}"); err != nil {
		t.Fatal(err)
	}
	for {
		s, err := conn.ReceiveText(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(s, "user:") {
			return conn
		}
	}
}

// django runs django_canal.realtime against the Redis.
func django(t *testing.T, redisURL string, args ...string) string {
	t.Helper()
	if _, err := os.Stat(pythonBin); err != nil {
		t.Fatalf("%s not found: install Debian's python3-django, python3-django-channels and python3-channels-redis (scripts/test.sh does)", pythonBin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonBin, append([]string{filepath.Join("testdata", "django_users.py"), redisURL}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join("..", "python"))
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("django %v: %v\n%s", args, err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// who renders a presence list as sorted "id×connections" items.
func who(es []presence.Entry) string {
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%s×%d", e.ID, e.Connections))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func djangoWho(t *testing.T, redisURL, group string) string {
	t.Helper()
	var es []presence.Entry
	var raw []struct {
		ID          string `json:"id"`
		Connections int    `json:"connections"`
	}
	if err := json.Unmarshal([]byte(django(t, redisURL, "presence", group)), &raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw {
		es = append(es, presence.Entry{ID: r.ID, Connections: r.Connections})
	}
	return who(es)
}

func waitWho(t *testing.T, store *presence.Redis, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		es, err := store.Presence(ctxT(t), "room")
		if err != nil {
			t.Fatal(err)
		}
		if who(es) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence %q, want %q within %v", who(es), want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readerStore(t *testing.T, srv *canaltest.Redis) *presence.Redis {
	t.Helper()
	store, err := presence.NewRedis(ctxT(t), srv.Client(t), presence.RedisOptions{Liveness: liveness})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	return store
}

// Disconnect and refresh sent from Django reach a user's sockets in both processes;
// presence is the same from Go and from Django; nothing is left in Redis after
// every socket leaves and the processes stop.
func TestTwoProcessesDisconnectRefreshPresence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two server processes and Django")
	}
	srv := canaltest.StartRedis(t)
	url := srv.URL()
	a, b := startChild(t, url), startChild(t, url)
	aliceA := a.dial(t, "user=42&name=alice")
	aliceB := b.dial(t, "user=42&name=alice")
	bobA := a.dial(t, "user=7&name=bob")
	carolB := b.dial(t, "user=9&name=carol")
	store := readerStore(t, srv)
	waitWho(t, store, "42×2 7×1 9×1", 5*time.Second)
	if got := djangoWho(t, url, "room"); got != "42×2 7×1 9×1" {
		t.Errorf("Django's presence %q", got)
	}

	// A claims refresh from Django: both of alice's sockets, in both processes,
	// change user at once and tell the consumer.
	django(t, url, "refresh", "42", "alice", "1")
	for _, c := range []*canaltest.Communicator{aliceA, aliceB} {
		for {
			s, err := c.ReceiveText(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if s == "changed:staff=false->true" {
				break
			}
		}
		_ = c.SendText("{}")
		expectText(t, c, "user:42:alice:staff=true")
	}

	// Disconnect from Django closes both, with the code and reason.
	start := time.Now()
	django(t, url, "disconnect", "42", "4403", "logged out")
	for _, c := range []*canaltest.Communicator{aliceA, aliceB} {
		code, reason, err := c.ExpectClose(ctxT(t))
		if err != nil || code != 4403 || reason != "logged out" {
			t.Errorf("close %d %q %v, want 4403 \"logged out\"", code, reason, err)
		}
	}
	t.Logf("Django disconnect to both closes: %v (python start-up included)", time.Since(start))
	waitWho(t, store, "7×1 9×1", 5*time.Second)
	if got := djangoWho(t, url, "room"); got != "7×1 9×1" {
		t.Errorf("Django's presence after the disconnect %q", got)
	}

	// Everyone leaves; the servers stop: no key of the layer or presence is left.
	_ = bobA.Close(1000)
	_ = carolB.Close(1000)
	waitWho(t, store, "", 5*time.Second)
	a.stop(t)
	b.stop(t)
	_ = store.Close(ctxT(t))
	c := srv.Client(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		keys, err := c.Do(ctxT(t), c.B().Keys().Pattern("*").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys left in Redis: %q", keys)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// After kill -9 of one process, its users leave presence within the liveness window,
// as seen from Go and from Django; the survivor's users stay.
func TestTwoProcessesPresenceAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two server processes and Django")
	}
	srv := canaltest.StartRedis(t)
	url := srv.URL()
	a, b := startChild(t, url), startChild(t, url)
	a.dial(t, "user=42&name=alice")
	b.dial(t, "user=42&name=alice")
	a.dial(t, "user=7&name=bob")
	b.dial(t, "user=9&name=carol")
	store := readerStore(t, srv)
	waitWho(t, store, "42×2 7×1 9×1", 5*time.Second)

	killed := time.Now()
	b.kill()
	// Liveness plus a refresh period of margin for a loaded machine.
	waitWho(t, store, "42×1 7×1", liveness+liveness/3+2*time.Second)
	t.Logf("crashed process's entries gone after %v (liveness %v)", time.Since(killed), liveness)
	if got := djangoWho(t, url, "room"); got != "42×1 7×1" {
		t.Errorf("Django's presence after kill -9 %q", got)
	}
	// The reader deleted the dead entries and their counts: the hash holds the
	// survivor's two connections and two user counts only.
	c := srv.Client(t)
	n, err := c.Do(ctxT(t), c.B().Hlen().Key(store.Key("room")).Build()).AsInt64()
	if err != nil || n != 4 {
		t.Errorf("HLEN %s = %d, %v; want 4", store.Key("room"), n, err)
	}
	a.stop(t)
}
