package canaltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Bounds on the cluster's own waits.
const (
	clusterCreateTimeout = 30 * time.Second // redis-cli --cluster create, start to exit
	clusterReadyTimeout  = 20 * time.Second // until every node reports cluster_state:ok
	// clusterNodeTimeout is cluster-node-timeout: how long a silent node takes to be
	// suspected. Generous, so that a loaded CI machine does not flap.
	clusterNodeTimeout = "3000"
)

// RedisCluster is a private Redis Cluster of masters without replicas, started by
// StartRedisCluster on loopback ports and killed by the test's cleanup. Like Redis, it
// never persists data; each node keeps its cluster configuration (nodes.conf) in its
// own temporary directory, so a node that is killed and restarted comes back with its
// identity and its slots, empty.
//
// The nodes run with cluster-require-full-coverage no: while one master is down, the
// others keep serving their slots.
type RedisCluster struct {
	t     testing.TB
	nodes []*Redis
}

// StartRedisCluster starts masters redis-server processes in cluster mode (at least 3:
// redis-cli refuses fewer), each with its own directory, configuration file, client
// port and cluster bus port, joins them with
// "redis-cli --cluster create … --cluster-replicas 0 --cluster-yes", and waits (at
// most 20 s) until every node reports cluster_state:ok and knows all the others.
//
// redis-server and redis-cli must be on PATH (Debian packages redis-server and
// redis-tools): a missing binary fails the test rather than skipping it.
func StartRedisCluster(t testing.TB, masters int) *RedisCluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("canaltest: a Redis Cluster needs at least 3 masters, got %d", masters)
	}
	bin := lookBinary(t, "redis-server", "redis-server")
	cli := lookBinary(t, "redis-cli", "redis-tools")
	c := &RedisCluster{t: t}
	for range masters {
		c.nodes = append(c.nodes, startClusterNode(t, bin))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("canaltest: redis-cli --cluster create: %v; output:\n%s", err, tail(out))
	}
	if !strings.Contains(string(out), "All 16384 slots covered") {
		t.Fatalf("canaltest: redis-cli --cluster create did not cover the slots; output:\n%s", tail(out))
	}
	c.WaitReady(t)
	return c
}

// clusterSettleTimeout bounds SettleClusterClients: rueidis closes the connections a
// topology refresh replaced 5 s later, on a goroutine of its own.
const clusterSettleTimeout = 7 * time.Second

// SettleClusterClients waits (at most 7 s) until no closed rueidis cluster client has a
// goroutine left sleeping before it closes the connections a topology change replaced
// (after a node restarted or a slot moved under a live client). Goroutine-leak checks
// that run when a test binary ends (goleak.VerifyTestMain) should call it first; it
// returns at once when there is nothing to wait for.
func SettleClusterClients() {
	deadline := time.Now().Add(clusterSettleTimeout)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("rueidis.(*clusterClient)._refresh.func")) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lookBinary finds name on PATH or fails the test naming the Debian package.
func lookBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("canaltest: %s not found on PATH: %v; install it (Debian/Ubuntu: apt-get install %s)", name, err, pkg)
	}
	return bin
}

func tail(b []byte) string {
	if len(b) > redisLogTail {
		b = b[len(b)-redisLogTail:]
	}
	return string(b)
}

// startClusterNode starts one cluster-enabled server on a free client port and a free
// bus port (set with cluster-port, so that the bus need not be port+10000).
func startClusterNode(t testing.TB, bin string) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(r.stop)
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("canaltest: find a free port: %v", err)
		}
		bus, err := freePort()
		if err != nil {
			t.Fatalf("canaltest: find a free port: %v", err)
		}
		if bus == port {
			continue
		}
		r.port, r.addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		r.args = []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", clusterNodeTimeout,
			"--cluster-require-full-coverage", "no",
		}
		err = r.startLocked()
		if err == nil {
			return r
		}
		if !errors.Is(err, errPortTaken) || attempt == redisPortAttempts {
			t.Fatalf("canaltest: start cluster node (attempt %d): %v", attempt, err)
		}
	}
}

// Addrs returns the nodes' addresses, "127.0.0.1:port", in start order.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the nodes, in start order. Kill and Restart one to simulate a crash;
// call WaitReady after a Restart to wait until the cluster agrees again.
func (c *RedisCluster) Nodes() []*Redis { return c.nodes }

