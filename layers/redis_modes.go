package layers

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/canal-rt/canal/internal/redisconn"
	"github.com/redis/rueidis"
)

// SentinelOptions selects Redis Sentinel mode: the layer asks the sentinels for the
// master of MasterSet and follows it through failovers (rueidis' Sentinel client).
type SentinelOptions struct {
	// MasterSet is the name the sentinels monitor the master under.
	MasterSet string
	// Addrs are sentinel addresses, "host:port".
	Addrs []string
	// Password authenticates to the sentinels (their requirepass). The master's own
	// credentials, database number and TLS are set with ClientOptions
	// (ClientOption.Password, SelectDB, TLSConfig).
	Password string
}

// sentinelRefresh is how often a Sentinel client checks the sentinels' view of the
// master besides reacting to +switch-master events (rueidis recommends a few seconds).
const sentinelRefresh = 2 * time.Second

// checkModes validates the choice between Hosts, Cluster and Sentinel.
func checkModes(layer string, hosts, cluster []string, sentinel *SentinelOptions) error {
	n := 0
	for _, set := range []bool{len(hosts) > 0, len(cluster) > 0, sentinel != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("layers: %s: Hosts, Cluster and Sentinel are mutually exclusive", layer)
	}
	for _, a := range cluster {
		if !hostPort(a) {
			return fmt.Errorf("layers: %s: Cluster address %q: want host:port", layer, a)
		}
	}
	if sentinel != nil {
		if sentinel.MasterSet == "" {
			return fmt.Errorf("layers: %s: Sentinel.MasterSet is empty", layer)
		}
		if len(sentinel.Addrs) == 0 {
			return fmt.Errorf("layers: %s: Sentinel.Addrs is empty", layer)
		}
		for _, a := range sentinel.Addrs {
			if !hostPort(a) {
				return fmt.Errorf("layers: %s: Sentinel address %q: want host:port", layer, a)
			}
		}
	}
	return nil
}

// hostPort reports whether a is "host:port" with a numeric port.
func hostPort(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || strings.Contains(host, "/") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n < 65536
}

// dialCluster connects a rueidis cluster client seeded with addrs and checks that it
// found a Redis Cluster.
func dialCluster(ctx context.Context, addrs []string, hook func(*rueidis.ClientOption)) (*redisHost, error) {
	name := "cluster " + strings.Join(addrs, ",")
	opt := rueidis.ClientOption{InitAddress: append([]string(nil), addrs...), DisableCache: true}
	c, err := redisconn.Dial(ctx, name, opt, hook, func(c rueidis.Client) error {
		if c.Mode() != rueidis.ClientModeCluster {
			return fmt.Errorf("%v is not a Redis Cluster (use Hosts for a single server)", addrs)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &redisHost{name: name, client: c}, nil
}

// dialSentinel connects a rueidis Sentinel client to the master of s.MasterSet.
func dialSentinel(ctx context.Context, s *SentinelOptions, hook func(*rueidis.ClientOption)) (*redisHost, error) {
	name := "sentinel " + s.MasterSet
	opt := rueidis.ClientOption{
		InitAddress:  append([]string(nil), s.Addrs...),
		DisableCache: true,
		Sentinel: rueidis.SentinelOption{
			MasterSet:               s.MasterSet,
			Password:                s.Password,
			TopologyRefreshInterval: sentinelRefresh,
		},
	}
	c, err := redisconn.Dial(ctx, name, opt, hook, nil)
	if err != nil {
		return nil, err
	}
	return &redisHost{name: name, client: c}, nil
}

// clusterSlots is a snapshot of which master serves each hash slot.
type clusterSlots struct {
	owner   [16384]uint16 // index into addrs + 1; 0 = not served
	masters []string
}

// ownerOf returns the address of the master serving slot, or "".
func (s *clusterSlots) ownerOf(slot uint16) string {
	if s == nil || s.owner[slot] == 0 {
		return ""
	}
	return s.masters[s.owner[slot]-1]
}

// loadClusterSlots reads CLUSTER SLOTS through c (a cluster client picks a node).
func loadClusterSlots(ctx context.Context, c rueidis.Client) (*clusterSlots, error) {
	ranges, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, err
	}
	s := &clusterSlots{}
	index := map[string]uint16{}
	for _, rg := range ranges {
		f, err := rg.ToArray()
		if err != nil || len(f) < 3 {
			return nil, errors.New("malformed CLUSTER SLOTS reply")
		}
		lo, err1 := f[0].AsInt64()
		hi, err2 := f[1].AsInt64()
		node, err3 := f[2].ToArray()
		if err1 != nil || err2 != nil || err3 != nil || len(node) < 2 || lo < 0 || hi > 16383 || lo > hi {
			return nil, errors.New("malformed CLUSTER SLOTS reply")
		}
		host, _ := node[0].ToString()
		port, _ := node[1].AsInt64()
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		i, ok := index[addr]
		if !ok {
			s.masters = append(s.masters, addr)
			i = uint16(len(s.masters))
			index[addr] = i
		}
		for slot := lo; slot <= hi; slot++ {
			s.owner[slot] = i
		}
	}
	if len(s.masters) == 0 {
		return nil, errors.New("CLUSTER SLOTS lists no master")
	}
	return s, nil
}

// keySlot returns Redis Cluster's hash slot of a key or sharded Pub/Sub channel:
// CRC16 (XMODEM) of the key, or of its first non-empty {hash tag}, modulo 16384.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc & 16383
}

// scriptSHA returns a script's SHA-1, as EVALSHA wants it.
func scriptSHA(script string) string {
	sum := sha1.Sum([]byte(script))
	return hex.EncodeToString(sum[:])
}

// isNoScript reports whether err is Redis' NOSCRIPT reply.
func isNoScript(err error) bool {
	rerr, ok := rueidis.IsRedisErr(err)
	return ok && rerr.IsNoScript()
}
