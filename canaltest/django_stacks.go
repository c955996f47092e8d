package canaltest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// stackPython is Debian's interpreter, which has Django, channels and channels_redis
// from Debian packages (a python3 earlier on PATH may be another one).
const stackPython = "/usr/bin/python3"

// DjangoStack is one Django Channels stack to run Python peers on: Debian's own
// packages (bookworm: Django 3.2, channels 4.0, channels_redis 4.0), or a newer
// Debian release's unpacked by scripts/debian-django.sh (trixie: channels_redis
// 4.2.1, which adds serializer_format; sid: 4.3.0).
type DjangoStack struct {
	// Name is "bookworm", "trixie" or "sid".
	Name string
	// PythonPath is the unpacked dist-packages directory put on PYTHONPATH; "" for
	// the system's packages.
	PythonPath string
}

// DjangoStacks returns the system stack and the newer ones found in the cache
// (CANAL_DEBIAN_CACHE, else ~/.cache/canal/debian as scripts/test.sh sets it). A
// missing /usr/bin/python3 fails the test; a missing newer stack is logged, or fails
// the test when CANAL_REQUIRE_DEBIAN_SUITES=1.
func DjangoStacks(t testing.TB) []DjangoStack {
	t.Helper()
	if _, err := os.Stat(stackPython); err != nil {
		t.Fatalf("canaltest: %s not found: install Debian's python3-django-channels, python3-channels-redis and python3-msgpack (scripts/test.sh does)", stackPython)
	}
	stacks := []DjangoStack{{Name: "bookworm"}}
	cache := os.Getenv("CANAL_DEBIAN_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "canal", "debian")
	}
	for _, s := range []string{"trixie", "sid"} {
		p := filepath.Join(cache, s, "root", "usr", "lib", "python3", "dist-packages")
		if _, err := os.Stat(filepath.Join(p, "channels_redis")); err == nil {
			abs, _ := filepath.Abs(p)
			stacks = append(stacks, DjangoStack{Name: s, PythonPath: abs})
		} else if os.Getenv("CANAL_REQUIRE_DEBIAN_SUITES") == "1" {
			t.Fatalf("canaltest: Debian %s's channels_redis not found in %s: run scripts/debian-django.sh %s", s, cache, s)
		} else {
			t.Logf("canaltest: Debian %s's channels_redis is not unpacked in %s: testing without it (scripts/debian-django.sh %s adds it)", s, cache, s)
		}
	}
	return stacks
}

// Command returns a command running script with args on this stack's Python. ctx
// bounds its life (exec.CommandContext); stdin, stdout and stderr are the caller's
// to set.
func (d DjangoStack) Command(ctx context.Context, script string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, stackPython, append([]string{script}, args...)...)
	cmd.Env = os.Environ()
	if d.PythonPath != "" {
		cmd.Env = append(cmd.Env, "PYTHONPATH="+d.PythonPath)
	}
	cmd.WaitDelay = djangoStackExitDelay
	return cmd
}

// djangoStackExitDelay bounds how long Wait waits for a killed peer's output pipes.
const djangoStackExitDelay = 5 * time.Second
