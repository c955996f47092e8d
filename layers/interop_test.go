package layers

// Interop with real Django Channels: each test runs testdata/peer.py, a Django
// process whose channel layer comes from CHANNEL_LAYERS and get_channel_layer(), on
// Debian's /usr/bin/python3 (channels 4.0, channels_redis 4.0 on bookworm), and again
// on the newer channels_redis of trixie (4.2.1) and sid (4.3.0) when
// scripts/debian-django.sh has unpacked them under .cache/debian (the tests never
// download anything themselves).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// pythonBin is Debian's interpreter, which has Django, channels and channels_redis
// (python3 on PATH may be another one).
const pythonBin = "/usr/bin/python3"

const (
	peerLifetime = 3 * time.Minute  // hard bound on every peer process
	peerReply    = 30 * time.Second // bound on one command
)

// pySuite is a Django stack to test against: the system one, or an unpacked newer one.
type pySuite struct {
	name       string
	pythonPath string // "" for the system's packages
}

// pySuites returns the system stack and the newer ones found in the cache.
func pySuites(t *testing.T) []pySuite {
	t.Helper()
	if _, err := os.Stat(pythonBin); err != nil {
		t.Fatalf("%s not found: install Debian's python3-django-channels, python3-channels-redis and python3-msgpack (scripts/test.sh does)", pythonBin)
	}
	suites := []pySuite{{name: "bookworm"}}
	cache := os.Getenv("CANAL_DEBIAN_CACHE")
	if cache == "" {
		cache = filepath.Join("..", ".cache", "debian")
	}
	for _, s := range []string{"trixie", "sid"} {
		p := filepath.Join(cache, s, "root", "usr", "lib", "python3", "dist-packages")
		if _, err := os.Stat(filepath.Join(p, "channels_redis")); err == nil {
			abs, _ := filepath.Abs(p)
			suites = append(suites, pySuite{name: s, pythonPath: abs})
		} else if os.Getenv("CANAL_REQUIRE_DEBIAN_SUITES") == "1" {
			t.Fatalf("channels_redis from Debian %s not found in %s: run scripts/debian-django.sh %s", s, cache, s)
		} else {
			t.Logf("Debian %s's channels_redis is not unpacked in %s: testing without it (scripts/debian-django.sh %s adds it)", s, cache, s)
		}
	}
	return suites
}

// forSuites runs f once per Django stack, as parallel subtests.
func forSuites(t *testing.T, f func(t *testing.T, s pySuite)) {
	t.Helper()
	for _, s := range pySuites(t) {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			f(t, s)
		})
	}
}

// peer is a running testdata/peer.py.
type peer struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *canaltest.LogBuffer
	mu     sync.Mutex
}

// startPeer starts a Django peer on url with the layer config (CONFIG of
// CHANNEL_LAYERS, plus "backend"). It is killed when the test ends.
func startPeer(t testing.TB, s pySuite, url string, config map[string]any) *peer {
	t.Helper()
	cfg, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerLifetime)
	cmd := exec.CommandContext(ctx, pythonBin, filepath.Join("testdata", "peer.py"), url, string(cfg))
	cmd.Env = os.Environ()
	if s.pythonPath != "" {
		cmd.Env = append(cmd.Env, "PYTHONPATH="+s.pythonPath)
	}
	cmd.WaitDelay = 5 * time.Second
	p := &peer{t: t, cmd: cmd, lines: make(chan string, 16), stderr: &canaltest.LogBuffer{}}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start peer: %v", err)
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		p.stdin.Close() // the peer exits at EOF
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cancel() // kills it
			<-exited
		}
		cancel()
		<-readerDone
	})
	return p
}

