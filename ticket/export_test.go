package ticket

import "time"

// Test hooks, compiled into the test binary only.

// UsesScript reports whether s consumes with the Lua script instead of GETDEL.
func UsesScript(s *Redis) bool { return s.useScript.Load() }

// SetClock replaces m's clock.
func SetClock(m *Memory, now func() time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = now
}

// Len returns the number of entries m holds, expired or not.
func Len(m *Memory) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// WellFormed exposes the syntax check.
var WellFormed = wellFormed
