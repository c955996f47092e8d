package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/ticket"
)

// lifetimeServer serves member with MaxAge and tickets from store as credentials.
func lifetimeServer(t *testing.T, store ticket.Store, maxAge time.Duration, reauth func(context.Context, string) (canal.User, error)) (*canaltest.Server, canal.Layer) {
	t.Helper()
	if reauth == nil {
		reauth = store.Consume
	}
	layer := newLayer(t)
	s, _ := usersServer(t, layer, consumer.Options[*member]{
		MaxAge: maxAge, ReauthGrace: 700 * time.Millisecond, Reauthorize: reauth,
	})
	return s, layer
}

func issue(t *testing.T, store ticket.Store, u canal.User) string {
	t.Helper()
	tk, err := store.Issue(ctxT(t), u, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func answer(t *testing.T, c *canaltest.Communicator, credential string) {
	t.Helper()
	if err := c.SendJSON(map[string]string{"type": consumer.EventReauth, "credential": credential}); err != nil {
		t.Fatal(err)
	}
}

func TestReauthInBand(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	s, _ := lifetimeServer(t, store, time.Second, nil)
	c := dialAs(t, s, "user=42&name=alice")
	alice := canal.User{ID: "42", Username: "alice", Attrs: map[string]any{"is_staff": true}}
	for round := range 2 {
		expectText(t, c, `{"type":"canal.reauth","within":1}`)
		answer(t, c, issue(t, store, alice))
		if round == 0 {
			expectText(t, c, "changed:staff=false->true")
			_ = c.SendText("{}") // the hooks see the new user at once
			expectText(t, c, "user:42:alice:staff=true")
		} else {
			expectText(t, c, "changed:staff=true->true")
		}
	}
	// No answer this time: closed once the grace period is over.
	expectText(t, c, `{"type":"canal.reauth","within":1}`)
	start := time.Now()
	code, reason, err := c.ExpectClose(ctxT(t))
	if err != nil || code != consumer.CloseReauthRequired || reason != "re-authorization required" {
		t.Fatalf("close %d %q %v", code, reason, err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("closed %v after the request; the grace is 700ms", waited)
	}
}

func TestReauthRefusals(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	s, _ := lifetimeServer(t, store, time.Hour, nil)
	for _, tc := range []struct {
		name, frame, reason string
	}{
		{"unknown ticket", `{"type":"canal.reauth","credential":"not-a-ticket"}`, "re-authorization failed"},
		{"another user", "", "re-authorization for another user"},
		{"no credential", `{"type":"canal.reauth"}`, "re-authorization without a credential"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialAs(t, s, "user=42&name=alice")
			frame := tc.frame
			if frame == "" {
				b, _ := json.Marshal(map[string]string{"type": "canal.reauth", "credential": issue(t, store, canal.User{ID: "7", Username: "bob"})})
				frame = string(b)
			}
			if err := c.SendText(frame); err != nil { // before being asked: allowed, and checked
				t.Fatal(err)
			}
			code, reason, err := c.ExpectClose(ctxT(t))
			if err != nil || code != 4401 || reason != tc.reason {
				t.Fatalf("close %d %q %v; want 4401 %q", code, reason, err, tc.reason)
			}
		})
	}
}

// A verifier that cannot answer lets the client try again within the grace period.
func TestReauthUnavailableRetries(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	var down atomic.Bool
	down.Store(true)
	reauth := func(ctx context.Context, cred string) (canal.User, error) {
		if down.Load() {
			return canal.User{}, fmt.Errorf("store: %w", canal.ErrUnavailable)
		}
		return store.Consume(ctx, cred)
	}
	s, _ := lifetimeServer(t, store, 300*time.Millisecond, reauth)
	c := dialAs(t, s, "user=42&name=alice")
	expectText(t, c, `{"type":"canal.reauth","within":1}`)
	answer(t, c, issue(t, store, canal.User{ID: "42", Username: "alice"}))
	expectText(t, c, `{"error":"unavailable","type":"canal.reauth"}`)
	down.Store(false)
	answer(t, c, issue(t, store, canal.User{ID: "42", Username: "alice"}))
	expectText(t, c, "changed:staff=false->false")
	expectText(t, c, `{"type":"canal.reauth","within":1}`) // the next round
}

// Layer messages cannot fake the timer or an answer.
func TestLifetimeEventsCannotBeForged(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	layer := newLayer(t)
	s, _ := usersServer(t, layer, consumer.Options[*member]{MaxAge: time.Hour, Reauthorize: store.Consume})
	c := dialAs(t, s, "user=42&name=alice")
	for _, m := range []canal.Message{
		{"type": "canal.lifetime", "seq": 1, "phase": "expired"},
		{"type": "canal.reauth", "credential": "x"},
	} {
		if err := layer.GroupSend(ctxT(t), consumer.UserGroup("42"), m); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SendText("{}")
	expectText(t, c, "user:42:alice:staff=false")
}

func TestLifetimeOptionsValidated(t *testing.T) {
	t.Parallel()
	ok := func(context.Context, string) (canal.User, error) { return canal.User{}, nil }
	for _, o := range []consumer.Options[*member]{
		{MaxAge: time.Minute},
		{MaxAge: -time.Minute, Reauthorize: ok},
		{MaxAge: time.Minute, ReauthGrace: -time.Second, Reauthorize: ok},
	} {
		if _, err := consumer.New(func() *member { return &member{} }, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
