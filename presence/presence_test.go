package presence_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/presence"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	alice = canal.User{ID: "1", Username: "alice", Attrs: map[string]any{"avatar": "a.png", "email": "a@example.com"}}
	bob   = canal.User{ID: "2", Username: "bob"}
)

// stores runs f against both stores, sharing the contract.
func stores(t *testing.T, f func(t *testing.T, s presence.Store)) {
	t.Run("memory", func(t *testing.T) {
		f(t, presence.NewMemory(presence.Options{Claims: []string{"avatar"}}))
	})
	t.Run("redis", func(t *testing.T) {
		srv := canaltest.StartRedis(t)
		s := newRedis(t, srv, presence.RedisOptions{Options: presence.Options{Claims: []string{"avatar"}}})
		f(t, s)
		if n := keys(t, srv, "canal:presence:*"); n != 0 {
			t.Errorf("%d presence keys left after every connection left", n)
		}
	})
}

func newRedis(t *testing.T, srv *canaltest.Redis, opts presence.RedisOptions) *presence.Redis {
	t.Helper()
	s, err := presence.NewRedis(ctxT(t), srv.Client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func keys(t *testing.T, srv *canaltest.Redis, pattern string) int {
	t.Helper()
	c := srv.Client(t)
	ks, err := c.Do(ctxT(t), c.B().Keys().Pattern(pattern).Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	return len(ks)
}

func join(t *testing.T, s presence.Store, group, channel string, u canal.User) bool {
	t.Helper()
	first, err := s.Join(ctxT(t), group, channel, u)
	if err != nil {
		t.Fatalf("Join(%s, %s): %v", group, channel, err)
	}
	return first
}

func leave(t *testing.T, s presence.Store, group, channel string) bool {
	t.Helper()
	last, err := s.Leave(ctxT(t), group, channel, canal.User{})
	if err != nil {
		t.Fatalf("Leave(%s, %s): %v", group, channel, err)
	}
	return last
}

// summary renders a presence list as "id:username:connections:avatar" items.
func summary(t *testing.T, s presence.Store, group string) string {
	t.Helper()
	es, err := s.Presence(ctxT(t), group)
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, e := range es {
		out += fmt.Sprintf("[%s:%s:%d:%v]", e.ID, e.Username, e.Connections, e.Claims["avatar"])
		if _, ok := e.Claims["email"]; ok {
			t.Errorf("claim email stored; only avatar was chosen")
		}
		if e.JoinedAt.IsZero() || time.Since(e.JoinedAt) > time.Minute {
			t.Errorf("JoinedAt %v", e.JoinedAt)
		}
	}
	return out
}

func TestJoinLeaveOncePerUser(t *testing.T) {
	stores(t, func(t *testing.T, s presence.Store) {
		steps := []struct {
			op      string // "join" or "leave"
			channel string
			user    canal.User
			want    bool // first or last
			list    string
		}{
			{"join", "c1", alice, true, "[1:alice:1:a.png]"},
			{"join", "c2", alice, false, "[1:alice:2:a.png]"},
			{"join", "c3", bob, true, "[1:alice:2:a.png][2:bob:1:<nil>]"},
			{"join", "c1", alice, false, "[1:alice:2:a.png][2:bob:1:<nil>]"}, // again: an update
			{"leave", "c1", alice, false, "[1:alice:1:a.png][2:bob:1:<nil>]"},
			{"leave", "c1", alice, false, "[1:alice:1:a.png][2:bob:1:<nil>]"}, // twice: no error
			{"leave", "c2", alice, true, "[2:bob:1:<nil>]"},
			{"leave", "c3", bob, true, ""},
		}
		for i, st := range steps {
			time.Sleep(2 * time.Millisecond) // distinct join times order the list
			var got bool
			if st.op == "join" {
				got = join(t, s, "room", st.channel, st.user)
			} else {
				got = leave(t, s, "room", st.channel)
			}
			if got != st.want {
				t.Errorf("step %d: %s %s = %v, want %v", i, st.op, st.channel, got, st.want)
			}
			if l := summary(t, s, "room"); l != st.list {
				t.Errorf("step %d: presence %s, want %s", i, l, st.list)
			}
		}
	})
}

func TestRefreshKeepsJoinTime(t *testing.T) {
	stores(t, func(t *testing.T, s presence.Store) {
		join(t, s, "room", "c1", alice)
		before, _ := s.Presence(ctxT(t), "room")
		time.Sleep(20 * time.Millisecond)
		changed := alice
		changed.Username = "alice2"
		changed.Attrs = map[string]any{"avatar": "b.png"}
		if join(t, s, "room", "c1", changed) {
			t.Error("a refresh reported a first join")
		}
		if l := summary(t, s, "room"); l != "[1:alice2:1:b.png]" {
			t.Errorf("after refresh: %s", l)
		}
		after, _ := s.Presence(ctxT(t), "room")
		if !after[0].JoinedAt.Equal(before[0].JoinedAt) {
			t.Errorf("JoinedAt moved on refresh: %v -> %v", before[0].JoinedAt, after[0].JoinedAt)
		}
		leave(t, s, "room", "c1")
	})
}

func TestBadInput(t *testing.T) {
	stores(t, func(t *testing.T, s presence.Store) {
		if _, err := s.Join(ctxT(t), "room", "c1", canal.User{Username: "anon"}); !errors.Is(err, presence.ErrAnonymous) {
			t.Errorf("anonymous join: %v", err)
		}
		long := string(make([]byte, 300))
		for _, c := range []struct{ group, channel string }{{"", "c"}, {"g", ""}, {long, "c"}, {"g", long}} {
			if _, err := s.Join(ctxT(t), c.group, c.channel, alice); !errors.Is(err, presence.ErrInvalid) {
				t.Errorf("Join(%d-byte group, %d-byte channel): %v", len(c.group), len(c.channel), err)
			}
			if _, err := s.Leave(ctxT(t), c.group, c.channel, alice); !errors.Is(err, presence.ErrInvalid) {
				t.Errorf("Leave(%d-byte group, %d-byte channel): %v", len(c.group), len(c.channel), err)
			}
		}
		if _, err := s.Presence(ctxT(t), ""); !errors.Is(err, presence.ErrInvalid) {
			t.Errorf("Presence(\"\"): %v", err)
		}
		if es, err := s.Presence(ctxT(t), "empty"); err != nil || len(es) != 0 {
			t.Errorf("empty group: %v %v", es, err)
		}
	})
}

// A crashed process's entries vanish within Liveness, the user counts with them, and
// nothing is left in Redis.
func TestRedisCrashedProcess(t *testing.T) {
	srv := canaltest.StartRedis(t)
	opts := presence.RedisOptions{Liveness: 300 * time.Millisecond}
	live := newRedis(t, srv, opts)
	dead := newRedis(t, srv, opts)
	join(t, live, "room", "a", alice)
	join(t, dead, "room", "b", alice)
	join(t, dead, "room", "c", bob)
	if l := summary(t, live, "room"); l != "[1:alice:2:<nil>][2:bob:1:<nil>]" {
		t.Fatalf("before the crash: %s", l)
	}
	dead.Crash()
	deadline := time.Now().Add(5 * time.Second)
	for summary(t, live, "room") != "[1:alice:1:<nil>]" {
		if time.Now().After(deadline) {
			t.Fatalf("crashed process's entries still listed: %s", summary(t, live, "room"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The counts were decremented too: alice's last connection leaves last.
	if !leave(t, live, "room", "a") {
		t.Error("alice's last live connection did not leave last")
	}
	if n := keys(t, srv, "canal:presence:*"); n != 0 {
		t.Errorf("%d presence keys left", n)
	}
}

// A process whose liveness key lapsed while it lived (a FLUSHALL, a Redis restart)
// writes its entries again.
func TestRedisRestoresAfterLapse(t *testing.T) {
	srv := canaltest.StartRedis(t)
	s := newRedis(t, srv, presence.RedisOptions{Liveness: 300 * time.Millisecond})
	join(t, s, "room", "a", alice)
	c := srv.Client(t)
	if err := c.Do(ctxT(t), c.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for summary(t, s, "room") != "[1:alice:1:<nil>]" {
		if time.Now().After(deadline) {
			t.Fatal("entries not restored after FLUSHALL")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !leave(t, s, "room", "a") {
		t.Error("restored entry did not leave last")
	}
}

func TestRedisCloseDeletesLiveness(t *testing.T) {
	srv := canaltest.StartRedis(t)
	s := newRedis(t, srv, presence.RedisOptions{})
	if n := keys(t, srv, "canal:presence.alive:*"); n != 1 {
		t.Fatalf("%d liveness keys, want 1", n)
	}
	if err := s.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctxT(t)); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := keys(t, srv, "canal:presence*"); n != 0 {
		t.Errorf("%d keys after Close", n)
	}
}

func TestNewRedisValidates(t *testing.T) {
	srv := canaltest.StartRedis(t)
	c := srv.Client(t)
	for _, tc := range []struct {
		name string
		opts presence.RedisOptions
	}{
		{"short liveness", presence.RedisOptions{Liveness: time.Millisecond}},
		{"negative liveness", presence.RedisOptions{Liveness: -time.Second}},
		{"expiry below liveness", presence.RedisOptions{KeyExpiry: time.Second}},
	} {
		if _, err := presence.NewRedis(ctxT(t), c, tc.opts); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := presence.NewRedis(ctxT(t), nil, presence.RedisOptions{}); err == nil {
		t.Error("nil client accepted")
	}
}

func TestRedisDown(t *testing.T) {
	srv := canaltest.StartRedis(t)
	s := newRedis(t, srv, presence.RedisOptions{})
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := s.Join(ctx, "room", "a", alice); !errors.Is(err, canal.ErrUnavailable) {
		t.Errorf("Join with Redis down: %v", err)
	}
	if _, err := s.Presence(ctx, "room"); !errors.Is(err, canal.ErrUnavailable) {
		t.Errorf("Presence with Redis down: %v", err)
	}
}