// do sends a command and returns the reply; an error reply fails the test.
func (p *peer) do(cmd map[string]any) map[string]any {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	line, _ := json.Marshal(cmd)
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > time.Second {
			p.t.Logf("peer %v took %v", cmd["op"], d)
		}
	}()
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		p.t.Fatalf("peer %v: write: %v; stderr:\n%s", cmd["op"], err, p.stderr)
	}
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("peer exited during %v; stderr:\n%s", cmd["op"], p.stderr)
		}
		var reply map[string]any
		if err := json.Unmarshal([]byte(l), &reply); err != nil {
			p.t.Fatalf("peer reply %q: %v", l, err)
		}
		if e, ok := reply["error"]; ok {
			p.t.Fatalf("peer %v failed: %v; stderr:\n%s", cmd["op"], e, p.stderr)
		}
		return reply
	case <-time.After(peerReply):
		p.t.Fatalf("peer %v: no reply in %v; stderr:\n%s", cmd["op"], peerReply, p.stderr)
	}
	return nil
}

func (p *peer) newChannel() string {
	p.t.Helper()
	return p.do(map[string]any{"op": "new_channel"})["channel"].(string)
}

func (p *peer) ok(cmd map[string]any) {
	p.t.Helper()
	if r := p.do(cmd); r["ok"] != true {
		p.t.Fatalf("peer %v: %v", cmd["op"], r)
	}
}

// receive returns the next message of channel as Go decodes Python's msgpack, or nil
// after timeout.
func (p *peer) receive(channel string, timeout time.Duration) canal.Message {
	p.t.Helper()
	r := p.do(map[string]any{"op": "receive", "channel": channel, "timeout": timeout.Seconds()})
	if r["timeout"] == true {
		return nil
	}
	m, err := decodeMessage(unhex(r["msg"].(string)))
	if err != nil {
		p.t.Fatalf("peer message %v: %v", r["repr"], err)
	}
	return m
}

// expect checks that the next message of channel equals the Python literal want,
// types included.
func (p *peer) expect(channel, want string) {
	p.t.Helper()
	r := p.do(map[string]any{"op": "expect", "channel": channel, "py": want, "timeout": 5})
	if r["timeout"] == true {
		p.t.Fatalf("Django received nothing on %s; want %s", channel, want)
	}
	if r["equal"] != true {
		p.t.Fatalf("Django received\n %v\nwant\n %v", r["repr"], r["want"])
	}
}

func (p *peer) expectNothing(channel string, timeout time.Duration) {
	p.t.Helper()
	if m := p.receive(channel, timeout); m != nil {
		p.t.Fatalf("Django received %v; want nothing", m)
	}
}

// interopLayer returns a Go layer on srv, closed at the end of the test.
func interopLayer(t testing.TB, srv *canaltest.Redis, opts RedisOptions) *Redis {
	t.Helper()
	opts.Hosts = []string{srv.URL()}
	opts.Logger = quietLogger
	l, err := NewRedis(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// The same values written as a Python literal and as Go decodes them.
const allTypesPy = `{'type': 'chat.message', 'text': 'héllo wörld ✓ 😀 \x00 "q"', 'bin': b'\x00\xffraw', ` +
	`'int': 42, 'big': 1099511627776, 'neg': -123456789, 'neg_big': -1099511627776, ` +
	`'max': 18446744073709551615, 'min': -9223372036854775808, 'float': 1.5, 'float_int': 2.0, ` +
	`'tiny': 1e-300, 'true': True, 'false': False, 'none': None, ` +
	`'list': [1, 'two', 3.0, None, [b'x'], {'k': 'v'}], 'nested': {'a': {'b': {'c': []}}, 'empty': {}}, ` +
	`'ünï': 'non-ASCII key', 'empty_str': '', 'empty_bin': b''}`

func allTypesGo() canal.Message {
	return canal.Message{
		"type": "chat.message", "text": "héllo wörld ✓ 😀 \x00 \"q\"", "bin": []byte("\x00\xffraw"),
		"int": int64(42), "big": int64(1 << 40), "neg": int64(-123456789), "neg_big": int64(-1 << 40),
		"max": uint64(1<<64 - 1), "min": int64(-1 << 63), "float": 1.5, "float_int": 2.0,
		"tiny": 1e-300, "true": true, "false": false, "none": nil,
		"list":   []any{int64(1), "two", 3.0, nil, []any{[]byte("x")}, map[string]any{"k": "v"}},
		"nested": map[string]any{"a": map[string]any{"b": map[string]any{"c": []any{}}}, "empty": map[string]any{}},
		"ünï":    "non-ASCII key", "empty_str": "", "empty_bin": []byte{},
	}
}

// allTypesGoNative is allTypesGo written with the types a Go program uses.
func allTypesGoNative() canal.Message {
	m := allTypesGo()
	m["int"] = 42
	m["neg"] = -123456789
	m["list"] = []any{1, "two", float32(3), nil, [][]byte{[]byte("x")}, map[string]string{"k": "v"}}
	m["nested"] = map[string]any{"a": canal.Message{"b": map[string][]int{"c": {}}}, "empty": map[string]any{}}
	return m
}

func sameMessage(t testing.TB, got canal.Message, want canal.Message) {
	t.Helper()
	if !msgpackEqual(map[string]any(got), map[string]any(want)) {
		t.Fatalf("Go received\n %#v\nwant\n %#v", got, want)
	}
}

func TestInteropDjangoGroupSendToGo(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		srv := canaltest.StartRedis(t)
		l := interopLayer(t, srv, RedisOptions{})
		p := startPeer(t, s, srv.URL(), nil)
		ctx := context.Background()

		a, inA := attachInbox(t, l)
		b, inB := attachInbox(t, l)
		queued, err := l.NewChannel(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		djangoCh := p.newChannel()
		for _, ch := range []string{a, b, queued} {
			if err := l.GroupAdd(ctx, "room", ch); err != nil {
				t.Fatal(err)
			}
		}
		p.ok(map[string]any{"op": "group_add", "group": "room", "channel": djangoCh})

		p.ok(map[string]any{"op": "group_send", "group": "room", "py": allTypesPy})
		want := allTypesGo()
		sameMessage(t, inA.next(t), want)
		sameMessage(t, inB.next(t), want)
		sameMessage(t, recvWithin(t, l, queued), want)
		p.expect(djangoCh, allTypesPy)
		inA.none(t, 100*time.Millisecond) // exactly once
		inB.none(t, 0)

		// Discard from Django's side.
		p.ok(map[string]any{"op": "group_discard", "group": "room", "channel": b})
		p.ok(map[string]any{"op": "group_send", "group": "room", "py": `{'type': 'second'}`})
		if m := inA.next(t); m.Type() != "second" {
			t.Fatalf("got %v", m)
		}
		inB.none(t, 200*time.Millisecond)
		if st := l.Stats(); st.Malformed != 0 || st.Dropped != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestInteropGoGroupSendToDjango(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		srv := canaltest.StartRedis(t)
		l := interopLayer(t, srv, RedisOptions{})
		p := startPeer(t, s, srv.URL(), nil)
		ctx := context.Background()

		d1, d2 := p.newChannel(), p.newChannel()
		p.ok(map[string]any{"op": "group_add", "group": "room", "channel": d1})
		if err := l.GroupAdd(ctx, "room", d2); err != nil { // Go adds a Django channel
			t.Fatal(err)
		}
		if err := l.GroupAdd(ctx, "room", "django.worker"); err != nil { // and a normal channel
			t.Fatal(err)
		}
		goCh, in := attachInbox(t, l)
		p.ok(map[string]any{"op": "group_add", "group": "room", "channel": goCh})

		if err := l.GroupSend(ctx, "room", allTypesGoNative()); err != nil {
			t.Fatal(err)
		}
		p.expect(d1, allTypesPy)
		p.expect(d2, allTypesPy)
		p.expect("django.worker", allTypesPy)
		sameMessage(t, in.next(t), allTypesGo())
		p.expectNothing(d1, 300*time.Millisecond)
	})
}

func TestInteropSpecificChannels(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		srv := canaltest.StartRedis(t)
		l := interopLayer(t, srv, RedisOptions{})
		p := startPeer(t, s, srv.URL(), nil)
		ctx := context.Background()

		// Django → Go: an attached channel and a NewChannel one.
		goCh, in := attachInbox(t, l)
		p.ok(map[string]any{"op": "send", "channel": goCh, "py": `{'type': 'direct', 'n': 1}`})
		sameMessage(t, in.next(t), canal.Message{"type": "direct", "n": int64(1)})
		local, err := l.NewChannel(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		p.ok(map[string]any{"op": "send", "channel": local, "py": allTypesPy})
		sameMessage(t, recvWithin(t, l, local), allTypesGo())

		// Go → Django.
		djangoCh := p.newChannel()
		if err := l.Send(ctx, djangoCh, allTypesGoNative()); err != nil {
			t.Fatal(err)
		}
		p.expect(djangoCh, allTypesPy)
		// Order is kept.
		for i := range 5 {
			if err := l.Send(ctx, djangoCh, canal.Message{"type": "seq", "i": i}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 5 {
			p.expect(djangoCh, fmt.Sprintf("{'type': 'seq', 'i': %d}", i))
		}
		in.none(t, 0)
	})
}

func TestInteropNormalChannels(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		srv := canaltest.StartRedis(t)
		l := interopLayer(t, srv, RedisOptions{})
		p := startPeer(t, s, srv.URL(), nil)
		ctx := context.Background()

		// Django → Go worker.
		p.ok(map[string]any{"op": "send", "channel": "thumbnails", "py": allTypesPy})
		p.ok(map[string]any{"op": "send", "channel": "thumbnails", "py": `{'type': 'second'}`})
		sameMessage(t, recvWithin(t, l, "thumbnails"), allTypesGo())
		if m := recvWithin(t, l, "thumbnails"); m.Type() != "second" {
			t.Fatalf("got %v", m)
		}
		// Go → Django worker.
		if err := l.Send(ctx, "emails", allTypesGoNative()); err != nil {
			t.Fatal(err)
		}
		p.expect("emails", allTypesPy)
		// Nothing left behind in Redis, $inflight included.
		c := srv.Client(t)
		keys, err := c.Do(ctx, c.B().Keys().Pattern("asgi*").Build()).AsStrSlice()
		if err != nil || len(keys) != 0 {
			t.Fatalf("keys left: %v, %v", keys, err)
		}
	})
}

func TestInteropCapacity(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		srv := canaltest.StartRedis(t)
		const capacity = 3
		l := interopLayer(t, srv, RedisOptions{Capacity: capacity})
		p := startPeer(t, s, srv.URL(), map[string]any{"capacity": capacity})
		ctx := context.Background()

		// Django fills a Go worker's channel: ChannelFull on Django's side.
		for i := range capacity {
			if r := p.do(map[string]any{"op": "send", "channel": "go.worker", "py": fmt.Sprintf("{'type': 'w', 'i': %d}", i)}); r["ok"] != true {
				t.Fatalf("send %d: %v", i, r)
			}
		}
		if r := p.do(map[string]any{"op": "send", "channel": "go.worker", "py": `{'type': 'over'}`}); r["full"] != true {
			t.Fatalf("Django's send over capacity: %v; want ChannelFull", r)
		}
		if m := recvWithin(t, l, "go.worker"); m["i"] != int64(0) {
			t.Fatalf("got %v", m)
		}
		if r := p.do(map[string]any{"op": "send", "channel": "go.worker", "py": `{'type': 'again'}`}); r["ok"] != true {
			t.Fatalf("send after a receive: %v", r)
		}

		// Go fills a Django process's queue: ErrChannelFull on Go's side. The two
		// channels of that process share its one key, so the second is full too.
		d1, d2 := p.newChannel(), p.newChannel()
		for i := range capacity {
			if err := l.Send(ctx, d1, canal.Message{"type": "fill", "i": i}); err != nil {
				t.Fatal(err)
			}
		}
		for _, ch := range []string{d1, d2} {
			if err := l.Send(ctx, ch, canal.Message{"type": "over"}); !errors.Is(err, canal.ErrChannelFull) {
				t.Fatalf("Send to a full Django process: %v; want ErrChannelFull", err)
			}
		}
		// GroupSend skips the full Django member but reaches the Go one.
		goCh, in := attachInbox(t, l)
		p.ok(map[string]any{"op": "group_add", "group": "g", "channel": d2})
		p.ok(map[string]any{"op": "group_add", "group": "g", "channel": goCh})
		if err := l.GroupSend(ctx, "g", canal.Message{"type": "news"}); err != nil {
			t.Fatalf("GroupSend with a full member: %v", err)
		}
		if m := in.next(t); m.Type() != "news" {
			t.Fatalf("got %v", m)
		}
		if l.Stats().GroupFull != 1 {
			t.Fatalf("stats %+v; want GroupFull 1", l.Stats())
		}
		// Django's group_send also skips silently.
		p.ok(map[string]any{"op": "group_send", "group": "g", "py": `{'type': 'from django'}`})
		if m := in.next(t); m.Type() != "from django" {
			t.Fatalf("got %v", m)
		}
		for i := range capacity {
			p.expect(d1, fmt.Sprintf("{'type': 'fill', 'i': %d}", i))
		}
		p.expectNothing(d2, 300*time.Millisecond)
	})
}