// Client returns a rueidis cluster client seeded with every node, closed by the test's
// cleanup. opts may change any field of the option before the client is created.
func (c *RedisCluster) Client(t testing.TB, opts ...func(*rueidis.ClientOption)) rueidis.Client {
	t.Helper()
	opt := rueidis.ClientOption{
		InitAddress:      c.Addrs(),
		Dialer:           net.Dialer{Timeout: 2 * time.Second},
		ConnWriteTimeout: 3 * time.Second,
		DisableCache:     true,
	}
	for _, o := range opts {
		o(&opt)
	}
	cl, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("canaltest: connect to the cluster at %v: %v", opt.InitAddress, err)
	}
	if cl.Mode() != rueidis.ClientModeCluster {
		cl.Close()
		t.Fatalf("canaltest: %v is not a Redis Cluster (client mode %s)", opt.InitAddress, cl.Mode())
	}
	t.Cleanup(cl.Close)
	return cl
}

// NodeClient returns a plain (non-cluster) client of node i, closed by the test's
// cleanup: for commands that concern that node only, such as DBSIZE or KEYS.
func (c *RedisCluster) NodeClient(t testing.TB, i int) rueidis.Client {
	t.Helper()
	return c.nodes[i].Client(t, func(o *rueidis.ClientOption) { o.ForceSingleClient = true })
}

// NodeFor returns the index of the node that serves key's slot.
func (c *RedisCluster) NodeFor(t testing.TB, key string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, n := range c.nodes {
		if n.pid() == 0 {
			continue
		}
		slot, err := nodeCommand(ctx, n.Addr(), "CLUSTER", "KEYSLOT", key)
		if err != nil {
			continue
		}
		s, _ := slot.AsInt64()
		owner, err := slotOwner(ctx, n.Addr(), s)
		if err != nil {
			continue
		}
		for j, m := range c.nodes {
			if m.Addr() == owner {
				return j
			}
		}
		t.Fatalf("canaltest: node %d says slot %d of %q is served by %s, not one of ours", i, s, key, owner)
	}
	t.Fatalf("canaltest: no node could say where %q lives", key)
	return -1
}

// slotOwner asks the node at addr which master serves slot.
func slotOwner(ctx context.Context, addr string, slot int64) (string, error) {
	res, err := nodeCommand(ctx, addr, "CLUSTER", "SLOTS")
	if err != nil {
		return "", err
	}
	ranges, err := res.ToArray()
	if err != nil {
		return "", err
	}
	for _, rg := range ranges {
		f, err := rg.ToArray()
		if err != nil || len(f) < 3 {
			continue
		}
		lo, _ := f[0].AsInt64()
		hi, _ := f[1].AsInt64()
		if slot < lo || slot > hi {
			continue
		}
		m, err := f[2].ToArray()
		if err != nil || len(m) < 2 {
			return "", fmt.Errorf("malformed CLUSTER SLOTS entry")
		}
		host, _ := m[0].ToString()
		port, _ := m[1].AsInt64()
		return net.JoinHostPort(host, strconv.FormatInt(port, 10)), nil
	}
	return "", fmt.Errorf("slot %d is not served", slot)
}

// nodeCommand runs one command on the server at addr over a short-lived plain
// connection and returns its reply.
func nodeCommand(ctx context.Context, addr string, args ...string) (rueidis.RedisMessage, error) {
	cl, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		ForceSingleClient: true,
		DisableCache:      true,
		DisableRetry:      true,
		Dialer:            net.Dialer{Timeout: 500 * time.Millisecond},
		ConnWriteTimeout:  time.Second,
	})
	if err != nil {
		return rueidis.RedisMessage{}, err
	}
	defer cl.Close()
	return cl.Do(ctx, cl.B().Arbitrary(args...).Build()).ToMessage()
}

// WaitReady waits (at most 20 s) until every running node reports cluster_state:ok
// and knows every node, as after StartRedisCluster or a node's Restart.
func (c *RedisCluster) WaitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		bad := c.notReady()
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("canaltest: cluster not ready within %v: %s", clusterReadyTimeout, bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notReady returns why the cluster is not ready yet, or "".
func (c *RedisCluster) notReady() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if n.pid() == 0 {
			continue // killed on purpose
		}
		res, err := nodeCommand(ctx, n.Addr(), "CLUSTER", "INFO")
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Addr(), err)
		}
		info, _ := res.ToString()
		fields := parseInfo(info)
		if fields["cluster_state"] != "ok" || fields["cluster_slots_ok"] != "16384" ||
			fields["cluster_known_nodes"] != strconv.Itoa(len(c.nodes)) {
			return fmt.Sprintf("%s: cluster_state %s, slots ok %s, known nodes %s", n.Addr(),
				fields["cluster_state"], fields["cluster_slots_ok"], fields["cluster_known_nodes"])
		}
	}
	return ""
}

// parseInfo reads INFO-style "key:value" lines. Under RESP3 the text may arrive as a
// verbatim string whose "txt:" format prefix is still on it.
func parseInfo(text string) map[string]string {
	text = strings.TrimPrefix(text, "txt:")
	fields := map[string]string{}
	for l := range strings.Lines(text) {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}
