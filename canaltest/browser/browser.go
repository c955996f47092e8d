// Package browser drives Debian's headless Chromium from tests, through chromedp, so a
// page served by a test can be checked as a person would use it.
package browser

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ExecPath is where Debian's chromium package installs the browser.
const ExecPath = "/usr/bin/chromium"

// Lifetime bounds a test's browser: past it every tab's actions fail.
const Lifetime = 2 * time.Minute

// New starts a private headless Chromium for t, with a fresh profile, and returns its
// first tab's context; tabs made from it with NewTab share the browser. The browser is
// closed, and any of its helper processes killed, when the test ends. A missing
// browser fails the test, naming the Debian package to install.
func New(t testing.TB) context.Context {
	t.Helper()
	path := ExecPath
	if _, err := os.Stat(path); err != nil {
		p, lerr := exec.LookPath("chromium")
		if lerr != nil {
			t.Fatalf("browser: chromium not found at %s: install Debian's chromium package (apt-get install chromium)", ExecPath)
		}
		path = p
	}
	profile := filepath.Join(t.TempDir(), "chromium-profile")
	life, cancelLife := context.WithTimeout(context.Background(), Lifetime)
	actx, cancelAlloc := chromedp.NewExecAllocator(life,
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Without these Chromium dials Google's services, which this network refuses.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true), // containers have a small /dev/shm
		chromedp.Flag("no-proxy-server", true),       // loopback only, whatever the environment says
		chromedp.WindowSize(1000, 800),
	)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser() // closes the browser
		cancelAlloc()   // kills it if needed and waits for the process
		cancelLife()
		killLeftovers(profile)
	})
	// Start the browser now so a broken install fails here, with a clear message.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("browser: starting %s: %v", path, err)
	}
	return bctx
}

// NewTab opens another tab in the browser of parent.
func NewTab(t testing.TB, parent context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(parent)
	t.Cleanup(cancel)
	return tab
}

// killLeftovers kills Chromium helper processes (zygote, renderers, network service)
// that outlive the browser: those running with this test's private profile, so started
// by it. Chromedp only reaps them when it made the profile directory itself.
func killLeftovers(profile string) {
	if runtime.GOOS != "linux" {
		return
	}
	want := []byte("--user-data-dir=" + profile)
	deadline := time.Now().Add(2 * time.Second)
	for quiet := 0; quiet < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		found := 0
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil || !bytes.Contains(cmdline, want) {
				continue
			}
			for _, arg := range bytes.Split(cmdline, []byte{0}) {
				if bytes.Equal(arg, want) {
					if p, err := os.FindProcess(pid); err == nil {
						_ = p.Kill()
					}
					found++
					break
				}
			}
		}
		if found == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// ConsoleLog collects a tab's console messages, to explain a failing browser step.
//
// Concurrency: safe for concurrent use.
type ConsoleLog struct {
	mu   sync.Mutex
	msgs []string
}

// WatchConsole starts collecting the console of tab.
func WatchConsole(tab context.Context) *ConsoleLog {
	l := &ConsoleLog{}
	msgs := chromedp.Console(tab)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, m.String())
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *ConsoleLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.msgs) == 0 {
		return "(console empty)"
	}
	return strings.Join(l.msgs, "\n")
}

// ArtifactDir is where screenshots go: $CANAL_ARTIFACTS, or artifacts/ at the module
// root (ignored by git).
func ArtifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CANAL_ARTIFACTS")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("browser: %v", err)
		}
		dir = filepath.Join(root, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browser: %v", err)
	}
	return dir
}

// Screenshot saves a full-page PNG of the tab as name in ArtifactDir, logs and returns
// its path. A failure is reported with t.Errorf, so it can run on a failure path.
func Screenshot(t testing.TB, tab context.Context, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 gives PNG; less gives JPEG
	if err != nil {
		t.Errorf("browser: screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(ArtifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("browser: %v", err)
		return ""
	}
	t.Logf("screenshot: %s", path)
	return path
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
