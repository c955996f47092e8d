package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/ticket"
)

// binary is the canal command, built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "canal-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "canal")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreCurrent()); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// proc is a running canal binary.
type proc struct {
	cmd   *exec.Cmd
	addr  string // the socket listener, from the "listening" log line
	admin string // the admin listener, when configured
	logs  *logLines
	done  chan error
}

// logLines collects the process's JSON log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startCanal writes config to a file and runs `canal serve` on it with env (plus
// JSON logs), waiting for its listener. The process is killed at cleanup if still
// running.
func startCanal(t *testing.T, config string, env ...string) *proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "canal.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "-config", path)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CANAL_LOG_FORMAT=json", "CANAL_LISTEN=127.0.0.1:0"}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: &logLines{}, done: make(chan error, 1)}
	addr := make(chan string, 1)
	admin := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.add(line)
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil {
				switch rec.Msg {
				case "canal: listening":
					addr <- rec.Addr
				case "canal: admin listening":
					admin <- rec.Addr
				}
			}
		}
	}()
	go func() {
		<-scanned
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-scanned
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case p.addr = <-addr:
		select {
		case p.admin = <-admin:
		default:
		}
	case err := <-p.done:
		p.done <- err
		t.Fatalf("canal exited: %v\n%s", err, p.logs)
	case <-time.After(20 * time.Second):
		t.Fatalf("canal did not listen in 20 s\n%s", p.logs)
	}
	return p
}

func (p *proc) url(path string) string { return "ws://" + p.addr + path }

// stop sends SIGTERM and waits for the exit status.
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("canal did not stop within 30 s of SIGTERM\n%s", p.logs)
	}
	return nil
}

// issue writes a ticket for u to Redis, as Django's /ticket/ view does.
func issue(t *testing.T, r *canaltest.Redis, u canal.User) string {
	t.Helper()
	store, err := ticket.NewRedis(r.Client(t), ticket.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tkt, err := store.Issue(context.Background(), u, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return tkt
}

// dialTicket opens a socket with a ticket in the subprotocol, as a browser does.
func dialTicket(t *testing.T, url, tkt string) *canaltest.Communicator {
	t.Helper()
	c, err := canaltest.Dial(context.Background(), url, canaltest.DialOptions{Subprotocols: []string{"canal.ticket", "canal.ticket." + tkt}})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(c.Abort)
	return c
}

// groupSend runs channels_redis' group_send in Debian's Python, as Django would.
func groupSend(t *testing.T, backend, redisURL, group string, msg map[string]any) {
	t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/group_send.py", backend, redisURL, "asgi", group, string(b))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("group_send.py: %v\n%s", err, out.String())
	}
}
