package layers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// collect attaches a channel to group on l and returns what it receives.
func collectGroup(t *testing.T, l canal.Layer, group string) <-chan canal.Message {
	t.Helper()
	ch := make(chan canal.Message, 1000)
	ctx := context.Background()
	name, detach, err := l.Attach(ctx, "specific.", func(m canal.Message) bool {
		select {
		case ch <- m:
			return true
		default:
			return false
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(detach)
	if err := l.GroupAdd(ctx, group, name); err != nil {
		t.Fatal(err)
	}
	return ch
}

func nextMsg(t *testing.T, ch <-chan canal.Message) canal.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(wait):
		t.Fatal("no message")
		return nil
	}
}

func mustPos(t *testing.T, m canal.Message, group string) canal.Position {
	t.Helper()
	g, p, ok := canal.PositionOf(m)
	if !ok || g != group {
		t.Fatalf("message %v carries no position of %q", m, group)
	}
	return p
}

// historyLayers returns the layers under test: memory, and two Redis layers (two
// processes' worth) on one server.
func redisHistoryPair(t *testing.T, rules []HistoryRule, format string) (a, b *Redis, srv *canaltest.Redis) {
	srv = canaltest.StartRedis(t)
	a = newRedisLayer(t, srv, RedisOptions{History: rules, SerializerFormat: format})
	b = newRedisLayer(t, srv, RedisOptions{History: rules, SerializerFormat: format})
	return a, b, srv
}

func TestRedisHistoryAcrossProcesses(t *testing.T) {
	for _, format := range []string{"msgpack", "json"} {
		t.Run(format, func(t *testing.T) {
			a, b, _ := redisHistoryPair(t, []HistoryRule{{Group: "chat_*", Size: 5}}, format)
			ctx := context.Background()
			live := collectGroup(t, b, "chat_room")
			var pos []canal.Position
			for i := range 3 {
				p, err := a.Publish(ctx, "chat_room", canal.Message{"type": "chat.message", "n": int64(i)})
				if err != nil {
					t.Fatal(err)
				}
				pos = append(pos, p)
			}
			// GroupSend to a group with history publishes too.
			if err := a.GroupSend(ctx, "chat_room", canal.Message{"type": "chat.message", "n": int64(3)}); err != nil {
				t.Fatal(err)
			}
			for i := range 4 {
				m := nextMsg(t, live)
				p := mustPos(t, m, "chat_room")
				if p.Offset != uint64(i+1) || p.Epoch != pos[0].Epoch || fmt.Sprint(m["n"]) != fmt.Sprint(i) {
					t.Fatalf("live message %d: %v at %+v", i, m, p)
				}
			}
			// The other process reads the history since offset 1.
			msgs, head, err := b.History(ctx, "chat_room", pos[0], 0)
			if err != nil {
				t.Fatal(err)
			}
			if head.Offset != 4 || head.Epoch != pos[0].Epoch || len(msgs) != 3 {
				t.Fatalf("History = %v, %+v", msgs, head)
			}
			for i, m := range msgs {
				if p := mustPos(t, m, "chat_room"); p.Offset != uint64(i+2) || fmt.Sprint(m["n"]) != fmt.Sprint(i+1) {
					t.Fatalf("history message %d: %v", i, m)
				}
			}
			// Paging.
			if msgs, _, err := a.History(ctx, "chat_room", pos[0], 2); err != nil || len(msgs) != 2 {
				t.Fatalf("History limit 2 = %v, %v", msgs, err)
			}
			// At the head: nothing, recovered.
			if msgs, _, err := a.History(ctx, "chat_room", head, 0); err != nil || len(msgs) != 0 {
				t.Fatalf("History at head = %v, %v", msgs, err)
			}
			// Trimmed by Size: 5 kept, so offset 1's successor is gone after 7.
			for range 3 {
				if _, err := a.Publish(ctx, "chat_room", canal.Message{"type": "x"}); err != nil {
					t.Fatal(err)
				}
			}
			if _, head, err := b.History(ctx, "chat_room", pos[0], 0); !errors.Is(err, canal.ErrNotRecovered) || head.Offset != 7 {
				t.Fatalf("History past Size = %+v, %v; want ErrNotRecovered at 7", head, err)
			}
			if msgs, _, err := b.History(ctx, "chat_room", canal.Position{Offset: 2, Epoch: pos[0].Epoch}, 0); err != nil || len(msgs) != 5 {
				t.Fatalf("History since 2 = %d messages, %v; want 5", len(msgs), err)
			}
			// Another epoch, or a position ahead of the history.
			for _, since := range []canal.Position{{Offset: 7, Epoch: "other"}, {Offset: 8, Epoch: pos[0].Epoch}} {
				if _, _, err := b.History(ctx, "chat_room", since, 0); !errors.Is(err, canal.ErrNotRecovered) {
					t.Fatalf("History(%+v) = %v; want ErrNotRecovered", since, err)
				}
			}
			// No epoch: only the position.
			if msgs, head, err := b.History(ctx, "chat_room", canal.Position{}, 0); err != nil || len(msgs) != 0 || head.Offset != 7 {
				t.Fatalf("History(zero) = %v, %+v, %v", msgs, head, err)
			}
		})
	}
}

func TestRedisHistoryLostWithRedis(t *testing.T) {
	a, b, srv := redisHistoryPair(t, []HistoryRule{{Group: "chat_*"}}, "")
	ctx := context.Background()
	p1, err := a.Publish(ctx, "chat_room", canal.Message{"type": "x"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	// The first call after a restart may meet a dead pooled connection.
	var p2 canal.Position
	for i := 0; ; i++ {
		if p2, err = a.Publish(ctx, "chat_room", canal.Message{"type": "x"}); err == nil || i == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if p2.Epoch == p1.Epoch || p2.Offset != 1 {
		t.Fatalf("after a restart: %+v (before: %+v); want a new epoch at offset 1", p2, p1)
	}
	if _, head, err := b.History(ctx, "chat_room", p1, 0); !errors.Is(err, canal.ErrNotRecovered) || head != p2 {
		t.Fatalf("History(old epoch) = %+v, %v; want ErrNotRecovered at %+v", head, err, p2)
	}
	// Flush (Django's too) drops the history: a new epoch again.
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.History(ctx, "chat_room", p2, 0); !errors.Is(err, canal.ErrNotRecovered) {
		t.Fatalf("History after Flush = %v; want ErrNotRecovered", err)
	}
}

func TestRedisHistoryErrors(t *testing.T) {
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{History: []HistoryRule{{Group: "chat_*"}}})
	ctx := context.Background()
	cases := []struct {
		name  string
		group string
		msg   canal.Message
		want  error
	}{
		{"no rule", "news", canal.Message{"type": "x"}, canal.ErrNoHistory},
		{"bad name", "chat room", canal.Message{"type": "x"}, canal.ErrInvalidName},
		{"no type", "chat_a", canal.Message{"n": 1}, canal.ErrInvalidMessage},
		{"reserved position", "chat_a", canal.Message{"type": "x", canal.PositionKey: 1}, canal.ErrInvalidMessage},
		{"reserved channel", "chat_a", canal.Message{"type": "x", "__asgi_channel__": "c"}, canal.ErrInvalidMessage},
		{"unencodable", "chat_a", canal.Message{"type": "x", "c": make(chan int)}, canal.ErrInvalidMessage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := l.Publish(ctx, c.group, c.msg); !errors.Is(err, c.want) {
				t.Fatalf("Publish = %v; want %v", err, c.want)
			}
		})
	}
	if _, _, err := l.History(ctx, "news", canal.Position{}, 0); !errors.Is(err, canal.ErrNoHistory) {
		t.Fatalf("History(no rule) = %v", err)
	}
	// Nothing was published by the failures.
	if _, head, err := l.History(ctx, "chat_a", canal.Position{}, 0); err != nil || head.Offset != 0 {
		t.Fatalf("History = %+v, %v; want offset 0", head, err)
	}
	for _, rules := range [][]HistoryRule{{{Group: "["}}, {{Group: ""}}, {{Group: "a", Size: -1}},
		{{Group: "a", Size: MaxHistorySize + 1}}, {{Group: "a", TTL: -time.Second}}} {
		if _, err := NewRedis(ctx, RedisOptions{Hosts: []string{srv.URL()}, History: rules}); err == nil {
			t.Fatalf("NewRedis(History: %+v) accepted", rules)
		}
	}
}

// The Lua scripts Django runs (django_canal/history.py) are these bytes.
func TestHistoryScriptsMatchPython(t *testing.T) {
	for name, src := range map[string]string{"publish.lua": publishLua, "history.lua": historyLua} {
		py, err := os.ReadFile("../python/django_canal/scripts/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if string(py) != src {
			t.Errorf("python/django_canal/scripts/%s differs from layers/scripts/%s", name, name)
		}
	}
}

// Django publishes with django_canal.history.publish (Fernet on): Go members get the
// positions live, Go reads the same history, and Go's next publish follows Django's.
func TestRedisHistoryFromDjango(t *testing.T) {
	forSuites(t, func(t *testing.T, s pySuite) {
		srv := canaltest.StartRedis(t)
		key := "history-secret"
		rules := []HistoryRule{{Group: "chat_*", Size: 10}}
		a := newRedisLayer(t, srv, RedisOptions{History: rules, SymmetricEncryptionKeys: []string{key}})
		b := newRedisLayer(t, srv, RedisOptions{History: rules, SymmetricEncryptionKeys: []string{key}})
		live := collectGroup(t, a, "chat_room")
		cfg, _ := json.Marshal(map[string]any{"symmetric_encryption_keys": []string{key},
			"history": []map[string]any{{"group": "chat_*", "size": 10, "ttl": 300}}})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, pythonBin, filepath.Join("testdata", "history_publish.py"),
			srv.URL(), string(cfg), "chat_room", "3")
		cmd.Env = os.Environ()
		if s.pythonPath != "" {
			cmd.Env = append(cmd.Env, "PYTHONPATH="+s.pythonPath)
		}
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("history_publish.py: %v\n%s", err, stderr)
		}
		var epoch string
		for i, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var pos [2]any
			if err := json.Unmarshal([]byte(line), &pos); err != nil {
				t.Fatal(err)
			}
			epoch, _ = pos[1].(string)
			m := nextMsg(t, live)
			p := mustPos(t, m, "chat_room")
			if p.Offset != uint64(i+1) || float64(p.Offset) != pos[0] || p.Epoch != epoch ||
				fmt.Sprint(m["n"]) != fmt.Sprint(i) || string(m["blob"].([]byte)) != "\x00\xff" {
				t.Fatalf("live message %d from Django: %v at %+v; Django said %v", i, m, p, pos)
			}
		}
		msgs, head, err := b.History(context.Background(), "chat_room", canal.Position{Offset: 1, Epoch: epoch}, 0)
		if err != nil || len(msgs) != 2 || head != (canal.Position{Offset: 3, Epoch: epoch}) {
			t.Fatalf("History = %v, %+v, %v", msgs, head, err)
		}
		if fmt.Sprint(msgs[1]["n"]) != "2" || msgs[1].Type() != "chat.message" {
			t.Fatalf("history entry from Django: %v", msgs[1])
		}
		if p, err := b.Publish(context.Background(), "chat_room", canal.Message{"type": "x"}); err != nil || p != (canal.Position{Offset: 4, Epoch: epoch}) {
			t.Fatalf("Go after Django: %+v, %v", p, err)
		}
	})
}

