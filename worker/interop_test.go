package worker_test

// Interop with real Django Channels (testdata/django_peer.py on Debian's
// /usr/bin/python3, and on the newer channels_redis of trixie and sid when
// scripts/debian-django.sh unpacked them): Django code and a Channels consumer ask
// a Go worker and get its replies; Django's send meets a busy Go worker's capacity;
// a Go program asks a Django runworker; and what each loses to SIGKILL.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/worker"
)

const peerTimeout = time.Minute // bound on one peer process

// peerScript is relative to the package directory, where go test runs.
var peerScript = filepath.Join("testdata", "django_peer.py")

// serializers returns the serializer formats stack d's channels_redis knows:
// "json" came with 4.2.1 (trixie).
func serializers(d canaltest.DjangoStack) []string {
	if d.Name == "bookworm" {
		return []string{"msgpack"}
	}
	return []string{"msgpack", "json"}
}

// forStacks runs f once per Django stack and serializer (msgpack only unless
// every is set), as parallel subtests.
func forStacks(t *testing.T, every bool, f func(t *testing.T, d canaltest.DjangoStack, serializer string)) {
	for _, d := range canaltest.DjangoStacks(t) {
		formats := serializers(d)
		if !every {
			formats = formats[:1]
		}
		for _, s := range formats {
			t.Run(d.Name+"/"+s, func(t *testing.T) {
				t.Parallel()
				f(t, d, s)
			})
		}
	}
}

// runPeer runs the peer in mode to its end and decodes the JSON line it prints.
func runPeer(t *testing.T, d canaltest.DjangoStack, mode, url string, config map[string]any, arg string) map[string]any {
	t.Helper()
	cfg, _ := json.Marshal(config)
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	cmd := d.Command(ctx, peerScript, mode, url, string(cfg), arg)
	stderr := &canaltest.LogBuffer{}
	cmd.Stderr = stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("django_peer.py %s: %v; stderr:\n%s", mode, err, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("django_peer.py %s printed %q: %v; stderr:\n%s", mode, b, err, stderr)
	}
	return res
}

func pyConfig(serializer string) map[string]any {
	if serializer == "json" {
		return map[string]any{"serializer_format": "json"}
	}
	return map[string]any{}
}

// thumbnailer is the Go worker of these tests: it answers thumbnail.make on the
// request's reply_channel.
func thumbnailer(layer canal.Layer) worker.Channels {
	return worker.Channels{"thumbnails": worker.Types{
		"thumbnail.make": func(ctx context.Context, m canal.Message) error {
			return worker.Reply(ctx, layer, m, canal.Message{
				"type": "thumbnail.done", "id": m["id"], "url": fmt.Sprintf("/thumbs/%v.jpg", m["id"]),
			})
		},
	}}
}

func TestInteropDjangoAsksGoWorker(t *testing.T) {
	t.Parallel()
	forStacks(t, true, func(t *testing.T, d canaltest.DjangoStack, serializer string) {
		srv := canaltest.StartRedis(t)
		layer := redisLayer(t, srv.URL(), layers.RedisOptions{SerializerFormat: serializer})
		w := start(t, layer, thumbnailer(layer), worker.Options{Concurrency: 4})

		// Django code: new_channel(), send with reply_channel, receive the replies.
		const n = 20
		res := runPeer(t, d, "request", srv.URL(), pyConfig(serializer), fmt.Sprint(n))
		replies, _ := res["replies"].([]any)
		if len(replies) != n {
			t.Fatalf("Django got %v", res)
		}
		seen := map[float64]bool{}
		for _, r := range replies {
			m := r.(map[string]any)
			id := m["id"].(float64)
			if m["type"] != "thumbnail.done" || m["url"] != fmt.Sprintf("/thumbs/%v.jpg", id) || seen[id] {
				t.Fatalf("reply %v", m)
			}
			seen[id] = true
		}

		// A Channels consumer asks with its own channel name and its thumbnail_done
		// handler receives the answer.
		res = runPeer(t, d, "consumer", srv.URL(), pyConfig(serializer), "7")
		want := `{"reply":{"id":7,"type":"thumbnail.done","url":"/thumbs/7.jpg"},"type":"result"}`
		if got, _ := json.Marshal(res); string(got) != want {
			t.Fatalf("consumer got %s, want %s", got, want)
		}
		if st := w.Stats(); st.Handled != n+1 || st.Received != n+1 {
			t.Fatalf("stats %+v", st)
		}
		if st := layer.Stats(); st.Malformed != 0 {
			t.Fatalf("layer stats %+v", st)
		}
	})
}

