package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/server"
)

// What the end-to-end tests run. Debian's Python is used on purpose: it has Django,
// redis-py, Channels and channels_redis from apt, while a python3 earlier on PATH
// (pyenv, a virtualenv) may not.
const (
	pythonPath = "/usr/bin/python3"
	pythonPkgs = "python3-django python3-redis python3-django-channels python3-channels-redis"
)

// Bounds on every wait.
const (
	djangoStartTimeout = 30 * time.Second // from exec to answering HTTP
	manageTimeout      = 60 * time.Second // one manage.py command
	processExitTimeout = 5 * time.Second  // from a signal to the process being reaped
	httpTimeout        = 10 * time.Second // one HTTP request to Django or Canal
)

// sessionToken is the secret shared by Django (REALTIME_SESSION_TOKEN) and Canal for
// the session endpoint in this deployment.
var sessionToken = "e2e-session-secret-" + strings.Repeat("7", 24)

// stack is one complete deployment on loopback: a private redis-server, the Django
// demo site (runserver) and the Canal server of this package, in-process.
type stack struct {
	redis  *canaltest.Redis
	django *djangoSite
	srv    *server.Server
	goAddr string // Canal's "127.0.0.1:port"
}

// wsURL is the Canal URL of a socket path such as "/ws/chat/lobby/".
func (s *stack) wsURL(path string) string { return "ws://" + s.goAddr + path }

// startStack starts everything, with the users alice (password alicePassword), bob
// (bobPassword) and the superuser admin (adminPassword).
func startStack(t *testing.T) *stack {
	t.Helper()
	requireDjango(t)
	st := &stack{}
	st.redis = canaltest.StartRedis(t)

	// Canal's port first: Django needs its URL, and Canal needs Django's origin.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	st.goAddr = ln.Addr().String()

	tmp := t.TempDir()
	env := map[string]string{
		"DJANGO_SETTINGS_MODULE":  "site_project.settings",
		"DJANGO_SECRET_KEY":       randomHex(t, 32),
		"DJANGO_DEBUG":            "0",
		"DJANGO_ALLOWED_HOSTS":    "127.0.0.1,localhost",
		"CANAL_DEMO_DB":           filepath.Join(tmp, "db.sqlite3"),
		"REDIS_URL":               st.redis.URL(),
		"REALTIME_TICKET_EXPIRE":  "2",
		"CANAL_WS_URL":            "ws://" + st.goAddr,
		"CANAL_SESSION_TOKEN":     sessionToken,
		"PYTHONDONTWRITEBYTECODE": "1", // no __pycache__ in the source tree
		"PYTHONUNBUFFERED":        "1",
	}
	manage(t, env, "migrate", "--noinput")
	manage(t, env, "demo_user", "alice", alicePassword)
	manage(t, env, "demo_user", "bob", bobPassword)
	manage(t, env, "demo_user", "--admin", "admin", adminPassword)
	st.django = startDjango(t, env, tmp)

	app, srv, closeApp, err := newApp(config{
		RedisURL:       st.redis.URL(),
		AllowedOrigins: []string{st.django.Origin},
		SessionURL:     st.django.URL + "/session/",
		SessionToken:   sessionToken,
		Logger:         testLogger(t),
	})
	if err != nil {
		ln.Close()
		t.Fatalf("newApp: %v", err)
	}
	st.srv = srv
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = app.Listener(srv.Listener(ln))
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("canal shutdown: %v", err)
		}
		if err := app.ShutdownWithContext(ctx); err != nil {
			t.Errorf("fiber shutdown: %v", err)
		}
		if err := closeApp(ctx); err != nil {
			t.Errorf("close app: %v", err)
		}
		select {
		case <-served:
		case <-ctx.Done():
			t.Errorf("fiber did not stop serving")
		}
	})
	return st
}

// requireDjango fails the test, naming the Debian packages, when Debian's Python
// cannot import Django, redis-py, Channels and channels_redis.
func requireDjango(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(pythonPath); err != nil {
		t.Fatalf("%s not found: install Debian's Python with Django (apt-get install %s)", pythonPath, pythonPkgs)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pythonPath, "-c", "import django, redis, channels, channels_redis").CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import Django, redis-py, Channels and channels_redis (%v): install them (apt-get install %s)\n%s",
			pythonPath, err, pythonPkgs, out)
	}
}

// siteDir is the Django project, ../site.
func siteDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "site"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "manage.py")); err != nil {
		t.Fatalf("Django demo site not found: %v", err)
	}
	return dir
}