// (In this file, not memory_history_test.go: the cluster client's goroutines outlive
// the test a little, and the memory tests, which run before this file's, check leaks.)
//
// In Cluster mode the history keys share a slot (braces); the group and queue keys
// are elsewhere, so copies are delivered after the script, with the same position,
// and a reconnecting client reads the history from another process.
func TestRedisHistoryCluster(t *testing.T) {
	b := startCluster(t)
	opts := RedisOptions{Cluster: b.cluster.Addrs(), History: []HistoryRule{{Group: "chat_*"}}}
	x, y := b.core(t, opts), b.core(t, opts)
	live := collectGroup(t, x, "chat_room")
	ctx := context.Background()
	var first canal.Position
	for i := range 5 {
		p, err := y.Publish(ctx, "chat_room", canal.Message{"type": "x", "n": i})
		if err != nil || p.Offset != uint64(i+1) {
			t.Fatalf("Publish = %+v, %v", p, err)
		}
		if i == 0 {
			first = p
		}
		if got := mustPos(t, nextMsg(t, live), "chat_room"); got != p {
			t.Fatalf("got %+v, published %+v", got, p)
		}
	}
	msgs, head, err := x.History(ctx, "chat_room", first, 0)
	if err != nil || len(msgs) != 4 || head.Offset != 5 {
		t.Fatalf("History = %v, %+v, %v", msgs, head, err)
	}
}
