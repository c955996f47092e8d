package canaltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	fws "github.com/fasthttp/websocket"

	"github.com/canal-rt/canal"
)

// DefaultTimeout bounds a Communicator call whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// DialOptions shape the handshake.
type DialOptions struct {
	Subprotocols []string    // offered in Sec-WebSocket-Protocol, in order
	Origin       string      // sent as Origin unless empty
	Header       http.Header // further request headers
}

// HandshakeError is returned by Dial when the server refuses the upgrade.
type HandshakeError struct {
	Status int
	Reason string // the server's X-Canal-Reason header (canal.RejectError.Reason)
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("canaltest: handshake refused with HTTP %d", e.Status)
}

// ErrNoFrame is returned by ExpectNothing's failure path and by Receive on timeout.
var ErrNoFrame = errors.New("canaltest: no frame before the deadline")

// Communicator is a WebSocket client for tests, like Channels' WebsocketCommunicator,
// over a real socket.
//
// Concurrency: one goroutine may receive while another sends; Close is safe anytime.
type Communicator struct {
	ws          *fws.Conn
	Subprotocol string      // the subprotocol the server chose ("" for none)
	Header      http.Header // the 101 response headers

	writeMu sync.Mutex
	frames  chan canal.Frame
	done    chan struct{} // closed when the read loop ends
	quit    chan struct{} // closed by Close and Abort, so an unread frame cannot block the loop
	quitOne sync.Once
	closed  *canal.CloseError
}

// Dial opens a WebSocket to url. A refused handshake returns *HandshakeError.
func Dial(ctx context.Context, url string, opts DialOptions) (*Communicator, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	h := http.Header{}
	for k, vs := range opts.Header {
		h[k] = append([]string(nil), vs...)
	}
	if opts.Origin != "" {
		h.Set("Origin", opts.Origin)
	}
	d := fws.Dialer{Subprotocols: opts.Subprotocols, HandshakeTimeout: DefaultTimeout}
	ws, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, &HandshakeError{Status: resp.StatusCode, Reason: resp.Header.Get(canal.ReasonHeader)}
		}
		return nil, fmt.Errorf("canaltest: dial: %w", err)
	}
	c := &Communicator{
		ws:          ws,
		Subprotocol: ws.Subprotocol(),
		Header:      resp.Header,
		frames:      make(chan canal.Frame, 64),
		done:        make(chan struct{}),
		quit:        make(chan struct{}),
	}
	go c.readLoop()
	return c, nil
}

func (c *Communicator) readLoop() {
	defer close(c.done)
	defer close(c.frames)
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			var ce *fws.CloseError
			if errors.As(err, &ce) {
				c.closed = &canal.CloseError{Code: ce.Code, Reason: ce.Text}
			} else {
				c.closed = &canal.CloseError{Code: canal.CloseAbnormal, Err: err}
			}
			return
		}
		select {
		case c.frames <- canal.Frame{Binary: typ == fws.BinaryMessage, Data: data}:
		case <-c.quit:
			return
		}
	}
}

// Receive returns the next frame. When the server has closed the socket it returns a
// *canal.CloseError with the server's code (1006 when the TCP connection dropped).
func (c *Communicator) Receive(ctx context.Context) (canal.Frame, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	select {
	case f, ok := <-c.frames:
		if !ok {
			<-c.done
			return canal.Frame{}, c.closed
		}
		return f, nil
	case <-ctx.Done():
		return canal.Frame{}, fmt.Errorf("%w: %w", ErrNoFrame, ctx.Err())
	}
}

// ReceiveText returns the next frame, which must be text.
func (c *Communicator) ReceiveText(ctx context.Context) (string, error) {
	f, err := c.Receive(ctx)
	if err != nil {
		return "", err
	}
	if f.Binary {
		return "", errors.New("canaltest: got a binary frame, want text")
	}
	return string(f.Data), nil
}

// ReceiveJSON decodes the next text frame into v.
func (c *Communicator) ReceiveJSON(ctx context.Context, v any) error {
	s, err := c.ReceiveText(ctx)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("canaltest: frame %q: %w", s, err)
	}
	return nil
}

// ExpectClose waits for the server to close and returns its close code and reason.
// Frames that arrive first are an error.
func (c *Communicator) ExpectClose(ctx context.Context) (int, string, error) {
	f, err := c.Receive(ctx)
	var ce *canal.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Reason, nil
	}
	if err != nil {
		return 0, "", err
	}
	return 0, "", fmt.Errorf("canaltest: got frame %q, want close", f.Data)
}

// ExpectNothing fails if a frame or a close arrives within d.
func (c *Communicator) ExpectNothing(d time.Duration) error {
	select {
	case f, ok := <-c.frames:
		if !ok {
			<-c.done
			return fmt.Errorf("canaltest: got close %v, want nothing", c.closed)
		}
		return fmt.Errorf("canaltest: got frame %q, want nothing", f.Data)
	case <-time.After(d):
		return nil
	}
}

// SendText sends a text frame.
func (c *Communicator) SendText(s string) error { return c.write(fws.TextMessage, []byte(s)) }

// SendBytes sends a binary frame.
func (c *Communicator) SendBytes(b []byte) error { return c.write(fws.BinaryMessage, b) }

// SendJSON sends v encoded as a JSON text frame.
func (c *Communicator) SendJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(fws.TextMessage, b)
}

// SendRaw sends a frame of any type with the given payload, even an invalid one.
func (c *Communicator) SendRaw(messageType int, data []byte) error { return c.write(messageType, data) }

func (c *Communicator) write(typ int, data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(DefaultTimeout))
	return c.ws.WriteMessage(typ, data)
}

// Close sends a close frame with code (none when code is 0, so the server sees 1005),
// waits for the server to answer, and releases the socket.
func (c *Communicator) Close(code int) error {
	var payload []byte
	if code != 0 {
		payload = fws.FormatCloseMessage(code, "")
	}
	c.writeMu.Lock()
	err := c.ws.WriteControl(fws.CloseMessage, payload, time.Now().Add(DefaultTimeout))
	c.writeMu.Unlock()
	timer := time.NewTimer(DefaultTimeout)
	defer timer.Stop()
	for waiting := true; waiting; {
		select {
		case _, ok := <-c.frames: // drain frames sent before the server saw our close
			waiting = ok
		case <-timer.C:
			waiting = false
		}
	}
	c.stop()
	if err != nil && !errors.Is(err, fws.ErrCloseSent) {
		return err
	}
	return nil
}

// Abort drops the TCP connection without a close frame (the server sees 1006).
func (c *Communicator) Abort() { c.stop() }

func (c *Communicator) stop() {
	c.quitOne.Do(func() { close(c.quit) })
	_ = c.ws.NetConn().Close()
	<-c.done
}

func withDefault(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}