// environ is the test process's environment with vars applied; an empty value
// removes the variable.
func environ(vars map[string]string) []string {
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

// manage runs one manage.py command to completion, bounded.
func manage(t *testing.T, env map[string]string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), manageTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonPath, append([]string{"manage.py"}, args...)...)
	cmd.Dir = siteDir(t)
	cmd.Env = environ(env)
	cmd.WaitDelay = processExitTimeout
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("manage.py %s: %v\n%s", args[0], err, out)
	}
	t.Logf("manage.py %s: %v", args[0], time.Since(start).Round(time.Millisecond))
}

// djangoSite is a running `manage.py runserver`.
type djangoSite struct {
	URL    string // "http://127.0.0.1:port"
	Origin string // the same: what a browser sends as Origin
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has been reaped
	log    string        // its output
}

// alive reports whether the process is still running.
func (d *djangoSite) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// logTail is the end of the process's output, for failure messages.
func (d *djangoSite) logTail() string {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// startDjango runs the development server on a free loopback port (without the
// autoreloader, so it is one process) and waits until it serves the login page.
// The test's cleanup stops it.
func startDjango(t *testing.T, env map[string]string, dir string) *djangoSite {
	t.Helper()
	for attempt := 1; ; attempt++ {
		d, err := tryStartDjango(t, env, dir, attempt)
		if err == nil {
			return d
		}
		// Another process may take the port between our probe and Django's bind.
		if !strings.Contains(err.Error(), "already in use") || attempt == 3 {
			t.Fatalf("start Django: %v", err)
		}
	}
}

func tryStartDjango(t *testing.T, env map[string]string, dir string, attempt int) (*djangoSite, error) {
	port := freePort(t)
	d := &djangoSite{
		URL:  "http://127.0.0.1:" + strconv.Itoa(port),
		done: make(chan struct{}),
		log:  filepath.Join(dir, fmt.Sprintf("runserver-%d.log", attempt)),
	}
	d.Origin = d.URL
	logFile, err := os.Create(d.log)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(pythonPath, "manage.py", "runserver", "--noreload", "127.0.0.1:"+strconv.Itoa(port))
	cmd.Dir = siteDir(t)
	cmd.Env = environ(env)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", pythonPath, err)
	}
	d.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.stop(t))

	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(djangoStartTimeout)
	for {
		if !d.alive() {
			return nil, fmt.Errorf("runserver exited before answering; output:\n%s", d.logTail())
		}
		resp, err := client.Get(d.URL + "/accounts/login/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d, nil
			}
			err = fmt.Errorf("GET /accounts/login/: HTTP %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("runserver did not answer within %v (last: %v); output:\n%s",
				djangoStartTimeout, err, d.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop returns the cleanup that interrupts the server (SIGINT, as Ctrl-C does), kills it
// if it lingers, and waits for it to be reaped, bounded.
func (d *djangoSite) stop(t *testing.T) func() {
	return func() {
		if !d.alive() {
			return
		}
		if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
			_ = d.cmd.Process.Kill()
		}
		select {
		case <-d.done:
			return
		case <-time.After(processExitTimeout):
		}
		_ = d.cmd.Process.Kill()
		select {
		case <-d.done:
		case <-time.After(processExitTimeout):
			t.Errorf("runserver pid %d did not exit after SIGKILL", d.cmd.Process.Pid)
		}
	}
}

// freePort asks the kernel for a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testLogger sends the Canal server's warnings and errors to the test log. Refused
// handshakes are logged at Info, and the tests refuse hundreds on purpose.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// session is a logged-in Django user, as a browser would be: a cookie jar with the
// session and CSRF cookies.
type session struct {
	site   *djangoSite
	client *http.Client
}

// login signs in through Django's login form, as a person does.
func login(t *testing.T, site *djangoSite, username, password string) *session {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &session{site: site, client: &http.Client{
		Jar:       jar,
		Timeout:   httpTimeout,
		Transport: &http.Transport{Proxy: nil},
	}}
	t.Cleanup(s.client.CloseIdleConnections)

	resp, err := s.client.Get(site.URL + "/accounts/login/")
	if err != nil {
		t.Fatalf("GET login page: %v", err)
	}
	drain(resp)
	csrf := s.csrfToken(t)
	form := url.Values{
		"username":            {username},
		"password":            {password},
		"csrfmiddlewaretoken": {csrf},
		"next":                {"/"},
	}
	req, _ := http.NewRequest(http.MethodPost, site.URL+"/accounts/login/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Referer", site.URL+"/accounts/login/")
	resp, err = s.client.Do(req) // follows the redirect to the chat page
	if err != nil {
		t.Fatalf("POST login: %v", err)
	}
	body := drain(resp)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		t.Fatalf("login as %s: ended on %s with HTTP %d, want the chat page; body:\n%.500s",
			username, resp.Request.URL, resp.StatusCode, body)
	}
	return s
}