func TestInteropEncryption(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		srv := canaltest.StartRedis(t)
		// Mid-rotation: Go already encrypts with the new key, Django still with the old;
		// both read both.
		l := interopLayer(t, srv, RedisOptions{SymmetricEncryptionKeys: []string{"new key", "old key"}})
		p := startPeer(t, s, srv.URL(), map[string]any{"symmetric_encryption_keys": []string{"old key", "new key"}})
		ctx := context.Background()

		goCh, in := attachInbox(t, l)
		djangoCh := p.newChannel()
		for _, ch := range []string{goCh, djangoCh} {
			p.ok(map[string]any{"op": "group_add", "group": "secret", "channel": ch})
		}
		p.ok(map[string]any{"op": "group_send", "group": "secret", "py": allTypesPy})
		sameMessage(t, in.next(t), allTypesGo())
		p.expect(djangoCh, allTypesPy)

		if err := l.GroupSend(ctx, "secret", allTypesGoNative()); err != nil {
			t.Fatal(err)
		}
		sameMessage(t, in.next(t), allTypesGo())
		p.expect(djangoCh, allTypesPy)
		if err := l.Send(ctx, "enc.worker", canal.Message{"type": "w"}); err != nil {
			t.Fatal(err)
		}
		p.expect("enc.worker", `{'type': 'w'}`)

		// Nothing readable is stored: the member is prefix + a Fernet token.
		if err := l.Send(ctx, djangoCh, canal.Message{"type": "peek", "text": "plaintext?"}); err != nil {
			t.Fatal(err)
		}
		c := srv.Client(t)
		key := "asgi" + nonLocal(djangoCh)
		members, err := c.Do(ctx, c.B().Zrange().Key(key).Min("0").Max("-1").Build()).AsStrSlice()
		if err != nil || len(members) != 1 {
			t.Fatalf("members %q, %v", members, err)
		}
		if strings.Contains(members[0], "plaintext") || !strings.HasPrefix(members[0][12:], "gAAAAA") {
			t.Fatalf("stored member is not a Fernet token: %q", members[0])
		}
		p.expect(djangoCh, `{'type': 'peek', 'text': 'plaintext?'}`)

		// A Django with a key Go does not have: Go skips its messages as malformed.
		other := startPeer(t, s, srv.URL(), map[string]any{"symmetric_encryption_keys": []string{"someone else"}})
		other.ok(map[string]any{"op": "send", "channel": goCh, "py": `{'type': 'unreadable'}`})
		deadline := time.Now().Add(5 * time.Second)
		for l.Stats().Malformed == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if l.Stats().Malformed != 1 {
			t.Fatalf("stats %+v; want the foreign token counted as malformed", l.Stats())
		}
		in.none(t, 0)
	})
}

