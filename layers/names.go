package layers

import (
	"fmt"
	"path"
	"regexp"
	"time"

	"github.com/canal-rt/canal"
)

// MaxNameLength is the longest channel or group name Channels accepts.
const MaxNameLength = 99

var (
	channelNameRe = regexp.MustCompile(`^[a-zA-Z\d\-_.]+(![\d\w\-_.]*)?$`)
	groupNameRe   = regexp.MustCompile(`^[a-zA-Z\d\-_.]+$`)
)

// ValidChannelName checks a channel name against Channels' rules: at most 99
// characters of [a-zA-Z0-9-_.], optionally followed by '!' and a local part.
// The error wraps canal.ErrInvalidName.
func ValidChannelName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLength || !channelNameRe.MatchString(name) {
		return fmt.Errorf("%w: channel %q (at most %d of a-z A-Z 0-9 - _ . with an optional !local part)",
			canal.ErrInvalidName, name, MaxNameLength)
	}
	return nil
}

// ValidGroupName checks a group name: at most 99 characters of [a-zA-Z0-9-_.].
// The error wraps canal.ErrInvalidName.
func ValidGroupName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLength || !groupNameRe.MatchString(name) {
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
