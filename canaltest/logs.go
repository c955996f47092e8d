package canaltest

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// LogBuffer collects what a test's servers, layers or peers log, for the test to read
// while they write. It keeps at most 1 MiB (a runaway log cannot fill the test's
// memory; later writes are dropped and still reported as written).
//
// Concurrency: safe for concurrent use. The zero value is ready.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const maxLogBuffer = 1 << 20

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len()+len(p) <= maxLogBuffer {
		b.buf.Write(p)
	}
	return len(p), nil
}

// String returns everything logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the logged lines that contain substr.
func (b *LogBuffer) Lines(substr string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// Logger returns a text logger that writes to b.
func (b *LogBuffer) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }
