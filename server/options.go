package server

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Options configure a Server. The zero value is safe and production-minded: bounded
// reads and queues, keepalive pings, handshake and write timeouts.
type Options struct {
	// HandshakeTimeout bounds the handshake: Connect plus any wait for a pending
	// accept. Past it the handshake is refused with 403. Default 10 s.
	HandshakeTimeout time.Duration
	// ReadLimit is the largest client message in bytes; a larger one closes the
	// connection with 1009. Default 64 KiB.
	ReadLimit int64
	// PingInterval is how often the server pings an idle client. Default 25 s.
	PingInterval time.Duration
	// PongTimeout is how long past a ping the server waits for any frame before it
	// declares the peer dead and drops it (Disconnect gets 1006). Default 20 s.
	PongTimeout time.Duration
	// WriteTimeout bounds one network write. Default 10 s.
	WriteTimeout time.Duration
	// CloseTimeout is how long the server waits for the client's close frame after
	// sending its own. Default 2 s.
	CloseTimeout time.Duration
	// SendQueue is the most frames queued for one connection. When a client reads so
	// slowly that the queue fills, the server drops the queue and closes the
	// connection with 1013 ("slow consumer"): one slow client never holds up the
	// others, and memory stays bounded. Default 256.
	SendQueue int
	// SendBuffer is the most bytes of one socket's frames that the network has not
	// taken (beyond the kernel's socket buffer). A client that stops reading fills it;
	// the server then drops the socket (Disconnect gets 1013, "slow consumer"; the
	// client, whose own buffers are full, sees the TCP connection end). A client that
	// reads never loses its connection to a burst the server produced faster than
	// it wrote. Default 256 KiB.
	SendBuffer int
	// SocketSendBuffer is the kernel's send buffer for each socket Listen or Listener
	// accepts (SO_SNDBUF, set once on the listening socket, which Linux copies to the
	// sockets it accepts; Linux doubles the value for its bookkeeping). Left to its
	// autotuning, the kernel grows a client's buffer up to net.ipv4.tcp_wmem's maximum
	// (4 MiB by default) before the server sees any back-pressure, so every client that
	// stops reading first costs the server megabytes of copying that never reach it,
	// on the CPU the readers need. bench/'s stress mode measures it (BENCHMARKS.md,
	// "Stress", clients not reading: when the non-readers are closed with 1013, and
	// the readers' latency meanwhile). Realtime frames are small; raise it for large
	// transfers to distant clients (throughput per socket is at most about twice this
	// per round trip). Default 64 KiB; negative leaves the kernel's autotuning. Linux
	// only; sockets of a listener made elsewhere (Mount alone) keep the kernel's.
	SocketSendBuffer int
	// MaxBufferedBytes bounds SendBuffer's bytes over all sockets of the process: a
	// socket whose unsent bytes would pass it is dropped as a slow consumer (1013).
	// Default 64 MiB.
	MaxBufferedBytes int64
	// SessionWorkers is the most goroutines running session calls (Connect's
	// followers: Receive, Event, Disconnect) at once, over all connections. Calls
	// beyond it wait their turn in arrival order: handlers blocked on a database make
	// the server slower, never bigger. Writes do not use these goroutines. Default 256.
	SessionWorkers int
	// EventQueue is the most layer events waiting for one connection's session; past
	// it Conn.Deliver returns false and the layer counts the channel as full.
	// Default 256.
	EventQueue int
	// FrameQueue is the most client frames waiting for the session; past it the
	// server stops reading that socket (TCP back-pressure). Default 16.
	FrameQueue int
	// ReadBufferSize is each socket's read buffer, held for its life. Default 512 bytes;
	// at least 257 (the websocket library's minimum for reusing it).
	ReadBufferSize int
	// WriteBufferSize is the buffer a socket borrows from a pool while it writes a
	// message; an idle socket holds none. Default 4 KiB.
	WriteBufferSize int
	// EventStreams serves Server-Sent Events: a GET whose Accept header names
	// text/event-stream runs the handler as a connection of Scope.Type "sse" (see
	// ScopeTypeSSE): Accept answers 200, each text frame sent becomes an event, layer
	// events arrive as on a WebSocket, and Close ends the stream with a last "close"
	// event carrying the code. Off by default: such requests go to HTTP.
	//
	// A cross-origin EventSource sends Origin and reads the stream only with CORS: an
	// accepted stream echoes the Origin in Access-Control-Allow-Origin (credentials
	// allowed). The server's origin check (Origins) applies to streams as to
	// WebSockets, so only the origins it allows get that far. A same-origin
	// EventSource sends no Origin, which middleware.Origin and AllowedHosts refuse:
	// leave those off routes that pages reach from their own origin.
	EventStreams bool

	// MaxConnections is the most connections that Listen (or Listener) keeps open at
	// once: sockets, streams and plain HTTP requests alike, over all the Server's
	// listeners. A connection past it gets "503 Service Unavailable" with
	// Connection: close, so the process stays below its file limit, where accept
	// fails (fasthttp then stops serving and app.Listen returns). Default: the soft
	// RLIMIT_NOFILE when New runs (on Linux Go raises it to the hard limit at start)
	// minus 512 descriptors for everything else (Redis, logs, refusals in flight), and
	// at least 64; no limit where the file limit is unknown (Windows) or unlimited.
	// Raise the file limit (ulimit -n, systemd's LimitNOFILE) rather than this. It
	// counts only connections accepted through Listen or Listener, not app.Listen's.
	MaxConnections int
	// Origins are the origins, besides the request's own, whose pages may open
	// sockets and event streams. A handshake that carries an Origin header must
	// otherwise come from the request's host: the Origin's host[:port] must equal the
	// Host header (ignoring case; the scheme may be http or https, since behind a
	// TLS-terminating proxy the server cannot tell which the page used). Anything else,
	// "null" included, is answered 403 before the handler runs: a page of another site
	// cannot open a socket with the visitor's cookies (cross-site WebSocket hijacking).
	// Behind a proxy, forward the Host header (nginx: proxy_set_header Host $host) or
	// list the public origin here.
	//
	// A request without Origin is allowed: browsers always send one on WebSocket
	// handshakes and on cross-origin EventSource requests, so a request without it
	// comes from a non-browser client (which holds no visitor's cookies) or from a
	// same-origin EventSource.
	//
	// Patterns have middleware.Origin's syntax: "https://example.com:8443" (that
	// scheme, host and port; a missing port is the scheme's default), "example.com" or
	// "127.0.0.1" or "[::1]" (that host, any scheme and port), ".example.com" (the
	// domain and its subdomains), "*.example.com" (its subdomains only), "*" (every
	// origin) and "null" (the origin of sandboxed iframes and file: pages, of any
	// site: name it only if you must). An invalid pattern fails New.
	Origins []string
	// InsecureSkipOriginCheck turns the origin check above off: every origin may open
	// sockets. For servers no browser reaches, or whose middleware (middleware.Origin,
	// middleware.AllowedHosts) checks origins itself.
	InsecureSkipOriginCheck bool
	// defense is made by withDefaults: the parsed Origins, the connection count and
	// log rate limits, shared by the copies of these Options inside the Server.
	defense *defense

	// HTTP serves plain HTTP requests that reach the mount point. Nil passes them on
	// to the app's other routes (c.Next).
	HTTP fiber.Handler
	// Logger receives handshake failures, handler errors and panics. Query strings,
	// cookies and tickets are never logged. Default slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told how each handshake ended and when each connection
	// closed, for metrics (see Observer and package metrics). Per-frame counts are in
	// Stats. Nil: nothing is reported, at no cost.
	Observer Observer
}

const (
	defaultSocketSendBuffer = 64 << 10
	// maxSocketSendBuffer bounds SocketSendBuffer (Linux also caps it at
	// net.core.wmem_max, 208 KiB by default, without an error).
	maxSocketSendBuffer = 64 << 20
)

// ErrOptions reports an invalid option.
var ErrOptions = errors.New("server: invalid options")

func (o Options) withDefaults() (Options, error) {
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"HandshakeTimeout", &o.HandshakeTimeout, 10 * time.Second},
		{"PingInterval", &o.PingInterval, 25 * time.Second},
		{"PongTimeout", &o.PongTimeout, 20 * time.Second},
		{"WriteTimeout", &o.WriteTimeout, 10 * time.Second},
		{"CloseTimeout", &o.CloseTimeout, 2 * time.Second},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return o, fmt.Errorf("%w: %s is negative (%v)", ErrOptions, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"SendQueue", &o.SendQueue, 256},
		{"EventQueue", &o.EventQueue, 256},
		{"FrameQueue", &o.FrameQueue, 16},
		{"ReadBufferSize", &o.ReadBufferSize, 512},
		{"WriteBufferSize", &o.WriteBufferSize, 4096},
		{"SendBuffer", &o.SendBuffer, 256 << 10},
		{"SessionWorkers", &o.SessionWorkers, 256},
	}
	for _, n := range ints {
		if *n.v < 0 {
			return o, fmt.Errorf("%w: %s is negative (%d)", ErrOptions, n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if o.ReadBufferSize <= 256 {
		return o, fmt.Errorf("%w: ReadBufferSize must be at least 257, got %d", ErrOptions, o.ReadBufferSize)
	}
	if o.ReadLimit < 0 {
		return o, fmt.Errorf("%w: ReadLimit is negative (%d)", ErrOptions, o.ReadLimit)
	}
	if o.ReadLimit == 0 {
		o.ReadLimit = 64 << 10
	}
	if o.SocketSendBuffer > maxSocketSendBuffer {
		return o, fmt.Errorf("%w: SocketSendBuffer %d is over %d", ErrOptions, o.SocketSendBuffer, maxSocketSendBuffer)
	}
	if o.SocketSendBuffer == 0 {
		o.SocketSendBuffer = defaultSocketSendBuffer
	}
	if o.MaxBufferedBytes < 0 {
		return o, fmt.Errorf("%w: MaxBufferedBytes is negative (%d)", ErrOptions, o.MaxBufferedBytes)
	}
	if o.MaxBufferedBytes == 0 {
		o.MaxBufferedBytes = 64 << 20
	}
	if o.MaxConnections < 0 {
		return o, fmt.Errorf("%w: MaxConnections is negative (%d)", ErrOptions, o.MaxConnections)
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = defaultMaxConnections()
	}
	origins, err := parseOrigins(o.Origins)
	if err != nil {
		return o, fmt.Errorf("%w: Origins: %w", ErrOptions, err)
	}
	o.defense = &defense{origins: origins}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
