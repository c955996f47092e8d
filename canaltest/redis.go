package canaltest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Bounds on every wait, so a broken redis-server fails a test instead of hanging it.
const (
	redisReadyTimeout = 5 * time.Second  // from exec to answering INFO
	redisExitTimeout  = 10 * time.Second // from SIGKILL to Wait returning
	redisPortAttempts = 5                // fresh ports tried when another process wins one
	redisRebindWindow = 3 * time.Second  // Restart's patience for its old port
	redisLogTail      = 2048             // bytes of the server log quoted in errors
)

// errPortTaken reports that redis-server could not own its port: it failed to bind, or
// the port answered on behalf of another process. StartRedis tries another port.
var errPortTaken = errors.New("canaltest: port taken by another process")

// RedisOption configures StartRedis.
type RedisOption func(*redisConfig)

type redisConfig struct {
	args []string
}

// WithArgs appends command-line arguments to redis-server's, after the defaults, so they
// can override them: WithArgs("--cluster-enabled", "yes"), WithArgs("--rename-command",
// "GETDEL", "") to mimic an old server.
func WithArgs(extra ...string) RedisOption {
	return func(c *redisConfig) { c.args = append(c.args, extra...) }
}

// Redis is a private redis-server process listening on a loopback port, started by
// StartRedis and killed by the test's cleanup. It never persists data: a Kill followed
// by Restart gives an empty server on the same address.
//
// Concurrency: Addr, URL and Client are safe for concurrent use. Kill and Restart are
// serialized with each other and with the cleanup; they call t.Fatal on failure, so
// call them from the test's goroutine.
type Redis struct {
	t     testing.TB
	bin   string
	dir   string
	args  []string
	port  int // fixed once StartRedis returns
	addr  string
	mu    sync.Mutex
	proc  *redisProc // nil while killed
	count int        // starts so far, to name log files
}

// redisProc is one run of redis-server.
type redisProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when cmd.Wait returns
	err     error         // cmd.Wait's result; read it after done
}

// StartRedis starts a private redis-server on a free 127.0.0.1 port, with no
// persistence and a temporary directory of its own, and waits (at most 5 s) until it
// answers; it checks that the answer comes from its own process, not from another one
// that won a race for the port, and then retries on a fresh port.
// The test's cleanup kills it and waits for the process to exit.
//
// redis-server must be on PATH: a missing server fails the test rather than skipping
// it, so that CI cannot pass by silently testing nothing.
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("canaltest: redis-server not found on PATH: %v; install it (Debian/Ubuntu: apt-get install redis-server)", err)
	}
	r := &Redis{t: t, bin: bin, dir: t.TempDir(), args: cfg.args}
	// Registered after TempDir so that it runs first: the server dies before its directory.
	t.Cleanup(r.stop)

	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 1; ; attempt++ {
		// Ask the kernel for a free port and hand it over; another process may grab it
		// in between, which start detects and reports as errPortTaken.
		port, err := freePort()
		if err != nil {
			t.Fatalf("canaltest: find a free port: %v", err)
		}
		r.port, r.addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = r.startLocked()
		if err == nil {
			return r
		}
		if !errors.Is(err, errPortTaken) || attempt == redisPortAttempts {
			t.Fatalf("canaltest: start redis-server (attempt %d): %v", attempt, err)
		}
	}
}

// Addr returns the server's address, "127.0.0.1:port".
func (r *Redis) Addr() string { return r.addr }

// URL returns the server's address as a redis URL for database 0.
func (r *Redis) URL() string { return "redis://" + r.addr + "/0" }

// Kill sends SIGKILL to the server (and its process group) and waits for it to exit,
// to simulate a crash. Clients see connection errors until Restart. Killing a killed
// server does nothing.
func (r *Redis) Kill() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.killLocked(); err != nil {
		r.t.Fatal(err)
	}
}

