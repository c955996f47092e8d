package canal

import "fmt"

// Message is a channel-layer message: the dict of Channels. It must carry a string "type"
// ("chat.message") that selects the handler. Values cross to Django unchanged when they
// are string, []byte, bool, nil, int/int64/uint64, float64, []any and map[string]any.
//
// A Message delivered to several consumers (a group) is shared: treat it as read-only.
type Message map[string]any

// Type returns the message's "type", or "" when it is missing or not a string.
func (m Message) Type() string {
	t, _ := m["type"].(string)
	return t
}

// String returns m[key] when it is a string.
func (m Message) String(key string) string {
	s, _ := m[key].(string)
	return s
}

// ValidateType checks the rules Channels applies before dispatching: a non-empty string
// type that does not name a private handler (leading '_' or '.').
func (m Message) ValidateType() error {
	t, ok := m["type"].(string)
	switch {
	case !ok:
		return fmt.Errorf("%w: message has no string \"type\"", ErrInvalidMessage)
	case t == "":
		return fmt.Errorf("%w: empty \"type\"", ErrInvalidMessage)
	case t[0] == '_' || t[0] == '.':
		return fmt.Errorf("%w: type %q names a private handler", ErrInvalidMessage, t)
	}
	return nil
}