// logout logs the session out with a POST to Django's LogoutView, as the page's
// "log out" button does, and checks that it lands on the login page.
func (s *session) logout(t *testing.T) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.site.URL+"/accounts/logout/",
		strings.NewReader(url.Values{"csrfmiddlewaretoken": {s.csrfToken(t)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Referer", s.site.URL+"/")
	resp, err := s.client.Do(req) // follows the redirect to LOGOUT_REDIRECT_URL
	if err != nil {
		t.Fatalf("POST logout: %v", err)
	}
	body := drain(resp)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/accounts/login/" {
		t.Fatalf("logout: ended on %s with HTTP %d, want the login page; body:\n%.500s",
			resp.Request.URL, resp.StatusCode, body)
	}
}

// cookie returns the value of the named cookie Django set for this session.
func (s *session) cookie(t *testing.T, name string) string {
	t.Helper()
	u, _ := url.Parse(s.site.URL)
	for _, c := range s.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	t.Fatalf("no %s cookie from Django", name)
	return ""
}

// csrfToken is the csrftoken cookie, which Django's JavaScript recipe sends back in
// X-CSRFToken.
func (s *session) csrfToken(t *testing.T) string {
	t.Helper()
	return s.cookie(t, "csrftoken")
}

// post sends a same-origin POST with the CSRF header, as the page's fetch does, and
// returns the status and the decoded JSON body.
func (s *session) post(t *testing.T, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.site.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-CSRFToken", s.csrfToken(t))
	req.Header.Set("Referer", s.site.URL+"/")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	body := drain(resp)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("POST %s: HTTP %d, not JSON: %.300s", path, resp.StatusCode, body)
	}
	return resp.StatusCode, out
}

// ticket gets a fresh ticket from POST /ticket/.
func (s *session) ticket(t *testing.T) string {
	t.Helper()
	status, body := s.post(t, "/ticket/", nil)
	tk, _ := body["ticket"].(string)
	if status != http.StatusOK || body["status"] != "ok" || len(tk) != 43 {
		t.Fatalf("POST /ticket/: HTTP %d %v, want 200 with a 43-character ticket", status, body)
	}
	return tk
}

func drain(resp *http.Response) []byte {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return b
}

// transport is one way of presenting a ticket to Canal.
type transport struct {
	name string
	// dial opens path with tkt and, for the first-message transport, sends it.
	dial func(ctx context.Context, st *stack, path, tkt string) (*canaltest.Communicator, error)
}

var transports = []transport{
	{"query", func(ctx context.Context, st *stack, path, tkt string) (*canaltest.Communicator, error) {
		return canaltest.Dial(ctx, st.wsURL(path)+"?ticket="+url.QueryEscape(tkt),
			canaltest.DialOptions{Origin: st.django.Origin})
	}},
	{"subprotocol", func(ctx context.Context, st *stack, path, tkt string) (*canaltest.Communicator, error) {
		c, err := canaltest.Dial(ctx, st.wsURL(path), canaltest.DialOptions{
			Origin:       st.django.Origin,
			Subprotocols: []string{"canal.ticket", "canal.ticket." + tkt},
		})
		if err == nil && c.Subprotocol != "canal.ticket" {
			c.Abort()
			return nil, fmt.Errorf("server chose subprotocol %q, want canal.ticket (browsers drop the socket otherwise)", c.Subprotocol)
		}
		return c, err
	}},
	{"first-message", func(ctx context.Context, st *stack, path, tkt string) (*canaltest.Communicator, error) {
		c, err := canaltest.Dial(ctx, st.wsURL(path), canaltest.DialOptions{Origin: st.django.Origin})
		if err != nil {
			return nil, err
		}
		if err := c.SendJSON(map[string]string{"ticket": tkt}); err != nil {
			c.Abort()
			return nil, err
		}
		return c, nil
	}},
}

// serverMsg is what Canal sends to the page, but for who is online (presenceMsg).
type serverMsg struct {
	Type    string `json:"type"`
	Text    string `json:"text"`
	User    string `json:"user"`
	Message string `json:"message"`
}

// presenceMsg is a chat socket's frame about who is online: "online" (Users), then
// "joined" and "left" (ID, Username).
type presenceMsg struct {
	Type     string       `json:"type"`
	Users    []onlineUser `json:"users"`
	ID       string       `json:"id"`
	Username string       `json:"username"`
}

func isPresence(typ string) bool { return typ == "online" || typ == "joined" || typ == "left" }

