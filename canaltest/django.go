package canaltest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bounds on every wait, so a broken Django fails a test instead of hanging it.
const (
	djangoReadyTimeout   = 30 * time.Second // from exec to answering HTTP
	djangoCommandTimeout = 60 * time.Second // one management command or script
	djangoExitTimeout    = 5 * time.Second  // from a signal to the process being reaped
	djangoLogTail        = 4096             // bytes of the server's output quoted in errors
	djangoPortAttempts   = 3                // fresh ports tried when another process wins one
)

// DebianPython is the interpreter the Django helpers run by default: Debian's, which
// has Django, DRF and simplejwt from apt while a python3 earlier on PATH may not.
const DebianPython = "/usr/bin/python3"

const djangoPackages = "python3-django python3-redis python3-djangorestframework python3-djangorestframework-simplejwt"

// DjangoOptions describe a Django project for [StartDjango] and [DjangoCommand].
type DjangoOptions struct {
	// Dir is the directory the project's modules are imported from (it is the working
	// directory and is put first on PYTHONPATH). Required.
	Dir string
	// Settings is DJANGO_SETTINGS_MODULE. Required.
	Settings string
	// Env is added to the test process's environment; an empty value removes a variable.
	Env map[string]string
	// Python is the interpreter; "" means [DebianPython].
	Python string
}

func (o DjangoOptions) python() string {
	if o.Python == "" {
		return DebianPython
	}
	return o.Python
}

