package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/canal-rt/canal/canaltest"
)

// childEnv makes the test binary a Canal process of the example: "<redis URL> <origin>".
const childEnv = "CANAL_RECOVERY_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		redisURL, origin, _ := strings.Cut(v, " ")
		if err := run("127.0.0.1:0", config{RedisURL: redisURL, Origins: []string{origin}}, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}

// child is one Canal process of the example: this test binary re-executed.
type child struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startChild starts a Canal process on a free port and waits until it listens.
func startChild(t *testing.T, redisURL, origin string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+redisURL+" "+origin)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(c.kill)
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		addr, ok := strings.CutPrefix(strings.TrimSpace(l), "listening ")
		if !ok {
			t.Fatalf("child printed %q", l)
		}
		c.Addr = addr
	case <-time.After(20 * time.Second):
		t.Fatal("child did not start listening within 20s")
	}
	return c
}

// kill ends the process with SIGKILL, as a crash or an OOM kill does, and reaps it.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// proxy is the load balancer in front of the Canal processes: the page always
// connects to it, and the test decides where its connections go.
type proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	target  string // "" refuses (closes) new connections
	blockWS bool   // answer WebSocket upgrades 403, as some corporate proxies do
	conns   map[net.Conn]struct{}
}

// blockWebSockets makes the balancer refuse WebSocket upgrades from now on.
func (p *proxy) blockWebSockets() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blockWS = true
}

// refused reports whether the request starting head is a WebSocket upgrade the
// balancer refuses.
func (p *proxy) refused(head []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blockWS && strings.Contains(strings.ToLower(string(head)), "upgrade: websocket")
}

func newProxy(t *testing.T) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.route("", true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

// route sends new connections to target; cut also drops the open ones (a network
// drop, or a balancer moving clients).
func (p *proxy) route(target string, cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		if target == "" {
			down.Close()
			continue
		}
		// The request's head, to refuse upgrades (one read holds it on loopback).
		head := make([]byte, 8192)
		_ = down.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := down.Read(head)
		_ = down.SetReadDeadline(time.Time{})
		if err != nil || p.refused(head[:n]) {
			_, _ = down.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			down.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err == nil {
			_, err = up.Write(head[:n])
		}
		if err != nil {
			down.Close()
			if up != nil {
				up.Close()
			}
			continue
		}
		p.mu.Lock()
		p.conns[down], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Add(2)
		go pipe(up, down)
		go pipe(down, up)
	}
}

// site is the example's Django project, served by runserver.
type site struct {
	*canaltest.Django
	opts canaltest.DjangoOptions
}

func startSite(t *testing.T, redisURL, canalURL string) *site {
	t.Helper()
	dir, err := filepath.Abs("site")
	if err != nil {
		t.Fatal(err)
	}
	python, err := filepath.Abs(filepath.Join("..", "..", "python"))
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	opts := canaltest.DjangoOptions{
		Dir:      dir,
		Settings: "feedsite.settings",
		Env: map[string]string{
			"PYTHONPATH":        dir + string(os.PathListSeparator) + python,
			"FEED_DB":           filepath.Join(t.TempDir(), "db.sqlite3"),
			"REDIS_URL":         redisURL,
			"CANAL_URL":         canalURL,
			"FEED_DEMO_LOGIN":   "1",
			"DJANGO_SECRET_KEY": hex.EncodeToString(secret),
		},
	}
	canaltest.DjangoCommand(t, opts, "django", "migrate", "--noinput")
	return &site{Django: canaltest.StartDjango(t, opts), opts: opts}
}

// publish runs Django's publisher (feedsite.publish) in the background: count items
// to group at rate a second. The result arrives on the channel when it exits.
func (s *site) publish(ctx context.Context, group string, count int, rate float64) <-chan error {
	done := make(chan error, 1)
	cmd := exec.CommandContext(ctx, canaltest.DebianPython, "-m", "feedsite.publish", group, fmt.Sprint(count), fmt.Sprint(rate))
	cmd.Dir = s.opts.Dir
	cmd.Env = append(os.Environ(), "DJANGO_SETTINGS_MODULE="+s.opts.Settings, "PYTHONDONTWRITEBYTECODE=1")
	for k, v := range s.opts.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.WaitDelay = 5 * time.Second
	go func() {
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("publisher: %w\n%s", err, out)
		} else if n := strings.Count(string(out), "\n"); n != count {
			err = fmt.Errorf("publisher printed %d positions, want %d", n, count)
		}
		done <- err
	}()
	return done
}