// Restart kills the server if it is running and starts a new, empty one on the same
// port, then waits until it answers. Existing clients reconnect on their next command.
func (r *Redis) Restart() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.killLocked(); err != nil {
		r.t.Fatal(err)
	}
	// The old port is normally free at once (redis-server sets SO_REUSEADDR), but retry
	// briefly in case the kernel or a stray process holds it.
	deadline := time.Now().Add(redisRebindWindow)
	for {
		err := r.startLocked()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
			r.t.Fatalf("canaltest: restart redis-server on %s: %v", r.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client returns a rueidis client connected to the server, closed by the test's
// cleanup. Its defaults suit tests on loopback (short dial and I/O timeouts); opts may
// change any field of the option before the client is created.
func (r *Redis) Client(t testing.TB, opts ...func(*rueidis.ClientOption)) rueidis.Client {
	t.Helper()
	opt := rueidis.ClientOption{
		InitAddress:      []string{r.addr},
		Dialer:           net.Dialer{Timeout: 2 * time.Second},
		ConnWriteTimeout: 3 * time.Second,
	}
	for _, o := range opts {
		o(&opt)
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("canaltest: connect to redis-server at %s: %v", r.addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// pid returns the running server's process id, or 0 when killed.
func (r *Redis) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return 0
	}
	return r.proc.cmd.Process.Pid
}

// stop is the cleanup: like Kill, but reports instead of stopping the test.
func (r *Redis) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.killLocked(); err != nil {
		r.t.Error(err)
	}
}

func (r *Redis) killLocked() error {
	p := r.proc
	if p == nil {
		return nil
	}
	r.proc = nil
	return p.kill()
}

// startLocked runs redis-server on r.port and waits until it answers.
func (r *Redis) startLocked() error {
	r.count++
	logPath := filepath.Join(r.dir, fmt.Sprintf("redis-%d.log", r.count))
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("canaltest: create log: %w", err)
	}
	args := []string{
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(r.port),
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", r.dir,
	}
	cmd := exec.Command(r.bin, append(args, r.args...)...)
	cmd.Dir = r.dir
	// An *os.File, not a buffer: the child writes to it directly, so no copying
	// goroutine outlives the process and Wait returns as soon as it exits.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setProcessGroup(cmd)
	err = cmd.Start()
	logFile.Close() // the child holds its own descriptor
	if err != nil {
		return fmt.Errorf("canaltest: exec %s: %w", r.bin, err)
	}
	p := &redisProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(r.addr); err != nil {
		if kerr := p.kill(); kerr != nil {
			err = errors.Join(err, kerr)
		}
		return err
	}
	r.proc = p
	return nil
}

// waitReady polls addr until our own process answers INFO, it exits, or the bound passes.
func (p *redisProc) waitReady(addr string) error {
	deadline := time.Now().Add(redisReadyTimeout)
	backoff := 2 * time.Millisecond
	for {
		select {
		case <-p.done:
			log := p.logTail()
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("%w: %s", errPortTaken, addr)
			}
			return fmt.Errorf("canaltest: redis-server exited before answering (%v); log:\n%s", p.err, log)
		default:
		}
		pid, err := probe(addr)
		switch {
		case err == nil && pid == p.cmd.Process.Pid:
			return nil
		case err == nil && pid != 0:
			// Another server answered: ours lost the port race and is about to exit.
			return fmt.Errorf("%w: %s answered by pid %d", errPortTaken, addr, pid)
		case err == nil:
			// Answered without a usable INFO (renamed, or a password set through
			// WithArgs): trust it when our process is still alive a moment later, since
			// a redis-server that failed to bind exits at once.
			select {
			case <-p.done:
				continue // reported on the next iteration
			case <-time.After(50 * time.Millisecond):
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("canaltest: redis-server did not answer on %s within %v (last error: %v); log:\n%s",
				addr, redisReadyTimeout, err, p.logTail())
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// kill sends SIGKILL to the process group and waits for the process, bounded.
func (p *redisProc) kill() error {
	killGroup(p.cmd)
	select {
	case <-p.done:
		return nil
	case <-time.After(redisExitTimeout):
		return fmt.Errorf("canaltest: redis-server pid %d did not exit within %v of SIGKILL", p.cmd.Process.Pid, redisExitTimeout)
	}
}

func (p *redisProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	if len(b) > redisLogTail {
		b = b[len(b)-redisLogTail:]
	}
	return string(b)
}

// probe sends INFO server to addr and returns the answering server's process_id.
// It returns pid 0 and a nil error when the server answered with an error reply.
func probe(addr string) (pid int, err error) {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(conn, "INFO server\r\n"); err != nil {
		return 0, err
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		// LOADING means it is not ready yet; anything else (NOAUTH, unknown command)
		// is an answer from a live server.
		if strings.HasPrefix(line, "-LOADING") {
			return 0, errors.New(line[1:])
		}
		return 0, nil
	case !strings.HasPrefix(line, "$"):
		return 0, fmt.Errorf("unexpected reply %q", line)
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 || n > 1<<20 {
		return 0, fmt.Errorf("unexpected reply %q", line)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
