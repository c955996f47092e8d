package canaltest

import (
	"context"
	"errors"
	"fmt"
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

// Bounds on the Sentinel setup's waits.
const (
	sentinelSyncTimeout     = 15 * time.Second // replica link up, sentinel sees the replica
	sentinelFailoverTimeout = 30 * time.Second // master killed → replica promoted and named
	// sentinelDownAfter is down-after-milliseconds: how long the master must be
	// silent before the sentinel takes it for down.
	sentinelDownAfter = "1000"
)

// SentinelMasterSet is the master name StartRedisSentinel's sentinel monitors.
const SentinelMasterSet = "canal-master"

// RedisSentinel is a private Redis master with one replica, monitored by one Sentinel
// (quorum 1) under the name SentinelMasterSet, all on loopback ports and killed by the
// test's cleanup. Failover kills the master and waits until the sentinel has promoted
// the replica.
//
// Concurrency: the methods call t.Fatal on failure; call them from the test's goroutine.
type RedisSentinel struct {
	t        testing.TB
	mu       sync.Mutex
	master   *Redis
	replica  *Redis // nil after a failover
	old      []*Redis
	sentinel *sentinelNode
}

// sentinelNode is a redis-server running in Sentinel mode, which needs a config file
// of its own that it rewrites.
type sentinelNode struct {
	addr string
	proc *redisProc
}

// StartRedisSentinel starts a master, a replica of it (and waits until their link is
// up), then a Sentinel monitoring the master with quorum 1 and down-after 1 s, and
// waits (at most 15 s) until the sentinel names the master and knows the replica.
//
// redis-server must be on PATH (Debian package redis-server; Sentinel mode is the
// same binary started with --sentinel).
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	bin := lookBinary(t, "redis-server", "redis-server")
	s := &RedisSentinel{t: t}
	s.master = StartRedis(t)
	_, mport, _ := net.SplitHostPort(s.master.Addr())
	s.replica = StartRedis(t, WithArgs("--replicaof", "127.0.0.1", mport))
	deadline := time.Now().Add(sentinelSyncTimeout)
	waitUntil(t, deadline, "the replica's link to the master", func() (bool, string) {
		info, err := infoSection(s.replica.Addr(), "replication")
		return err == nil && info["master_link_status"] == "up", fmt.Sprint(info["master_link_status"], err)
	})
	// Started after the link is up: the sentinel learns of replicas from the master's
	// INFO, which it reads at once and then only every 10 s.
	s.sentinel = startSentinel(t, bin, mport)
	waitUntil(t, deadline, "the sentinel to know the master and its replica", func() (bool, string) {
		addr, err := s.askMaster()
		if err != nil || addr != s.master.Addr() {
			return false, fmt.Sprintf("master %q, %v", addr, err)
		}
		n, err := s.goodReplicas()
		return err == nil && n == 1, fmt.Sprintf("%d replicas, %v", n, err)
	})
	return s
}

func startSentinel(t testing.TB, bin, masterPort string) *sentinelNode {
	t.Helper()
	dir := t.TempDir()
	n := &sentinelNode{}
	t.Cleanup(func() {
		if n.proc != nil {
			if err := n.proc.kill(); err != nil {
				t.Error(err)
			}
		}
	})
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("canaltest: find a free port: %v", err)
		}
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", attempt))
		text := strings.Join([]string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"daemonize no",
			"dir " + dir,
			"sentinel monitor " + SentinelMasterSet + " 127.0.0.1 " + masterPort + " 1",
			"sentinel down-after-milliseconds " + SentinelMasterSet + " " + sentinelDownAfter,
			"sentinel failover-timeout " + SentinelMasterSet + " 10000",
			"sentinel parallel-syncs " + SentinelMasterSet + " 1",
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatalf("canaltest: write %s: %v", conf, err)
		}
		n.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := startProc(bin, dir, filepath.Join(dir, fmt.Sprintf("sentinel-%d.log", attempt)), conf, "--sentinel")
		if err == nil {
			err = p.waitReady(n.addr)
			if err != nil {
				err = errors.Join(err, p.kill())
			}
		}
		if err == nil {
			n.proc = p
			return n
		}
		if !errors.Is(err, errPortTaken) || attempt == redisPortAttempts {
			t.Fatalf("canaltest: start redis-server --sentinel (attempt %d): %v", attempt, err)
		}
	}
}