func TestInteropFlush(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		srv := canaltest.StartRedis(t)
		// No liveness key: its refresh could land between the flush and the key count.
		l := interopLayer(t, srv, RedisOptions{Liveness: -1})
		p := startPeer(t, s, srv.URL(), nil)
		ctx := context.Background()
		goCh, in := attachInbox(t, l)
		if err := l.GroupAdd(ctx, "g", goCh); err != nil {
			t.Fatal(err)
		}
		if err := l.Send(ctx, "w", canal.Message{"type": "x"}); err != nil {
			t.Fatal(err)
		}
		p.ok(map[string]any{"op": "flush"}) // Django's flush removes Go's keys too
		c := srv.Client(t)
		if n, err := c.Do(ctx, c.B().Dbsize().Build()).AsInt64(); err != nil || n != 0 {
			t.Fatalf("%d keys after Django's flush (%v)", n, err)
		}
		p.ok(map[string]any{"op": "group_send", "group": "g", "py": `{'type': 'after'}`})
		in.none(t, 300*time.Millisecond)
		// Go's flush removes Django's.
		d := p.newChannel()
		p.ok(map[string]any{"op": "group_add", "group": "g2", "channel": d})
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Do(ctx, c.B().Dbsize().Build()).AsInt64(); err != nil || n != 0 {
			t.Fatalf("%d keys after Go's flush (%v)", n, err)
		}
	})
}

