package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
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
	a, err := newApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = a.fiber.Listener(ln) }()
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

func testRoom(t *testing.T, cfg config) {
	addr := startChat(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dial := func(name, room string) *canaltest.Communicator {
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
	alice, bob, carol := dial("alice", "lobby"), dial("bob", "lobby"), dial("carol", "other")

	if err := alice.SendJSON(map[string]string{"message": "hello bob"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*canaltest.Communicator{alice, bob} {
		var got map[string]string
		if err := c.ReceiveJSON(ctx, &got); err != nil || got["message"] != "hello bob" || got["user"] != "alice" {
			t.Fatalf("got %v, %v", got, err)
		}
	}
	if err := carol.ExpectNothing(200 * time.Millisecond); err != nil {
		t.Fatalf("another room got the message: %v", err)
	}
}

func TestTwoClientsInARoom(t *testing.T) {
	t.Parallel()
	testRoom(t, config{})
}

func TestTwoClientsInARoomWithRedisTickets(t *testing.T) {
	t.Parallel()
	testRoom(t, config{RedisURL: canaltest.StartRedis(t).URL()})
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
