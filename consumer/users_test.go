package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/presence"
)

// asUser is test authentication: ?user=<id>&name=<username>&staff=1 becomes scope.User.
func asUser(next canal.Handler) canal.Handler {
	return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
		s := c.Scope()
		q := s.Query()
		if id := q.Get("user"); id != "" {
			s.User = canal.User{ID: id, Username: q.Get("name"), Attrs: map[string]any{"is_staff": q.Get("staff") == "1"}}
		}
		return next.Connect(ctx, c)
	})
}

// member reports what reaches it: events, user changes, and its view of the user.
type member struct {
	mu      sync.Mutex
	changes []string
}

func (m *member) ReceiveJSON(_ context.Context, c *consumer.Conn, _ json.RawMessage) error {
	u := c.User()
	return c.SendText(fmt.Sprintf("user:%s:%s:staff=%v", u.ID, u.Username, u.Bool("is_staff")))
}

func (m *member) Event(_ context.Context, c *consumer.Conn, ev canal.Message) error {
	return c.SendText(fmt.Sprintf("event:%s:%s:%s", ev.Type(), ev.String("id"), ev.String("note")))
}

func (m *member) UserChanged(_ context.Context, c *consumer.Conn, old, new canal.User) error {
	if c.Scope().CurrentUser().Bool("is_staff") != new.Bool("is_staff") {
		return errors.New("CurrentUser disagrees with the hook's new user")
	}
	return c.SendText(fmt.Sprintf("changed:staff=%v->%v", old.Bool("is_staff"), new.Bool("is_staff")))
}

func usersServer(t *testing.T, layer canal.Layer, opts consumer.Options[*member]) (*canaltest.Server, *consumer.Handler[*member]) {
	t.Helper()
	opts.Layer, opts.Logger = layer, quiet
	h, err := consumer.New(func() *member { return &member{} }, opts)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, asUser(h)), h
}

func dialAs(t *testing.T, s *canaltest.Server, query string) *canaltest.Communicator {
	t.Helper()
	c, err := canaltest.Dial(ctxT(t), s.URL("/?"+query), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Abort)
	return c
}

func expectText(t *testing.T, c *canaltest.Communicator, want string) {
	t.Helper()
	got, err := c.ReceiveText(ctxT(t))
	if err != nil || got != want {
		t.Fatalf("received %q, %v; want %q", got, err, want)
	}
}

func TestUserGroup(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 89)
	for _, tc := range []struct{ id, want string }{
		{"", ""},
		{"42", "canal.user.42"},
		{"6f1c2a4e-0b7d-4d5e-9a0f-3c2b1a0d9e8f", "canal.user.6f1c2a4e-0b7d-4d5e-9a0f-3c2b1a0d9e8f"},
		{strings.Repeat("x", 88), "canal.user." + strings.Repeat("x", 88)},
		{"a b", "canal.userh.c8687a08aa5d6ed2044328fa6a697ab8e96dc34291e8c2034ae8c38e6fcc6d65"},
		{"élan", "canal.userh.640b44d5a7819f78e1665e17c79a316b6e187376639b170af5081dd3a6b03990"},
		{long, ""}, // hashed: checked below
	} {
		got := consumer.UserGroup(tc.id)
		if tc.want != "" || tc.id == "" {
			if got != tc.want {
				t.Errorf("UserGroup(%q) = %q, want %q", tc.id, got, tc.want)
			}
			if tc.id == "" || !strings.HasPrefix(tc.want, "canal.userh.") {
				continue
			}
		}
		if !strings.HasPrefix(got, "canal.userh.") || len(got) != len("canal.userh.")+64 {
			t.Errorf("UserGroup(%q) = %q, want a hashed name", tc.id, got)
		}
		if err := layers.ValidGroupName(got); err != nil {
			t.Errorf("UserGroup(%q): %v", tc.id, err)
		}
	}
}

