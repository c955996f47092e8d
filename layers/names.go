package layers

import (
	"fmt"
	"path"
	"time"

	"github.com/canal-rt/canal"
)

// MaxNameLength is the longest channel or group name Channels accepts.
const MaxNameLength = 99

// Names follow Channels' regexps, ^[a-zA-Z\d\-_.]+(![\d\w\-_.]*)?$ for channels and
// ^[a-zA-Z\d\-_.]+$ for groups, with Go's ASCII \d and \w, so both parts allow the
// same bytes. They are checked by hand because every layer call validates names and
// regexp matching cost about a microsecond per call.

// nameByte reports whether c may appear in a name: [a-zA-Z0-9_.-].
func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// validName checks the length and characters, allowing one '!' (not first) when bang.
func validName(name string, bang bool) bool {
	if len(name) == 0 || len(name) > MaxNameLength || name[0] == '!' {
		return false
	}
	seenBang := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '!' && bang && !seenBang {
			seenBang = true
			continue
		}
		if !nameByte(c) {
			return false
		}
	}
	return true
}

// ValidChannelName checks a channel name against Channels' rules: at most 99
// characters of [a-zA-Z0-9-_.], optionally followed by '!' and a local part.
// The error wraps canal.ErrInvalidName.
func ValidChannelName(name string) error {
	if !validName(name, true) {
		return fmt.Errorf("%w: channel %q (at most %d of a-z A-Z 0-9 - _ . with an optional !local part)",
			canal.ErrInvalidName, name, MaxNameLength)
	}
	return nil
}

// ValidGroupName checks a group name: at most 99 characters of [a-zA-Z0-9-_.].
// The error wraps canal.ErrInvalidName.
func ValidGroupName(name string) error {
	if !validName(name, false) {
		return fmt.Errorf("%w: group %q (at most %d of a-z A-Z 0-9 - _ .)", canal.ErrInvalidName, name, MaxNameLength)
	}
	return nil
}

// Defaults shared with channels_redis.
const (
	DefaultExpiry      = 60 * time.Second
	DefaultGroupExpiry = 24 * time.Hour
	DefaultCapacity    = 100
)

// Capacity is a channel-name glob with its capacity, as in Channels' channel_capacity.
type Capacity struct {
	Pattern string // path.Match glob over the full channel name, e.g. "http.request*"
	Size    int
}

// capacityFor returns the capacity of channel: the first matching pattern wins, else def.
func capacityFor(channel string, patterns []Capacity, def int) int {
	for _, p := range patterns {
		if ok, _ := path.Match(p.Pattern, channel); ok {
			return p.Size
		}
	}
	return def
}

// validateCapacities rejects malformed globs and non-positive sizes at construction.
func validateCapacities(patterns []Capacity) error {
	for _, p := range patterns {
		if _, err := path.Match(p.Pattern, ""); err != nil {
			return fmt.Errorf("layers: capacity pattern %q: %w", p.Pattern, err)
		}
		if p.Size <= 0 {
			return fmt.Errorf("layers: capacity for %q must be positive, got %d", p.Pattern, p.Size)
		}
	}
	return nil
}
