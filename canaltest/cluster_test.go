package canaltest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

func TestStartRedisCluster(t *testing.T) {
	t.Parallel()
	// Last cleanup: the node restart below leaves the client a goroutine that closes
	// the replaced connection 5 s later, which this package's goleak check would see.
	t.Cleanup(SettleClusterClients)
	c := StartRedisCluster(t, 3)
	if n := len(c.Addrs()); n != 3 {
		t.Fatalf("%d addresses", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cl := c.Client(t)
	// Keys spread over the three masters, and each node holds only its own.
	keys := make([]string, 30)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
		if err := cl.Do(ctx, cl.B().Set().Key(keys[i]).Value("v").Build()).Error(); err != nil {
			t.Fatalf("SET %s: %v", keys[i], err)
		}
	}
	total := int64(0)
	for i := range c.Nodes() {
		nc := c.NodeClient(t, i)
		n, err := nc.Do(ctx, nc.B().Dbsize().Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("node %d holds no key", i)
		}
		total += n
		held, _ := nc.Do(ctx, nc.B().Keys().Pattern("*").Build()).AsStrSlice()
		for _, k := range held {
			if c.NodeFor(t, k) != i {
				t.Errorf("node %d holds %s, which NodeFor places elsewhere", i, k)
			}
		}
		cfg, err := nc.Do(ctx, nc.B().ConfigGet().Parameter("save", "appendonly", "cluster-require-full-coverage").Build()).AsStrMap()
		if err != nil || cfg["save"] != "" || cfg["appendonly"] != "no" || cfg["cluster-require-full-coverage"] != "no" {
			t.Errorf("node %d config %v, %v", i, cfg, err)
		}
	}
	if total != int64(len(keys)) {
		t.Fatalf("%d keys on the nodes; want %d", total, len(keys))
	}

	// A node killed and restarted comes back empty with its slots; the others serve
	// theirs meanwhile.
	victim := c.NodeFor(t, "key-0")
	c.Nodes()[victim].Kill()
	var other string
	for _, k := range keys {
		if c.NodeFor(t, k) != victim {
			other = k
			break
		}
	}
	if v, err := cl.Do(ctx, cl.B().Get().Key(other).Build()).ToString(); err != nil || v != "v" {
		t.Errorf("GET %s with another node down: %q, %v", other, v, err)
	}
	c.Nodes()[victim].Restart()
	c.WaitReady(t)
	if c.NodeFor(t, "key-0") != victim {
		t.Fatal("the restarted node lost its slots")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cl.Do(ctx, cl.B().Get().Key("key-0").Build()).Error()
		if rueidis.IsRedisNil(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET key-0 after the restart: %v; want a nil reply", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartRedisClusterCleanup(t *testing.T) {
	t.Parallel()
	var pids []int
	t.Run("inner", func(t *testing.T) {
		c := StartRedisCluster(t, 3)
		for _, n := range c.Nodes() {
			pids = append(pids, n.pid())
		}
	})
	for _, pid := range pids {
		if p, err := os.FindProcess(pid); err == nil && p.Signal(syscall.Signal(0)) == nil {
			t.Fatalf("node process %d survived the cleanup", pid)
		}
	}
}

func TestStartRedisClusterTooSmall(t *testing.T) {
	t.Parallel()
	ft := &fakeTB{TB: t}
	ft.run(func() { StartRedisCluster(ft, 2) })
	if !ft.failed || !strings.Contains(ft.msg, "at least 3") {
		t.Fatalf("fatal = %v, %q", ft.failed, ft.msg)
	}
}

func TestStartRedisClusterMissingCLI(t *testing.T) {
	dir := t.TempDir()
	server, err := os.Executable() // any file will do: only redis-cli must be missing
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(server, dir+"/redis-server"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	ft := &fakeTB{TB: t}
	ft.run(func() { StartRedisCluster(ft, 3) })
	if !ft.failed || ft.skipped || !strings.Contains(ft.msg, "apt-get install redis-tools") {
		t.Fatalf("fatal = %v, skipped %v, %q", ft.failed, ft.skipped, ft.msg)
	}
}

func TestStartRedisSentinel(t *testing.T) {
	t.Parallel()
	s := StartRedisSentinel(t)
	if s.MasterSet() != SentinelMasterSet || !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("master set %q, addr %q", s.MasterSet(), s.Addr())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c := s.Client(t, func(o *rueidis.ClientOption) {
		o.Dialer.Timeout = 500 * time.Millisecond
		o.Sentinel.TopologyRefreshInterval = time.Second
	})
	if c.Mode() != rueidis.ClientModeSentinel {
		t.Fatalf("client mode %s", c.Mode())
	}
	if err := c.Do(ctx, c.B().Set().Key("k").Value("before").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	first := s.Master()
	promoted := s.Failover()
	if promoted == first || s.Master() != promoted || first.pid() != 0 {
		t.Fatal("Failover did not replace the master")
	}
	info, err := infoSection(promoted.Addr(), "replication")
	if err != nil || info["role"] != "master" {
		t.Fatalf("promoted server: %v, %v", info, err)
	}
	// The client follows the sentinel to the new master, which had replicated the key.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := c.Do(ctx, c.B().Set().Key("k2").Value("after").Build()).Error()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET through the sentinel after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	nc := promoted.Client(t, func(o *rueidis.ClientOption) { o.ForceSingleClient = true })
	got, err := nc.Do(ctx, nc.B().Mget().Key("k", "k2").Build()).AsStrSlice()
	if err != nil || !slices.Equal(got, []string{"before", "after"}) {
		t.Fatalf("MGET on the new master: %q, %v", got, err)
	}
}