func TestDisconnectUserClosesEveryConnection(t *testing.T) {
	t.Parallel()
	layer := newLayer(t)
	s, _ := usersServer(t, layer, consumer.Options[*member]{})
	tab1 := dialAs(t, s, "user=42&name=alice")
	tab2 := dialAs(t, s, "user=42&name=alice")
	other := dialAs(t, s, "user=7&name=bob")
	anon := dialAs(t, s, "")
	// The handshakes are done once each connection answers.
	for _, c := range []*canaltest.Communicator{tab1, tab2, other, anon} {
		_ = c.SendText("{}")
		if _, err := c.ReceiveText(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := consumer.DisconnectUser(ctxT(t), layer, "42", 0, "logged out"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*canaltest.Communicator{tab1, tab2} {
		code, reason, err := c.ExpectClose(ctxT(t))
		if err != nil || code != 4403 || reason != "logged out" {
			t.Errorf("close %d %q %v, want 4403 \"logged out\"", code, reason, err)
		}
	}
	for _, c := range []*canaltest.Communicator{other, anon} {
		_ = c.SendText("{}")
		if _, err := c.ReceiveText(ctxT(t)); err != nil {
			t.Errorf("another user's connection: %v", err)
		}
	}
	if err := consumer.DisconnectUser(ctxT(t), layer, "7", 4001, ""); err != nil {
		t.Fatal(err)
	}
	if code, _, err := other.ExpectClose(ctxT(t)); code != 4001 || err != nil {
		t.Errorf("close %d %v, want 4001", code, err)
	}
}

func TestUserCallsRefuseBadInput(t *testing.T) {
	t.Parallel()
	layer := newLayer(t)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"no user", consumer.DisconnectUser(ctx, layer, "", 0, "")},
		{"bad code", consumer.DisconnectUser(ctx, layer, "1", 1006, "")},
		{"long reason", consumer.DisconnectUser(ctx, layer, "1", 0, strings.Repeat("x", 124))},
		{"no layer", consumer.DisconnectUser(ctx, nil, "1", 0, "")},
		{"reserved type", consumer.SendToUser(ctx, layer, "1", canal.Message{"type": consumer.EventRefresh})},
		{"no type", consumer.SendToUser(ctx, layer, "1", canal.Message{})},
		{"refresh without username", consumer.RefreshUser(ctx, layer, canal.User{ID: "1"})},
		{"refresh of anonymous", consumer.RefreshUser(ctx, layer, canal.User{})},
		{"claim named id", consumer.RefreshUser(ctx, layer, canal.User{ID: "1", Username: "a", Attrs: map[string]any{"id": 2}})},
	} {
		if tc.err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	for _, t2 := range []string{consumer.EventDisconnect, consumer.EventRefresh} {
		_, err := consumer.New(func() *member { return &member{} }, consumer.Options[*member]{
			Layer: layer, Events: map[string]consumer.EventFunc[*member]{t2: nil},
		})
		if err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("Events[%q]: %v", t2, err)
		}
	}
}

func TestSendToUser(t *testing.T) {
	t.Parallel()
	layer := newLayer(t)
	s, _ := usersServer(t, layer, consumer.Options[*member]{})
	a1, a2, b := dialAs(t, s, "user=42&name=alice"), dialAs(t, s, "user=42&name=alice"), dialAs(t, s, "user=7&name=bob")
	for _, c := range []*canaltest.Communicator{a1, a2, b} {
		_ = c.SendText("{}")
		_, _ = c.ReceiveText(ctxT(t))
	}
	if err := consumer.SendToUser(ctxT(t), layer, "42", canal.Message{"type": "notify", "note": "hi"}); err != nil {
		t.Fatal(err)
	}
	expectText(t, a1, "event:notify::hi")
	expectText(t, a2, "event:notify::hi")
	if err := b.ExpectNothing(100 * time.Millisecond); err != nil {
		t.Errorf("another user got it: %v", err)
	}
}

func TestNoUserGroup(t *testing.T) {
	t.Parallel()
	layer := newLayer(t)
	s, _ := usersServer(t, layer, consumer.Options[*member]{NoUserGroup: true})
	c := dialAs(t, s, "user=42&name=alice")
	_ = c.SendText("{}")
	expectText(t, c, "user:42:alice:staff=false")
	if err := consumer.DisconnectUser(ctxT(t), layer, "42", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.ExpectNothing(100 * time.Millisecond); err != nil {
		t.Errorf("NoUserGroup connection was reached: %v", err)
	}
}

func TestRefreshUser(t *testing.T) {
	t.Parallel()
	layer := newLayer(t)
	s, h := usersServer(t, layer, consumer.Options[*member]{})
	c := dialAs(t, s, "user=42&name=alice")
	_ = c.SendText("{}")
	expectText(t, c, "user:42:alice:staff=false")

	staff := canal.User{ID: "42", Username: "alice", Attrs: map[string]any{"is_staff": true}}
	if err := consumer.RefreshUser(ctxT(t), layer, staff); err != nil {
		t.Fatal(err)
	}
	expectText(t, c, "changed:staff=false->true")
	_ = c.SendText("{}")
	expectText(t, c, "user:42:alice:staff=true") // the hooks' Scope.User follows

	// Refreshes that must not change the user: another ID, a malformed value. Both
	// are dropped and counted; the connection stays.
	bad := []canal.Message{
		{"type": consumer.EventRefresh, "user": `{"id": 7, "username": "bob", "is_staff": false}`},
		{"type": consumer.EventRefresh, "user": `{"id": 42}`},
		{"type": consumer.EventRefresh, "user": 42},
	}
	for _, m := range bad {
		if err := layer.GroupSend(ctxT(t), consumer.UserGroup("42"), m); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SendText("{}")
	expectText(t, c, "user:42:alice:staff=true")
	if got := h.Stats().BadEvents; got != uint64(len(bad)) {
		t.Errorf("BadEvents = %d, want %d", got, len(bad))
	}
}

// Join and leave events go to the group once per user, however many tabs it has.
func TestPresenceEventsOncePerUser(t *testing.T) {
	t.Parallel()
	layer := newLayer(t)
	store := presence.NewMemory(presence.Options{})
	s, _ := usersServer(t, layer, consumer.Options[*member]{Groups: []string{"room"}, Presence: store, PresenceEvents: true})
	ready := func(c *canaltest.Communicator) {
		t.Helper()
		_ = c.SendText("{}")
		if _, err := c.ReceiveText(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	bob := dialAs(t, s, "user=7&name=bob")
	expectText(t, bob, "event:presence.join:7:")
	ready(bob)
	tab1 := dialAs(t, s, "user=42&name=alice")
	expectText(t, bob, "event:presence.join:42:")
	ready(tab1)
	tab2 := dialAs(t, s, "user=42&name=alice")
	ready(tab2)
	anon := dialAs(t, s, "")
	ready(anon)
	if err := bob.ExpectNothing(100 * time.Millisecond); err != nil {
		t.Fatalf("a second tab or an anonymous user was announced: %v", err)
	}
	es, err := store.Presence(ctxT(t), "room")
	conns := map[string]int{} // by user; entries joined in the same millisecond come in any order
	for _, e := range es {
		conns[e.ID] = e.Connections
	}
	if err != nil || len(es) != 2 || conns["7"] != 1 || conns["42"] != 2 {
		t.Fatalf("presence %+v %v", es, err)
	}
	_ = tab1.Close(1000)
	if err := bob.ExpectNothing(200 * time.Millisecond); err != nil {
		t.Fatalf("the first of two tabs leaving was announced: %v", err)
	}
	_ = tab2.Close(1000)
	expectText(t, bob, "event:presence.leave:42:")
	_ = bob.Close(1000)
	deadline := time.Now().Add(5 * time.Second)
	for store.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d groups left in presence after everyone left", store.Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A refused handshake never appears in presence.
type groupRefuser struct{ member }

func (*groupRefuser) Connect(ctx context.Context, c *consumer.Conn) error {
	if err := c.GroupAdd(ctx, "room"); err != nil {
		return err
	}
	return canal.Reject(403, "no")
}

func TestPresenceSkipsRefusedHandshake(t *testing.T) {
	t.Parallel()
	layer := newLayer(t)
	store := presence.NewMemory(presence.Options{})
	h, err := consumer.New(func() *groupRefuser { return &groupRefuser{} }, consumer.Options[*groupRefuser]{Layer: layer, Presence: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, asUser(h))
	if _, err := canaltest.Dial(ctxT(t), s.URL("/?user=1&name=a"), canaltest.DialOptions{}); err == nil {
		t.Fatal("handshake accepted")
	}
	if store.Len() != 0 {
		t.Error("a refused connection was recorded")
	}
}
