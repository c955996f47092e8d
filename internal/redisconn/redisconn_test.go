package redisconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url     string
		addr    string
		db      int
		wantErr bool
	}{
		{"redis://127.0.0.1:6380/2", "127.0.0.1:6380", 2, false},
		{"redis://:hunter2@127.0.0.1:6379", "127.0.0.1:6379", 0, false},
		{"http://u:hunter2@127.0.0.1:1", "", 0, true},
		{"redis://:hunter2@127.0.0.1:notaport", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(Redact(tt.url), func(t *testing.T) {
			opt, err := ParseURL(tt.url)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error %q reveals the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opt.InitAddress[0] != tt.addr || opt.SelectDB != tt.db || !opt.DisableCache || !opt.ForceSingleClient {
				t.Fatalf("options %v db %d cache off %v single %v", opt.InitAddress, opt.SelectDB, opt.DisableCache, opt.ForceSingleClient)
			}
		})
	}
	if got := Redact("redis://:hunter2@h:1/0"); strings.Contains(got, "hunter2") {
		t.Errorf("Redact = %q", got)
	}
}

func TestDialUnreachable(t *testing.T) {
	hooked := false
	_, name, err := DialURL(t.Context(), "redis://:hunter2@127.0.0.1:1/0", func(*rueidis.ClientOption) { hooked = true })
	if !errors.Is(err, canal.ErrUnavailable) || strings.Contains(err.Error(), "hunter2") || strings.Contains(name, "hunter2") {
		t.Fatalf("err = %v, name %q", err, name)
	}
	if !hooked {
		t.Error("the hook was not called")
	}
}

// TestDialFlushDelay checks that Dial gives options without MaxFlushDelay the default
// before the hook runs, so that a hook can still change it (0 turns it off), and
// leaves an explicit value alone.
func TestDialFlushDelay(t *testing.T) {
	tests := []struct {
		name string
		set  time.Duration // in the options passed to Dial
		hook func(*rueidis.ClientOption)
		want time.Duration // seen last by the hook
	}{
		{"default", 0, nil, FlushDelay},
		{"explicit", 7 * time.Microsecond, nil, 7 * time.Microsecond},
		{"hook turns it off", 0, func(o *rueidis.ClientOption) { o.MaxFlushDelay = 0 }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got time.Duration
			before := tt.set
			if before == 0 {
				before = FlushDelay
			}
			opt := rueidis.ClientOption{InitAddress: []string{"127.0.0.1:1"}, MaxFlushDelay: tt.set}
			_, err := Dial(t.Context(), "test", opt, func(o *rueidis.ClientOption) {
				if o.MaxFlushDelay != before {
					t.Errorf("the hook saw %v, want %v", o.MaxFlushDelay, before)
				}
				if tt.hook != nil {
					tt.hook(o)
				}
				got = o.MaxFlushDelay
			}, nil)
			if !errors.Is(err, canal.ErrUnavailable) {
				t.Fatalf("Dial to a closed port: %v", err)
			}
			if got != tt.want {
				t.Errorf("MaxFlushDelay = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStaleAndRetry(t *testing.T) {
	tests := []struct {
		err   error
		stale bool
	}{
		{nil, false},
		{io.EOF, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{net.ErrClosed, true},
		{context.DeadlineExceeded, false},
		{errors.New("dial tcp: connection refused"), false},
	}
	for _, tt := range tests {
		if got := Stale(tt.err); got != tt.stale {
			t.Errorf("Stale(%v) = %v", tt.err, got)
		}
	}
	calls := 0
	if err := Retry(t.Context(), func() error { calls++; return io.EOF }); !errors.Is(err, io.EOF) || calls != 1+MaxStaleRetries {
		t.Errorf("always stale: %v after %d calls; want %d", err, calls, 1+MaxStaleRetries)
	}
	calls = 0
	if err := Retry(t.Context(), func() error {
		calls++
		if calls < 3 {
			return io.ErrUnexpectedEOF
		}
		return nil
	}); err != nil || calls != 3 {
		t.Errorf("stale twice: %v after %d calls", err, calls)
	}
	calls = 0
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	Retry(ctx, func() error { calls++; return io.EOF })
	if calls != 1 {
		t.Errorf("cancelled ctx: %d calls; want 1", calls)
	}
}
