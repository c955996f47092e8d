package main

import (
	"context"
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
func startChat(t *testing.T) string {
	t.Helper()
	app, srv, layer, err := newApp(config{AllowedHosts: []string{"localhost", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Listener(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = app.ShutdownWithContext(ctx)
		_ = layer.Close(ctx)
		<-done
	})
	return ln.Addr().String()
}

func TestPageIsServed(t *testing.T) {
	t.Parallel()
	addr := startChat(t)
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

func TestTwoClientsInARoom(t *testing.T) {
	t.Parallel()
	addr := startChat(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := canaltest.DialOptions{Origin: "http://" + addr}
	dial := func(room string) *canaltest.Communicator {
		c, err := canaltest.Dial(ctx, "ws://"+addr+"/ws/chat/"+room+"/", opts)
		if err != nil {
			t.Fatalf("dial %s: %v", room, err)
		}
		t.Cleanup(func() { _ = c.Close(1000) })
		return c
	}
	alice, bob, carol := dial("lobby"), dial("lobby"), dial("other")

	if err := alice.SendJSON(map[string]string{"message": "hello bob"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*canaltest.Communicator{alice, bob} {
		var got map[string]string
		if err := c.ReceiveJSON(ctx, &got); err != nil || got["message"] != "hello bob" || got["user"] != "anonymous" {
			t.Fatalf("got %v, %v", got, err)
		}
	}
	if err := carol.ExpectNothing(200 * time.Millisecond); err != nil {
		t.Fatalf("another room got the message: %v", err)
	}
}

func TestForeignOriginRefused(t *testing.T) {
	t.Parallel()
	addr := startChat(t)
	_, err := canaltest.Dial(context.Background(), "ws://"+addr+"/ws/chat/lobby/", canaltest.DialOptions{Origin: "http://evil.example"})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != 403 {
		t.Fatalf("dial from a foreign origin: %v, want 403", err)
	}
}

func TestUnknownPathIs404(t *testing.T) {
	t.Parallel()
	addr := startChat(t)
	_, err := canaltest.Dial(context.Background(), "ws://"+addr+"/ws/nope/", canaltest.DialOptions{Origin: "http://" + addr})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != 404 {
		t.Fatalf("dial an unknown path: %v, want 404", err)
	}
}