// A Go worker whose slots are busy leaves messages in Redis: Django's send raises
// ChannelFull at Django's capacity, and nothing sent before is lost.
func TestInteropDjangoSendFullWhileGoWorkerBusy(t *testing.T) {
	t.Parallel()
	forStacks(t, false, func(t *testing.T, d canaltest.DjangoStack, _ string) {
		srv := canaltest.StartRedis(t)
		release := make(chan struct{})
		got := &recorder{}
		w := start(t, redisLayer(t, srv.URL(), layers.RedisOptions{}), worker.Channels{"thumbnails": worker.Types{
			"thumbnail.make": func(ctx context.Context, m canal.Message) error {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return got.Handle(ctx, m)
			},
		}}, worker.Options{Concurrency: 1})

		config := map[string]any{"capacity": 3}
		res := runPeer(t, d, "send", srv.URL(), config, `[{"type": "thumbnail.make", "id": 0}]`)
		if fmt.Sprint(res["results"]) != "[ok]" {
			t.Fatalf("first send: %v", res)
		}
		eventually(t, "the worker busy", func() bool { return w.Stats().InFlight == 1 })
		res = runPeer(t, d, "send", srv.URL(), config,
			`[{"type": "thumbnail.make", "id": 1}, {"type": "thumbnail.make", "id": 2}, `+
				`{"type": "thumbnail.make", "id": 3}, {"type": "thumbnail.make", "id": 4}]`)
		if fmt.Sprint(res["results"]) != "[ok ok ok full]" {
			t.Fatalf("sends to a busy worker: %v", res)
		}
		close(release)
		eventually(t, "4 handled", func() bool { return len(got.got()) == 4 })
		if fmt.Sprint(got.got()) != "[0 1 2 3]" { // Concurrency 1: in order
			t.Fatalf("handled %v", got.got())
		}
	})
}

// The other way: a Go program asks a Django worker (channels' Worker, as
// `manage.py runworker emails` runs it) and receives its answer. Then both kinds of
// worker are killed with SIGKILL while busy, to compare what they lose.
func TestInteropGoAsksDjangoWorkerAndKill9(t *testing.T) {
	t.Parallel()
	forStacks(t, false, func(t *testing.T, d canaltest.DjangoStack, _ string) {
		srv := canaltest.StartRedis(t)
		layer := redisLayer(t, srv.URL(), layers.RedisOptions{})
		ctx := context.Background()

		pctx, cancel := context.WithTimeout(ctx, peerTimeout)
		defer cancel()
		cmd := d.Command(pctx, peerScript, "serve", srv.URL(), "{}")
		stderr := &canaltest.LogBuffer{}
		cmd.Stderr = stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 64)
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		killed := false
		kill := func() {
			if !killed {
				killed = true
				cmd.Process.Kill()
				<-readDone
				cmd.Wait()
			}
		}
		t.Cleanup(kill)
		next := func() string {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the Django worker exited; stderr:\n%s", stderr)
				}
				return l
			case <-time.After(waitTimeout):
				t.Fatalf("the Django worker said nothing; stderr:\n%s", stderr)
				return ""
			}
		}
		if l := next(); l != `{"ready": true}` {
			t.Fatalf("Django worker said %q", l)
		}

		back, err := layer.NewChannel(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		send(t, layer, "emails", canal.Message{"type": "email.send", "id": 3, worker.ReplyChannel: back})
		rctx, rcancel := context.WithTimeout(ctx, waitTimeout)
		defer rcancel()
		m, err := layer.Receive(rctx, back)
		if err != nil || m.Type() != "email.sent" || m["id"] != int64(3) {
			t.Fatalf("Django worker's reply %v, %v; stderr:\n%s", m, err, stderr)
		}

		// SIGKILL while busy. Channels' Worker receives ahead of its consumer into an
		// unbounded in-process queue, so it has taken all 5 from Redis while it
		// handles the first: all 5 die with it (a Go worker with Concurrency 2 takes
		// 2 and leaves 3: TestRedisTwoProcessesAndKill9).
		for i := range 5 {
			send(t, layer, "emails", canal.Message{"type": "email.hold", "id": 1000 + i})
		}
		if l := next(); l != "held 1000" {
			t.Fatalf("Django worker said %q", l)
		}
		c := srv.Client(t)
		eventually(t, "Django to take every message", func() bool {
			n, err := c.Do(ctx, c.B().Zcard().Key("asgiemails").Build()).AsInt64()
			return err == nil && n == 0
		})
		eventually(t, "Django to drop its backups", func() bool {
			n, err := c.Do(ctx, c.B().Zcard().Key("asgiemails$inflight").Build()).AsInt64()
			return err == nil && n == 0
		})
		kill()
		for l := range lines {
			if strings.HasPrefix(l, "held") {
				t.Fatalf("Django worker started a second handler: %q", l)
			}
		}
		time.Sleep(100 * time.Millisecond)
		for _, key := range []string{"asgiemails", "asgiemails$inflight"} {
			if n, err := c.Do(ctx, c.B().Zcard().Key(key).Build()).AsInt64(); err != nil || n != 0 {
				t.Fatalf("%s holds %d (%v) after the kill", key, n, err)
			}
		}
		t.Logf("Django %s: a Django worker killed while handling 1 of 5 messages lost all 5", d.Name)
	})
}
