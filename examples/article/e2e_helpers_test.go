package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/goleak"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/server"
)

// consumerLog collects what the consumers print (log.Printf, as the article's consumer
// prints), so the tests can see which user each socket got.
var consumerLog canaltest.LogBuffer

// TestMain fails the run if a test leaves a goroutine behind, except fasthttp's two
// (its worker-pool janitor notices a shut-down server within 10 s, and its clock
// goroutine lives for the process).
func TestMain(m *testing.M) {
	log.SetOutput(&consumerLog)
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}

// The users the tests create. testuserone is the article's user.
const (
	alice    = "testuserone" // a superuser, active throughout: sees every admin event
	bob      = "bob"         // his DRF token gets deleted
	carol    = "carol"       // deactivated after logging in
	erin     = "erin"        // may view users, nothing else: sees only their events
	password = "testing123"  // the article's password, for everyone
)

// stack is the deployment of the README on loopback: a private redis-server (the
// channel layer), the Django project in site/ (runserver) and this package's handler
// on a Canal server, in-process.
type stack struct {
	django *canaltest.Django
	opts   canaltest.DjangoOptions
	goAddr string               // Canal's "127.0.0.1:port"
	logs   *canaltest.LogBuffer // what the Canal server logged
	secret string               // REALTIME_SESSION_TOKEN, shared by both
}

func (s *stack) ws(path string) string { return "ws://" + s.goAddr + path }

// startStack migrates a private database, creates the users and starts both servers.
func startStack(t *testing.T) *stack {
	t.Helper()
	// Canal's port first: the page needs its URL, and Canal needs Django's.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{goAddr: ln.Addr().String(), logs: &canaltest.LogBuffer{}, secret: randomHex(t, 24)}
	redis := canaltest.StartRedis(t)
	dir, err := filepath.Abs("site")
	if err != nil {
		t.Fatal(err)
	}
	st.opts = canaltest.DjangoOptions{Dir: dir, Settings: "TokenAuth.settings", Env: map[string]string{
		"TOKEN_AUTH_DB":       filepath.Join(t.TempDir(), "db.sqlite3"),
		"DJANGO_SECRET_KEY":   randomHex(t, 32),
		"CANAL_SESSION_TOKEN": st.secret,
		"CANAL_WS_URL":        "ws://" + st.goAddr,
		"REDIS_URL":           redis.URL(),
	}}
	canaltest.DjangoCommand(t, st.opts, "django", "migrate", "--noinput", "-v0")
	st.shell(t, `
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
users = get_user_model().objects
users.create_superuser("testuserone", "testuserone@example.com", "testing123")
for name in ("bob", "carol", "erin"):
    users.create_user(name, name + "@example.com", "testing123")
users.get(username="erin").user_permissions.add(Permission.objects.get(codename="view_user"))
`)
	st.django = canaltest.StartDjango(t, st.opts)

	layer, err := layers.NewRedis(t.Context(), layers.RedisOptions{Hosts: []string{redis.URL()}})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the server's shutdown (cleanups run last first)
		if err := layer.Close(context.Background()); err != nil {
			t.Errorf("layer close: %v", err)
		}
	})
	srv, err := server.New(handler(st.django.URL, st.secret, layer), server.Options{
		Origins: []string{st.django.URL},
		Logger:  st.logs.Logger(),
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")
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
		<-served
	})
	return st
}

// shell runs Python in the Django project (`django shell -c`) and returns its output.
func (s *stack) shell(t *testing.T, code string) []byte {
	t.Helper()
	return canaltest.DjangoCommand(t, s.opts, "django", "shell", "-c", code)
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}

// post sends a form (or, with token set, a DRF-authenticated empty POST) to Django
// and decodes the JSON answer, failing the test on anything but 200.
func (s *stack) post(t *testing.T, path string, form url.Values, token string) map[string]string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.django.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Token "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d, %v %v", path, resp.StatusCode, body, err)
	}
	return body
}

// tokens is what a user gets from the site's real endpoints: the article's DRF token
// (obtain_auth_token), simplejwt's pair (TokenObtainPairView), and a sesame token
// (POST /api/sesame/ with the DRF token).
type tokens struct {
	drf, access, refresh, sesame string
}

func (s *stack) login(t *testing.T, user string) tokens {
	t.Helper()
	creds := url.Values{"username": {user}, "password": {password}}
	var tk tokens
	tk.drf = s.post(t, "/api/login/", creds, "")["token"]
	pair := s.post(t, "/api/token/", creds, "")
	tk.access, tk.refresh = pair["access"], pair["refresh"]
	tk.sesame = s.post(t, "/api/sesame/", nil, tk.drf)["token"]
	if tk.drf == "" || tk.access == "" || tk.refresh == "" || tk.sesame == "" {
		t.Fatalf("login of %s: missing tokens %+v", user, tk)
	}
	return tk
}

// expired mints, with the real packages, tokens that expired an hour ago: a simplejwt
// access token whose exp is past, and a sesame token signed an hour ago (its
// timestamp is in the signed value, so the clock is turned back while it is made).
func (s *stack) expired(t *testing.T, user string) (access, sesame string) {
	t.Helper()
	out := s.shell(t, `
import json, time
from datetime import timedelta
from unittest import mock
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken
from token_auth_app import sesame
user = get_user_model().objects.get(username="`+user+`")
access = AccessToken.for_user(user)
access.set_exp(from_time=access.current_time - timedelta(hours=1))
with mock.patch("django.core.signing.time.time", return_value=time.time() - 3600):
    old = sesame.get_token(user)
print(json.dumps({"access": str(access), "sesame": old}))
`)
	var v map[string]string
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
		t.Fatalf("minting expired tokens printed %q: %v", out, err)
	}
	return v["access"], v["sesame"]
}

// noTrace fails the test if a log holds any of the secrets, or a 16-character piece
// of one (enough to find a token cut short or quoted in part).
func noTrace(t *testing.T, where, log string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for i := 0; i+16 <= len(s); i += 8 {
			if strings.Contains(log, s[i:i+16]) {
				t.Errorf("%s holds part of a token (%q…):\n%s", where, s[:8], log)
				return
			}
		}
	}
}

// adminChange records a change in the admin's log, as the admin does when a staff
// user saves an object: a LogEntry, whose post_save signal group_sends the event.
// model is "group" or "user" (of django.contrib.auth).
func (s *stack) adminChange(t *testing.T, model, name string) {
	t.Helper()
	s.shell(t, `
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
model = {"group": Group, "user": get_user_model()}["`+model+`"]
obj = model.objects.create(**{"name" if model is Group else "username": "`+name+`"})
LogEntry.objects.log_action(
    user_id=get_user_model().objects.get(username="testuserone").pk,
    content_type_id=ContentType.objects.get_for_model(model).pk,
    object_id=obj.pk, object_repr=str(obj), action_flag=ADDITION, change_message=[{"added": {}}])
`)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
