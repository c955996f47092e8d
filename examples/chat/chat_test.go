package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal/canaltest"
)

// startChat runs the demo on a private port and returns its address.
func startChat(t *testing.T, cfg config) string {
	t.Helper()
	if cfg.AllowedHosts == nil {
		cfg.AllowedHosts = []string{"localhost", "127.0.0.1"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := newApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = a.fiber.Listener(a.srv.Listener(ln)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Close(ctx)
		<-done
	})
	return ln.Addr().String()
}

// signIn gets a fresh ticket for name from the demo's sign-in endpoint.
func signIn(t *testing.T, addr, name string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"name": name})
	resp, err := http.Post("http://"+addr+"/signin", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Ticket string `json:"ticket"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Ticket == "" {
		t.Fatalf("sign in %q: HTTP %d, %v", name, resp.StatusCode, err)
	}
	return out.Ticket
}

func TestPageIsServed(t *testing.T) {
	t.Parallel()
	addr := startChat(t, config{})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "new WebSocket(") {
		t.Fatalf("GET / = %d, page without the chat client", resp.StatusCode)
	}
}

func TestSignInValidatesName(t *testing.T) {
	t.Parallel()
	addr := startChat(t, config{})
	for _, name := range []string{"", "has space", strings.Repeat("x", 33), "<script>"} {
		body, _ := json.Marshal(map[string]string{"name": name})
		resp, err := http.Post("http://"+addr+"/signin", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("sign in %q: HTTP %d, want 400", name, resp.StatusCode)
		}
	}
}

// dialRoom signs name in on addr and opens a socket to room there. The test's cleanup
// closes it.
func dialRoom(ctx context.Context, t *testing.T, addr, name, room string) *canaltest.Communicator {
	t.Helper()
	opts := canaltest.DialOptions{
		Origin:       "http://" + addr,
		Subprotocols: []string{"canal.ticket", "canal.ticket." + signIn(t, addr, name)},
	}
	c, err := canaltest.Dial(ctx, "ws://"+addr+"/ws/chat/"+room+"/", opts)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", room, name, err)
	}
	t.Cleanup(func() { _ = c.Close(1000) })
	return c
}

// nextChat returns the next frame that is not about presence ("online", "joined",
// "left"), which the presence tests check.
func nextChat(ctx context.Context, c *canaltest.Communicator) (map[string]any, error) {
	for {
		var got map[string]any
		if err := c.ReceiveJSON(ctx, &got); err != nil {
			return nil, err
		}
		if _, ok := got["online"]; ok {
			continue
		}
		if _, ok := got["joined"]; ok {
			continue
		}
		if _, ok := got["left"]; ok {
			continue
		}
		return got, nil
	}
}

// wantChat reads the next chat frame of each client and checks it is text from user.
func wantChat(ctx context.Context, t *testing.T, user, text string, clients ...*canaltest.Communicator) {
	t.Helper()
	for i, c := range clients {
		got, err := nextChat(ctx, c)
		if err != nil || got["message"] != text || got["user"] != user {
			t.Fatalf("client %d: got %v, %v; want %q from %s", i, got, err, text, user)
		}
	}
}

// testRoom puts alice on the chat at addrA, bob on addrB (the same process or another
// one sharing its Redis) in one room, and carol in another room: each of alice and bob
// sees what the other says, carol sees neither.
func testRoom(t *testing.T, addrA, addrB string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice := dialRoom(ctx, t, addrA, "alice", "lobby")
	bob := dialRoom(ctx, t, addrB, "bob", "lobby")
	carol := dialRoom(ctx, t, addrB, "carol", "other")

	if err := alice.SendJSON(map[string]string{"message": "hello bob"}); err != nil {
		t.Fatal(err)
	}
	wantChat(ctx, t, "alice", "hello bob", alice, bob)
	if err := bob.SendJSON(map[string]string{"message": "hello alice"}); err != nil {
		t.Fatal(err)
	}
	wantChat(ctx, t, "bob", "hello alice", alice, bob)
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if got, err := nextChat(short, carol); err == nil {
		t.Fatalf("another room got the message: %v", got)
	}
}

func TestTwoClientsInARoom(t *testing.T) {
	t.Parallel()
	addr := startChat(t, config{})
	testRoom(t, addr, addr)
}

func TestTwoClientsInARoomWithRedis(t *testing.T) {
	t.Parallel()
	addr := startChat(t, config{RedisURL: canaltest.StartRedis(t).URL()}) // the core layer
	testRoom(t, addr, addr)
}

// Two chat processes (two apps, each with its own channel layer, ticket store and
// listener) on one Redis share their rooms: a client of one and a client of the other
// talk, with each Redis backend.
func TestRoomAcrossTwoProcesses(t *testing.T) {
	t.Parallel()
	for _, layer := range []string{layerCore, layerPubSub} {
		t.Run(layer, func(t *testing.T) {
			t.Parallel()
			cfg := config{RedisURL: canaltest.StartRedis(t).URL(), Layer: layer}
			testRoom(t, startChat(t, cfg), startChat(t, cfg))
		})
	}
}

// While Redis is down, a message to the room gets an error frame, and the socket
// stays open.
func TestRedisDownKeepsSockets(t *testing.T) {
	t.Parallel()
	for _, layer := range []string{layerCore, layerPubSub} {
		t.Run(layer, func(t *testing.T) {
			t.Parallel()
			redis := canaltest.StartRedis(t)
			addr := startChat(t, config{RedisURL: redis.URL(), Layer: layer})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			alice := dialRoom(ctx, t, addr, "alice", "lobby")
			redis.Kill()
			for range 2 { // and again: the first failure did not close it
				if err := alice.SendJSON(map[string]string{"message": "anyone?"}); err != nil {
					t.Fatal(err)
				}
				got, err := nextChat(ctx, alice)
				if msg, _ := got["error"].(string); err != nil || !strings.Contains(msg, "unreachable") {
					t.Fatalf("got %v, %v; want an error frame", got, err)
				}
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	addr := startChat(t, config{})
	tests := []struct {
		name   string
		path   string
		origin string
		ticket bool
		want   int
	}{
		{"no ticket", "/ws/chat/lobby/", "http://" + addr, false, 403},
		{"foreign origin", "/ws/chat/lobby/", "http://evil.example", true, 403},
		{"unknown path", "/ws/nope/", "http://" + addr, true, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := "ws://" + addr + tt.path
			if tt.ticket {
				url += "?ticket=" + signIn(t, addr, "mallory")
			}
			_, err := canaltest.Dial(context.Background(), url, canaltest.DialOptions{Origin: tt.origin})
			var he *canaltest.HandshakeError
			if !errors.As(err, &he) || he.Status != tt.want {
				t.Fatalf("dial: %v, want HTTP %d", err, tt.want)
			}
		})
	}
}

// wantPresence reads c's next frame and checks it is the presence frame want, e.g.
// {"joined": "bob"} or {"online": ["alice", "bob"]}.
func wantPresence(ctx context.Context, t *testing.T, c *canaltest.Communicator, want string) {
	t.Helper()
	s, err := c.ReceiveText(ctx)
	if err != nil || s != want {
		t.Fatalf("got %s, %v; want %s", s, err, want)
	}
}

func postKick(t *testing.T, addr, token, name string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"name": name})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/admin/kick", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Who is online follows arrivals and departures across two processes on one Redis
// (a user's second tab is no news), and an admin's kick closes a user's sockets in
// the other process too.
func TestOnlineAndKickAcrossProcesses(t *testing.T) {
	t.Parallel()
	const token = "test-admin-token-0123456789"
	cfg := config{RedisURL: canaltest.StartRedis(t).URL(), AdminToken: token}
	addrA, addrB := startChat(t, cfg), startChat(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	alice := dialRoom(ctx, t, addrA, "alice", "lobby")
	wantPresence(ctx, t, alice, `{"online":["alice"]}`)
	wantPresence(ctx, t, alice, `{"joined":"alice"}`)
	bob := dialRoom(ctx, t, addrB, "bob", "lobby")
	wantPresence(ctx, t, bob, `{"online":["alice","bob"]}`)
	wantPresence(ctx, t, alice, `{"joined":"bob"}`)
	wantPresence(ctx, t, bob, `{"joined":"bob"}`)
	bob2 := dialRoom(ctx, t, addrA, "bob", "lobby") // a second tab, on the other process
	wantPresence(ctx, t, bob2, `{"online":["alice","bob"]}`)
	if err := alice.ExpectNothing(200 * time.Millisecond); err != nil {
		t.Fatalf("bob's second tab was announced: %v", err)
	}

	for _, tc := range []struct {
		token, name string
		want        int
	}{
		{"", "bob", http.StatusForbidden},
		{"wrong", "bob", http.StatusForbidden},
		{token, "no spaces", http.StatusBadRequest},
	} {
		if got := postKick(t, addrA, tc.token, tc.name); got != tc.want {
			t.Errorf("kick %q with token %q: HTTP %d, want %d", tc.name, tc.token, got, tc.want)
		}
	}
	if got := postKick(t, addrA, token, "bob"); got != http.StatusOK {
		t.Fatalf("kick: HTTP %d", got)
	}
	for _, c := range []*canaltest.Communicator{bob, bob2} {
		for {
			code, reason, err := c.ExpectClose(ctx)
			if err != nil && strings.Contains(err.Error(), "want close") {
				continue // a presence frame that was on its way
			}
			if err != nil || code != 4403 || reason != "kicked by an admin" {
				t.Fatalf("bob's socket: close %d %q %v", code, reason, err)
			}
			break
		}
	}
	wantPresence(ctx, t, alice, `{"left":"bob"}`)
}

func TestKickIsOffWithoutToken(t *testing.T) {
	t.Parallel()
	addr := startChat(t, config{})
	if got := postKick(t, addr, "", "bob"); got != http.StatusNotFound && got != http.StatusMethodNotAllowed {
		t.Errorf("POST /admin/kick without AdminToken: HTTP %d, want 404", got)
	}
}