// TestInteropSerializerOptions covers channels_redis 4.2.1+'s serializer_format and
// random_prefix_length (absent from 4.0).
func TestInteropSerializerOptions(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		if s.name == "bookworm" {
			return // channels_redis 4.0 has neither option: nothing to compare
		}
		const jsonPy = `{'type': 'j', 'text': 'héllo ✓', 'n': 1099511627776, 'neg': -5, 'f': 2.0, 'tiny': 1.5e-07, ` +
			`'b': True, 'none': None, 'l': [1, 'x', {'k': []}]}`
		jsonGo := canal.Message{"type": "j", "text": "héllo ✓", "n": int64(1 << 40), "neg": int64(-5), "f": 2.0,
			"tiny": 1.5e-7, "b": true, "none": nil, "l": []any{int64(1), "x", map[string]any{"k": []any{}}}}
		for _, tc := range []struct {
			name string
			py   map[string]any
			go_  RedisOptions
			msg  string
			want canal.Message
		}{
			{"json", map[string]any{"serializer_format": "json"}, RedisOptions{SerializerFormat: "json"}, jsonPy, jsonGo},
			{"json encrypted", map[string]any{"serializer_format": "json", "symmetric_encryption_keys": []string{"k"}},
				RedisOptions{SerializerFormat: "json", SymmetricEncryptionKeys: []string{"k"}}, jsonPy, jsonGo},
			{"no random prefix", map[string]any{"random_prefix_length": 0}, RedisOptions{RandomPrefixLength: -1},
				allTypesPy, allTypesGo()},
			{"random prefix 4", map[string]any{"random_prefix_length": 4}, RedisOptions{RandomPrefixLength: 4},
				allTypesPy, allTypesGo()},
		} {
			t.Run(tc.name, func(t *testing.T) {
				srv := canaltest.StartRedis(t)
				l := interopLayer(t, srv, tc.go_)
				p := startPeer(t, s, srv.URL(), tc.py)
				ctx := context.Background()
				goCh, in := attachInbox(t, l)
				djangoCh := p.newChannel()
				p.ok(map[string]any{"op": "group_add", "group": "g", "channel": goCh})
				p.ok(map[string]any{"op": "group_add", "group": "g", "channel": djangoCh})
				p.ok(map[string]any{"op": "group_send", "group": "g", "py": tc.msg})
				sameMessage(t, in.next(t), tc.want)
				p.expect(djangoCh, tc.msg)
				if err := l.GroupSend(ctx, "g", tc.want); err != nil {
					t.Fatal(err)
				}
				sameMessage(t, in.next(t), tc.want)
				p.expect(djangoCh, tc.msg)
				if err := l.Send(ctx, "opt.worker", tc.want); err != nil {
					t.Fatal(err)
				}
				p.expect("opt.worker", tc.msg)
				p.ok(map[string]any{"op": "send", "channel": "go.worker", "py": tc.msg})
				sameMessage(t, recvWithin(t, l, "go.worker"), tc.want)
			})
		}
	})
}

