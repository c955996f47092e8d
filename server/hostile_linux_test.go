package server_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/server"
)

// helperEnv makes TestHelperServer a server under a lowered file limit:
// "NOFILE,MAXCONNECTIONS".
const helperEnv = "CANAL_TEST_HELPER_SERVER"

// TestHelperServer is the child process of the file-limit tests, not a test of its
// own: without helperEnv it returns at once (os/exec's TestHelperProcess idiom). In the
// child it lowers RLIMIT_NOFILE, serves an echo handler through Listener, prints its
// address and runs until its stdin closes; goleak then checks its shutdown.
func TestHelperServer(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		return
	}
	var nofile, maxConns int
	if _, err := fmt.Sscanf(spec, "%d,%d", &nofile, &maxConns); err != nil {
		t.Fatalf("%s=%q: %v", helperEnv, spec, err)
	}
	lim := syscall.Rlimit{Cur: uint64(nofile), Max: uint64(nofile)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	s := canaltest.NewServer(t, newEchoHandler(), server.Options{
		MaxConnections: maxConns,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	fmt.Printf("ADDR %s\n", s.Addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// child is a TestHelperServer process.
type child struct {
	addr   string
	stdout canaltest.LogBuffer
	stderr canaltest.LogBuffer
	exited chan struct{}
	err    error // the exit status, after exited
}

func (c *child) alive() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// startChild runs TestHelperServer with the file limit nofile; it is stopped (stdin
// closed, killed after 15 s) when the test ends, and must have exited cleanly.
func startChild(t *testing.T, nofile, maxConns int) *child {
	t.Helper()
	c := &child{exited: make(chan struct{})}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServer$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d", helperEnv, nofile, maxConns))
	cmd.Stdout, cmd.Stderr = &c.stdout, &c.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-c.exited
			t.Errorf("the child did not stop within 15 s of its stdin closing")
		}
		if c.err != nil {
			t.Errorf("child: %v\nstdout:\n%s\nstderr (tail):\n%s", c.err, c.stdout.String(), tail(c.stderr.String(), 4000))
		}
	})
	addrLine := regexp.MustCompile(`(?m)^ADDR (\S+)$`)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addrLine.FindStringSubmatch(c.stdout.String()); m != nil {
			c.addr = m[1]
			return c
		}
		if !c.alive() {
			break
		}
	}
	t.Fatalf("the child never served\nstdout:\n%s\nstderr:\n%s", c.stdout.String(), c.stderr.String())
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// halfSent opens n connections that each send half a request and wait.
func halfSent(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /ws/ HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\n"); err != nil {
			t.Fatalf("write %d: %v", len(conns), err)
		}
	}
	return conns
}

// outcome is what became of a connection: "held" (open, waiting for the rest of its
// request), "503" (answered and closed) or "closed" (closed or reset unanswered).
func outcomes(conns []net.Conn, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	out := make([]string, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() { // concurrently: a read past the deadline would not even look
			defer wg.Done()
			_ = c.SetReadDeadline(deadline)
			got, err := io.ReadAll(c)
			var ne net.Error
			switch {
			case strings.HasPrefix(string(got), "HTTP/1.1 503 Service Unavailable\r\n") && strings.Contains(string(got), "\r\nConnection: close\r\n"):
				out[i] = "503"
			case len(got) == 0 && errors.As(err, &ne) && ne.Timeout():
				out[i] = "held"
			case len(got) == 0:
				out[i] = "closed"
			default:
				out[i] = fmt.Sprintf("unexpected %q", got)
			}
		}()
	}
	wg.Wait()
	return out
}

func count(out []string) map[string]int {
	m := map[string]int{}
	for _, o := range out {
		m[o]++
	}
	return m
}

// echoes checks that a socket still answers.
func echoes(t *testing.T, c *canaltest.Communicator, text string) {
	t.Helper()
	if err := c.SendText(text); err != nil {
		t.Fatalf("send: %v", err)
	}
	if got, err := c.ReceiveText(ctxT(t)); err != nil || got != text {
		t.Fatalf("echo: %q, %v; want %q", got, err, text)
	}
}