func (o DjangoOptions) environ() []string {
	vars := map[string]string{
		"DJANGO_SETTINGS_MODULE":  o.Settings,
		"PYTHONPATH":              o.Dir,
		"PYTHONDONTWRITEBYTECODE": "1", // no __pycache__ in the source tree
		"PYTHONUNBUFFERED":        "1",
	}
	for k, v := range o.Env {
		vars[k] = v
	}
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := vars[k]; !ok {
			out = append(out, kv)
		}
	}
	for k, v := range vars {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// DjangoCommand runs `python -m ARGS...` in the project (e.g. "django", "migrate", or
// a fixture module) to completion, bounded, and returns its standard output. It fails
// the test on a non-zero exit, quoting standard error.
func DjangoCommand(t testing.TB, opts DjangoOptions, args ...string) []byte {
	t.Helper()
	requirePython(t, opts.python())
	ctx, cancel := context.WithTimeout(context.Background(), djangoCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, opts.python(), append([]string{"-m"}, args...)...)
	cmd.Dir = opts.Dir
	cmd.Env = opts.environ()
	cmd.WaitDelay = djangoExitTimeout
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("canaltest: python -m %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// Django is a running `python -m django runserver` (without the autoreloader, so one
// process) on a private loopback port, started by [StartDjango] and stopped by the
// test's cleanup.
type Django struct {
	URL string // "http://127.0.0.1:port"

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	log  string        // its output (stdout and stderr)
	once sync.Once
}

// StartDjango serves the project with runserver and waits until it answers HTTP (any
// status). The project's database must be ready (see [DjangoCommand]).
func StartDjango(t testing.TB, opts DjangoOptions) *Django {
	t.Helper()
	requirePython(t, opts.python())
	if opts.Dir == "" || opts.Settings == "" {
		t.Fatal("canaltest: StartDjango needs Dir and Settings")
	}
	logDir := t.TempDir()
	for attempt := 1; ; attempt++ {
		d, err := tryStartDjango(t, opts, filepath.Join(logDir, fmt.Sprintf("runserver-%d.log", attempt)))
		if err == nil {
			return d
		}
		// Another process may take the port between our probe and Django's bind.
		if !strings.Contains(err.Error(), "already in use") || attempt == djangoPortAttempts {
			t.Fatalf("canaltest: start Django: %v", err)
		}
	}
}

func tryStartDjango(t testing.TB, opts DjangoOptions, logPath string) (*Django, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(opts.python(), "-m", "django", "runserver", "--noreload", "127.0.0.1:"+strconv.Itoa(port))
	cmd.Dir = opts.Dir
	cmd.Env = opts.environ()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", opts.python(), err)
	}
	d := &Django{URL: "http://127.0.0.1:" + strconv.Itoa(port), t: t, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.Stop)

	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(djangoReadyTimeout)
	for {
		select {
		case <-d.done:
			return nil, fmt.Errorf("runserver exited before answering; output:\n%s", d.Log())
		default:
		}
		resp, err := client.Get(d.URL + "/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return d, nil
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("runserver did not answer within %v (last: %v); output:\n%s", djangoReadyTimeout, err, d.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop interrupts the server (SIGINT, as Ctrl-C does), kills it if it lingers, and waits
// until it is reaped, bounded. Later calls do nothing; the test's cleanup calls it too.
func (d *Django) Stop() {
	d.once.Do(func() {
		_ = d.cmd.Process.Signal(os.Interrupt)
		select {
		case <-d.done:
			return
		case <-time.After(djangoExitTimeout):
		}
		killGroup(d.cmd)
		select {
		case <-d.done:
		case <-time.After(djangoExitTimeout):
			d.t.Errorf("canaltest: runserver pid %d did not exit after SIGKILL", d.cmd.Process.Pid)
		}
	})
}

// Log is the server's output so far (its last 4 KiB), e.g. to check what it logged.
func (d *Django) Log() string {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	if len(b) > djangoLogTail {
		b = b[len(b)-djangoLogTail:]
	}
	return string(b)
}

// DjangoTestSite is django_canal's test project (python/tests in this repository)
// served by [StartDjangoTests].
type DjangoTestSite struct {
	*Django
	// Secret is the site's REALTIME_SESSION_TOKEN, for /auth/ and /session/.
	Secret string
	// Users holds the credentials of the users "alice" (active) and "idle" (inactive),
	// by kind: "id" (the primary key), "session", "sesame", "signed", and "drf" and
	// "simplejwt" where DRF imports (it does with Debian's packages).
	Users map[string]map[string]string

	opts DjangoOptions
}

// Shell runs Python code in the project with its settings and database (`django shell
// -c`), e.g. to revoke a credential, and returns what it printed.
func (s *DjangoTestSite) Shell(t testing.TB, code string) []byte {
	t.Helper()
	return DjangoCommand(t, s.opts, "django", "shell", "-c", code)
}

// StartDjangoTests serves django_canal's test project on a private sqlite database,
// migrated, with REALTIME_SESSION_TOKEN set to secret (at least 32 characters) and the
// users and credentials of python/tests/fixture.py. It must run inside this
// repository (it finds python/ from the working directory up).
func StartDjangoTests(t testing.TB, secret string) *DjangoTestSite {
	t.Helper()
	dir, err := pythonDir()
	if err != nil {
		t.Fatalf("canaltest: %v", err)
	}
	opts := DjangoOptions{
		Dir:      dir,
		Settings: "tests.settings",
		Env: map[string]string{
			"CANAL_TEST_DB":            filepath.Join(t.TempDir(), "db.sqlite3"),
			"CANAL_TEST_SESSION_TOKEN": secret,
		},
	}
	out := DjangoCommand(t, opts, "tests.fixture")
	var users map[string]map[string]any
	if err := json.Unmarshal(out, &users); err != nil {
		t.Fatalf("canaltest: tests.fixture printed %q: %v", out, err)
	}
	site := &DjangoTestSite{Django: StartDjango(t, opts), Secret: secret, Users: map[string]map[string]string{}, opts: opts}
	for name, creds := range users {
		site.Users[name] = map[string]string{}
		for kind, v := range creds {
			site.Users[name][kind] = fmt.Sprint(v)
		}
	}
	return site
}

// pythonDir finds this repository's python/ directory from the working directory up.
func pythonDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "python")
		if _, err := os.Stat(filepath.Join(p, "tests", "fixture.py")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("python/tests/fixture.py not found above the working directory: run inside the canal repository")
		}
		dir = parent
	}
}

// requirePython fails the test, naming the Debian packages, when python cannot import
// Django.
func requirePython(t testing.TB, python string) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("canaltest: %s not found: install Debian's Python with Django (apt-get install %s)", python, djangoPackages)
	}
}