// runCodec runs testdata/codec.py with stdin, bounded.
func runCodec(t *testing.T, s pySuite, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonBin, append([]string{filepath.Join("testdata", "codec.py")}, args...)...)
	cmd.Env = os.Environ()
	if s.pythonPath != "" {
		cmd.Env = append(cmd.Env, "PYTHONPATH="+s.pythonPath)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("codec.py %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestInteropCodecs checks the shard function, the msgpack encoder and Fernet
// against channels_redis', Python msgpack's and cryptography's own code.
func TestInteropCodecs(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		t.Run("shard", func(t *testing.T) {
			names := []string{"room", "chat_lobby", "specific.abc!", "asgi__group__room", "é", "", "日本語"}
			r := rand.New(rand.NewPCG(5, 6))
			for range 500 {
				b := make([]byte, 1+r.IntN(40))
				for i := range b {
					b[i] = "abcdefghijklmnopqrstuvwxyz0123456789._-!"[r.IntN(40)]
				}
				names = append(names, string(b))
			}
			sizes := []int{1, 2, 3, 4, 5, 7, 10, 16}
			req, _ := json.Marshal(map[string]any{"names": names, "sizes": sizes})
			var got [][]int
			if err := json.Unmarshal(runCodec(t, s, req, "shard"), &got); err != nil {
				t.Fatal(err)
			}
			for i, name := range names {
				for j, n := range sizes {
					if want := got[i][j]; shardIndex(name, n) != want {
						t.Fatalf("shardIndex(%q, %d) = %d; channels_redis says %d", name, n, shardIndex(name, n), want)
					}
				}
			}
		})
		t.Run("msgpack", func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 8))
			var in bytes.Buffer
			var encoded [][]byte
			for range 500 {
				b, err := appendMsgpack(nil, randomValue(r, 0))
				if err != nil {
					t.Fatal(err)
				}
				encoded = append(encoded, b)
				fmt.Fprintf(&in, "%x\n", b)
			}
			lines := strings.Fields(string(runCodec(t, s, in.Bytes(), "msgpack")))
			if len(lines) != len(encoded) {
				t.Fatalf("%d lines back for %d values", len(lines), len(encoded))
			}
			for i, l := range lines {
				// Python keeps the map order it read, so its packing is byte for byte ours.
				if l != fmt.Sprintf("%x", encoded[i]) {
					t.Fatalf("Python re-packs\n %x\nas\n %s", encoded[i], l)
				}
			}
		})
		t.Run("fernet", func(t *testing.T) {
			f := mustFernet(t, "new", "old")
			old := mustFernet(t, "old")
			stranger := mustFernet(t, "other")
			plain := [][]byte{{}, []byte("x"), bytes.Repeat([]byte("16 bytes exactly"), 1), bytes.Repeat([]byte{0xff}, 1000)}
			var tokens []string
			var want []any
			for _, p := range plain {
				tokens = append(tokens, string(f.encrypt(nil, p)), string(old.encrypt(nil, p)), string(stranger.encrypt(nil, p)))
				want = append(want, fmt.Sprintf("%x", p), fmt.Sprintf("%x", p), nil)
			}
			now := time.Now().Unix()
			tokens = append(tokens, string(f.encryptAt(nil, []byte("old"), now-100, make([]byte, 16))))
			want = append(want, nil) // older than the ttl
			req, _ := json.Marshal(map[string]any{"keys": []string{"old", "new"}, "tokens": tokens, "ttl": 70})
			var got []any
			if err := json.Unmarshal(runCodec(t, s, req, "fernet"), &got); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("token %d: Python decrypts to %v; want %v", i, got[i], want[i])
				}
			}
		})
	})
}

// TestInteropPubSub runs Go's RedisPubSub against Django's
// channels_redis.pubsub.RedisPubSubChannelLayer.
func TestInteropPubSub(t *testing.T) {
	t.Parallel()
	forSuites(t, func(t *testing.T, s pySuite) {
		configs := []struct {
			name string
			py   map[string]any
			go_  RedisPubSubOptions
			msg  string
			want canal.Message
		}{
			{"msgpack", map[string]any{}, RedisPubSubOptions{}, allTypesPy, allTypesGo()},
		}
		if s.name != "bookworm" { // serializer options came with channels_redis 4.2.1
			configs = append(configs,
				struct {
					name string
					py   map[string]any
					go_  RedisPubSubOptions
					msg  string
					want canal.Message
				}{"fernet", map[string]any{"symmetric_encryption_keys": []string{"a", "b"}},
					RedisPubSubOptions{SymmetricEncryptionKeys: []string{"b", "a"}}, allTypesPy, allTypesGo()},
				struct {
					name string
					py   map[string]any
					go_  RedisPubSubOptions
					msg  string
					want canal.Message
				}{"json", map[string]any{"serializer_format": "json"}, RedisPubSubOptions{SerializerFormat: "json"},
					`{'type': 'j', 'text': 'héllo', 'n': -1099511627776, 'f': 2.0, 'l': [None, True, {'k': 'v'}]}`,
					canal.Message{"type": "j", "text": "héllo", "n": int64(-1 << 40), "f": 2.0,
						"l": []any{nil, true, map[string]any{"k": "v"}}}})
		}
		for _, tc := range configs {
			t.Run(tc.name, func(t *testing.T) {
				srv := canaltest.StartRedis(t)
				opts := tc.go_
				opts.Hosts = []string{srv.URL()}
				opts.Logger = quietLogger
				l, err := NewRedisPubSub(context.Background(), opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close(context.Background()) })
				cfg := map[string]any{"backend": "pubsub"}
				for k, v := range tc.py {
					cfg[k] = v
				}
				p := startPeer(t, s, srv.URL(), cfg)
				ctx := context.Background()

				// Groups both ways.
				goCh, in := attachInbox(t, l)
				if err := l.GroupAdd(ctx, "room", goCh); err != nil {
					t.Fatal(err)
				}
				djangoCh := p.newChannel()
				if !strings.HasPrefix(djangoCh, "asgispecific.") || !strings.HasPrefix(goCh, "asgispecific.") {
					t.Fatalf("names %q and %q", djangoCh, goCh)
				}
				p.ok(map[string]any{"op": "group_add", "group": "room", "channel": djangoCh})
				p.ok(map[string]any{"op": "group_send", "group": "room", "py": tc.msg})
				sameMessage(t, in.next(t), tc.want)
				p.expect(djangoCh, tc.msg)
				if err := l.GroupSend(ctx, "room", tc.want); err != nil {
					t.Fatal(err)
				}
				sameMessage(t, in.next(t), tc.want)
				p.expect(djangoCh, tc.msg)
				in.none(t, 50*time.Millisecond)

				// Specific channels both ways.
				local, err := l.NewChannel(ctx, "")
				if err != nil {
					t.Fatal(err)
				}
				p.ok(map[string]any{"op": "send", "channel": local, "py": tc.msg})
				sameMessage(t, recvWithin(t, l, local), tc.want)
				if err := l.Send(ctx, djangoCh, tc.want); err != nil {
					t.Fatal(err)
				}
				p.expect(djangoCh, tc.msg)

				// Normal channels both ways.
				p.ok(map[string]any{"op": "listen", "channel": "emails"})
				// channels_redis may answer before Redis has the subscription, and
				// Pub/Sub keeps nothing for a channel nobody has subscribed to yet.
				waitSubscribed(t, srv, "emails")
				if err := l.Send(ctx, "emails", tc.want); err != nil {
					t.Fatal(err)
				}
				p.expect("emails", tc.msg)
				got := receiveAsync(t, l, "thumbnails")
				p.ok(map[string]any{"op": "send", "channel": "thumbnails", "py": tc.msg})
				sameMessage(t, within(t, got), tc.want)
				if st := l.Stats(); st.Malformed != 0 || st.Dropped != 0 {
					t.Fatalf("stats %+v", st)
				}
			})
		}
	})
}

// waitSubscribed waits until some client of srv subscribes to a Pub/Sub channel whose
// name ends with suffix.
func waitSubscribed(t *testing.T, srv *canaltest.Redis, suffix string) {
	t.Helper()
	c := srv.Client(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		chs, err := c.Do(context.Background(), c.B().PubsubChannels().Pattern("*"+suffix).Build()).AsStrSlice()
		if err == nil && len(chs) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no subscription to *%s after 5 s (%v)", suffix, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