// freshSocket dials addr until a socket opens and echoes, for up to 5 s.
func freshSocket(t *testing.T, addr string) {
	t.Helper()
	var err error
	for range 50 {
		var c *canaltest.Communicator
		if c, err = canaltest.Dial(ctxT(t), "ws://"+addr+"/ws/", canaltest.DialOptions{}); err == nil {
			echoes(t, c, "fresh")
			c.Abort()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no fresh socket after the flood: %v", err)
}

// TestFileLimitFlood: a server whose connections outnumber its file descriptors
// (MaxConnections set above the limit, so accept itself fails with EMFILE) keeps
// running: established sockets keep working, excess connections are answered 503 or
// closed instead of waiting in the backlog, the failure is logged once per episode,
// and once the flood is gone a fresh socket opens. Before Listener, fasthttp took
// EMFILE as the end of the server and the program exited.
func TestFileLimitFlood(t *testing.T) {
	t.Parallel()
	const nofile = 128
	c := startChild(t, nofile, 100000)

	var sockets []*canaltest.Communicator
	for i := range 30 {
		ws, err := canaltest.Dial(ctxT(t), "ws://"+c.addr+"/ws/", canaltest.DialOptions{})
		if err != nil {
			t.Fatalf("socket %d, before the flood: %v", i, err)
		}
		t.Cleanup(ws.Abort)
		sockets = append(sockets, ws)
	}
	start := time.Now()
	flood := halfSent(t, c.addr, 2*nofile)
	// Sockets past the limit: refused or failed, never a crash.
	late := 0
	for range 20 {
		if ws, err := canaltest.Dial(ctxT(t), "ws://"+c.addr+"/ws/", canaltest.DialOptions{}); err == nil {
			late++
			ws.Abort()
		}
	}
	out := count(outcomes(flood, 1500*time.Millisecond))
	if !c.alive() {
		t.Fatalf("the server exited under the flood: %v\nstderr:\n%s", c.err, tail(c.stderr.String(), 4000))
	}
	t.Logf("flood of %d: %v; late sockets accepted: %d of 20", len(flood), out, late)
	if out["held"]+out["503"]+out["closed"] != len(flood) {
		t.Fatalf("unexpected answers: %v", out)
	}
	if out["held"] == 0 || out["held"] > nofile-len(sockets) || out["503"]+out["closed"] < len(flood)-nofile {
		t.Fatalf("outcomes %v: want some held, at most %d, and the rest refused", out, nofile-len(sockets))
	}
	for i, ws := range sockets {
		echoes(t, ws, fmt.Sprintf("during the flood %d", i))
	}
	logs := c.stderr.String()
	if strings.Contains(logs, "Permanent error") {
		t.Fatalf("fasthttp saw a permanent accept error:\n%s", tail(logs, 4000))
	}
	failed := regexp.MustCompile(`accept failed.*too many open files`).FindAllString(logs, -1)
	if max := int(time.Since(start)/time.Second) + 1; len(failed) == 0 || len(failed) > max {
		t.Fatalf("%d accept-failure lines in %v, want 1 to %d (one per episode, rate-limited):\n%s", len(failed), time.Since(start), max, tail(logs, 4000))
	}

	for _, f := range flood {
		_ = f.Close()
	}
	for _, ws := range sockets {
		ws.Abort()
	}
	freshSocket(t, c.addr)
	if !c.alive() {
		t.Fatal("the server exited after the flood")
	}
}

// TestDefaultMaxConnections: with the default limit (the file limit minus 512, at
// least 64) a flood of half-sent requests fills exactly that many slots, and every
// other connection gets a complete 503 until slots come free.
func TestDefaultMaxConnections(t *testing.T) {
	t.Parallel()
	const nofile, limit = 600, 600 - 512
	c := startChild(t, nofile, 0)

	flood := halfSent(t, c.addr, limit+12)
	outs := outcomes(flood, 1500*time.Millisecond)
	if out := count(outs); out["held"] != limit || out["503"] != 12 {
		t.Fatalf("outcomes %v: want %d held and 12 answered 503", out, limit)
	}
	_, err := canaltest.Dial(ctxT(t), "ws://"+c.addr+"/ws/", canaltest.DialOptions{})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != 503 {
		t.Fatalf("socket at the limit: %v, want HTTP 503", err)
	}
	if lines := regexp.MustCompile(`connection limit reached.*max_connections=88`).FindAllString(c.stderr.String(), -1); len(lines) == 0 || len(lines) > 3 {
		t.Fatalf("%d limit lines, want a few (rate-limited):\n%s", len(lines), tail(c.stderr.String(), 4000))
	}
	// Slots come back as held connections close.
	closed := 0
	for i, o := range outs {
		if o == "held" && closed < 10 {
			_ = flood[i].Close()
			closed++
		}
	}
	freshSocket(t, c.addr)
	if !c.alive() {
		t.Fatal("the server exited")
	}
}