// startProc runs bin with args in dir, its output in logPath.
func startProc(bin, dir, logPath string, args ...string) (*redisProc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("canaltest: create log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setProcessGroup(cmd)
	err = cmd.Start()
	logFile.Close()
	if err != nil {
		return nil, fmt.Errorf("canaltest: exec %s: %w", bin, err)
	}
	p := &redisProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Addr returns the sentinel's address, "127.0.0.1:port".
func (s *RedisSentinel) Addr() string { return s.sentinel.addr }

// MasterSet returns the name the sentinel monitors the master under.
func (s *RedisSentinel) MasterSet() string { return SentinelMasterSet }

// Master returns the current master server.
func (s *RedisSentinel) Master() *Redis {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.master
}

// Client returns a rueidis client that finds the master through the sentinel, closed
// by the test's cleanup.
func (s *RedisSentinel) Client(t testing.TB, opts ...func(*rueidis.ClientOption)) rueidis.Client {
	t.Helper()
	opt := rueidis.ClientOption{
		InitAddress:      []string{s.Addr()},
		Sentinel:         rueidis.SentinelOption{MasterSet: SentinelMasterSet},
		Dialer:           net.Dialer{Timeout: 2 * time.Second},
		ConnWriteTimeout: 3 * time.Second,
		DisableCache:     true,
	}
	for _, o := range opts {
		o(&opt)
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("canaltest: connect through the sentinel at %s: %v", s.Addr(), err)
	}
	t.Cleanup(c.Close)
	return c
}

// Failover kills the master (SIGKILL) and waits (at most 30 s) until the sentinel
// names the replica as master and the replica has taken the role. It returns the new
// master. A second Failover fails the test: there is no replica left.
func (s *RedisSentinel) Failover() *Redis {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replica == nil {
		s.t.Fatal("canaltest: Failover: no replica left to promote")
	}
	s.master.Kill()
	deadline := time.Now().Add(sentinelFailoverTimeout)
	waitUntil(s.t, deadline, "the sentinel to promote the replica", func() (bool, string) {
		addr, err := s.askMaster()
		return err == nil && addr == s.replica.Addr(), fmt.Sprintf("master %q, %v", addr, err)
	})
	waitUntil(s.t, deadline, "the replica to become master", func() (bool, string) {
		info, err := infoSection(s.replica.Addr(), "replication")
		return err == nil && info["role"] == "master", fmt.Sprint(info["role"], err)
	})
	s.old = append(s.old, s.master)
	s.master, s.replica = s.replica, nil
	return s.master
}

// askMaster asks the sentinel for the master's address.
func (s *RedisSentinel) askMaster() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := nodeCommand(ctx, s.sentinel.addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMasterSet)
	if err != nil {
		return "", err
	}
	hp, err := res.AsStrSlice()
	if err != nil || len(hp) != 2 {
		return "", fmt.Errorf("reply %v: %v", hp, err)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// goodReplicas counts the replicas the sentinel knows and takes for up.
func (s *RedisSentinel) goodReplicas() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := nodeCommand(ctx, s.sentinel.addr, "SENTINEL", "REPLICAS", SentinelMasterSet)
	if err != nil {
		return 0, err
	}
	list, err := res.ToArray()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range list {
		fields, err := r.AsStrMap()
		if err != nil {
			kv, _ := r.AsStrSlice()
			fields = map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				fields[kv[i]] = kv[i+1]
			}
		}
		if f := fields["flags"]; f == "slave" && fields["master-link-status"] == "ok" {
			n++
		}
	}
	return n, nil
}

// infoSection returns one INFO section of the server at addr as a map.
func infoSection(addr, section string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := nodeCommand(ctx, addr, "INFO", section)
	if err != nil {
		return nil, err
	}
	text, err := res.ToString()
	if err != nil {
		return nil, err
	}
	return parseInfo(text), nil
}

// waitUntil polls cond until it holds or deadline passes, then fails naming what and
// cond's last explanation.
func waitUntil(t testing.TB, deadline time.Time, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("canaltest: timed out waiting for %s (last: %s)", what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