// receive reads the next message that is not about who is online, bounded by ctx.
func receive(ctx context.Context, c *canaltest.Communicator) (serverMsg, error) {
	for {
		var raw json.RawMessage
		if err := c.ReceiveJSON(ctx, &raw); err != nil {
			return serverMsg{}, err
		}
		var m serverMsg
		if err := json.Unmarshal(raw, &m); err != nil {
			return m, fmt.Errorf("frame %s: %w", raw, err)
		}
		if !isPresence(m.Type) {
			return m, nil
		}
	}
}

// receivePresence reads the next message about who is online, skipping others,
// bounded by ctx.
func receivePresence(ctx context.Context, c *canaltest.Communicator) (presenceMsg, error) {
	for {
		var raw json.RawMessage
		if err := c.ReceiveJSON(ctx, &raw); err != nil {
			return presenceMsg{}, err
		}
		var m presenceMsg
		if err := json.Unmarshal(raw, &m); err != nil {
			return m, fmt.Errorf("frame %s: %w", raw, err)
		}
		if isPresence(m.Type) {
			return m, nil
		}
	}
}

// joinChat opens a chat socket with a fresh ticket of s (subprotocol transport) and
// reads the greeting and the list of who is online, which must hold the user. The
// test's cleanup closes it.
func joinChat(ctx context.Context, t *testing.T, st *stack, s *session, room string) *canaltest.Communicator {
	t.Helper()
	c, err := transports[1].dial(ctx, st, "/ws/chat/"+room+"/", s.ticket(t))
	if err != nil {
		t.Fatalf("join %s: %v", room, err)
	}
	t.Cleanup(func() { c.Abort() })
	m, err := receive(ctx, c)
	if err != nil || m.Type != "greeting" {
		t.Fatalf("join %s: got %+v, %v; want a greeting", room, m, err)
	}
	p, err := receivePresence(ctx, c)
	me := strings.TrimPrefix(m.Text, "hello ")
	if err != nil || p.Type != "online" || !slices.ContainsFunc(p.Users, func(u onlineUser) bool { return u.Username == me }) {
		t.Fatalf("join %s: got %+v, %v; want who is online, with %s", room, p, err, me)
	}
	return c
}

// openNotify opens a notification socket with a fresh ticket of s (query transport).
// The test's cleanup closes it.
func openNotify(ctx context.Context, t *testing.T, st *stack, s *session) *canaltest.Communicator {
	t.Helper()
	c, err := transports[0].dial(ctx, st, "/ws/notify/", s.ticket(t))
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	t.Cleanup(func() { c.Abort() })
	return c
}

// wantRefused checks that a handshake was refused before the upgrade with status.
func wantRefused(t *testing.T, what string, c *canaltest.Communicator, err error, status int) {
	t.Helper()
	if err == nil {
		c.Abort()
		t.Fatalf("%s: connected, want HTTP %d", what, status)
	}
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != status {
		t.Fatalf("%s: %v, want HTTP %d", what, err, status)
	}
}

// wantClosed checks that an accepted socket is closed with code before any message
// but those about who is online.
func wantClosed(ctx context.Context, t *testing.T, what string, c *canaltest.Communicator, code int) {
	t.Helper()
	defer c.Abort()
	got, _, err := expectClose(ctx, c)
	if err != nil || got != code {
		t.Fatalf("%s: close %d, %v; want close %d", what, got, err, code)
	}
}

// expectClose waits for the server to close c and returns its close code and
// reason. Frames about who is online may come first; any other frame is an error.
func expectClose(ctx context.Context, c *canaltest.Communicator) (int, string, error) {
	for {
		f, err := c.Receive(ctx)
		var ce *canal.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Reason, nil
		}
		if err != nil {
			return 0, "", err
		}
		var m struct {
			Type string `json:"type"`
		}
		if f.Binary || json.Unmarshal(f.Data, &m) != nil || !isPresence(m.Type) {
			return 0, "", fmt.Errorf("got frame %q, want close", f.Data)
		}
	}
}

// --- the browser -----------------------------------------------------------

// listHas is a JavaScript predicate: some <li> of the list #id contains text.
func listHas(id, text string) string {
	idJS, _ := json.Marshal(id)
	textJS, _ := json.Marshal(text)
	return fmt.Sprintf(`[...document.querySelectorAll("#" + %s + " li")].some(li => li.textContent.includes(%s))`, idJS, textJS)
}

// textIs is a JavaScript predicate: the element #id has exactly text.
func textIs(id, text string) string {
	idJS, _ := json.Marshal(id)
	textJS, _ := json.Marshal(text)
	return fmt.Sprintf(`(document.getElementById(%s) || {}).textContent === %s`, idJS, textJS)
}

// closeCodeOf returns the close code in err, or 0.
func closeCodeOf(err error) int {
	var ce *canal.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}
