package consumer

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// ErrEncode: a value could not be encoded as JSON (NaN or ±Inf, a channel, a cycle, a
// failing MarshalJSON). SendJSON and JSONFrame wrap it. A layer event whose handler
// returns it is dropped for that connection instead of closing it (see Options.Events).
var ErrEncode = errors.New("consumer: cannot encode JSON")

// jsonEncoder is an encoder without HTML escaping, bound to a writer that copies what
// it writes into a fresh slice: one allocation and one copy per value, as json.Marshal.
type jsonEncoder struct {
	enc *json.Encoder
	out capture
}

type capture struct{ b []byte }

func (c *capture) Write(p []byte) (int, error) {
	c.b = append(c.b, p...) // nil before each Encode: the first write allocates exactly
	return len(p), nil
}

var encoderPool = sync.Pool{New: func() any {
	e := &jsonEncoder{}
	e.enc = json.NewEncoder(&e.out)
	e.enc.SetEscapeHTML(false)
	return e
}}

// marshalJSON is json.Marshal without escaping <, > and & (Canal's output is UTF-8
// for clients, not HTML) and without the Encoder's trailing newline. The result is a
// fresh slice: frames are queued and shared between connections, so they must never
// alias a pooled buffer.
func marshalJSON(v any) ([]byte, error) {
	e := encoderPool.Get().(*jsonEncoder)
	e.out.b = nil
	err := e.enc.Encode(v)
	b := e.out.b
	e.out.b = nil
	encoderPool.Put(e)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEncode, err)
	}
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	return b, nil
}
