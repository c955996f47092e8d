package auth_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/canaltest"
)

const djangoSecret = "auth-django-test-secret-0123456789abcdef"

// noRedirects is a client of the test's own, so that its idle connections can be
// closed when the test ends.
func noRedirects(t *testing.T) *http.Client {
	transport := &http.Transport{Proxy: nil}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func djangoVerifier(t *testing.T, url, token, kind string) auth.Verifier {
	t.Helper()
	v, err := auth.Django(auth.DjangoOptions{URL: url, Token: token, Kind: kind, Client: noRedirects(t), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDjango runs every kind against django_canal's test project, served by runserver
// (python/tests: Django's session engine, DRF's TokenAuthentication, simplejwt's
// JWTAuthentication, a backend of django-sesame's shape and one of the site's own).
func TestDjango(t *testing.T) {
	site := canaltest.StartDjangoTests(t, djangoSecret)
	alice, idle := site.Users["alice"], site.Users["idle"]
	kinds := []string{"session", "drf", "simplejwt", "sesame", "signed"}
	var secrets []string // every credential the test sends, to look for in errors and logs
	for _, kind := range kinds {
		if alice[kind] == "" || idle[kind] == "" {
			t.Fatalf("the fixture has no %s credential (DRF and simplejwt must import: apt-get install python3-djangorestframework python3-djangorestframework-simplejwt)", kind)
		}
		secrets = append(secrets, alice[kind], idle[kind])
	}
	noSecret := func(t *testing.T, err error) {
		t.Helper()
		for _, s := range append(secrets, djangoSecret) {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q carries a secret", err)
			}
		}
	}

	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			v := djangoVerifier(t, site.URL+"/auth/", djangoSecret, kind)
			u, err := v(context.Background(), alice[kind])
			if err != nil || u.ID != alice["id"] || u.Username != "alice" {
				t.Fatalf("alice: %+v, %v", u, err)
			}
			// The site's REALTIME_TICKET_CLAIMS, as a ticket holds them.
			if u.Attrs["email"] != "alice@example.com" || u.Attrs["staff"] != false {
				t.Fatalf("alice's claims: %+v", u.Attrs)
			}
			nobody := map[string]string{
				"inactive user": idle[kind],
				"unknown":       "unknown-" + strings.Repeat("0", 32),
				"tampered":      alice[kind][:len(alice[kind])-2] + "xx",
			}
			for other, cred := range map[string]string{"session": alice["session"], "sesame": alice["sesame"], "simplejwt": alice["simplejwt"]} {
				if other != kind {
					nobody["a "+other+" credential"] = cred
				}
			}
			for name, cred := range nobody {
				u, err := v(context.Background(), cred)
				if !errors.Is(err, auth.ErrInvalid) || errors.Is(err, canal.ErrUnavailable) || u.Authenticated() {
					t.Fatalf("%s: %+v, %v; want ErrInvalid", name, u, err)
				}
				noSecret(t, err)
			}
		})
	}

	t.Run("session endpoint", func(t *testing.T) {
		v := djangoVerifier(t, site.URL+"/session/", djangoSecret, "session")
		if u, err := v(context.Background(), alice["session"]); err != nil || u.Username != "alice" {
			t.Fatalf("/session/: %+v, %v", u, err)
		}
	})

	unavailable := []struct {
		name, url, token, kind, cred string
	}{
		{"wrong secret", site.URL + "/auth/", "wrong-" + djangoSecret, "session", alice["session"]},
		{"kind the site does not enable", site.URL + "/auth/", djangoSecret, "ldap", alice["session"]},
		{"not the endpoint", site.URL + "/nowhere/", djangoSecret, "session", alice["session"]},
	}
	for _, tt := range unavailable {
		t.Run(tt.name, func(t *testing.T) {
			v := djangoVerifier(t, tt.url, tt.token, tt.kind)
			u, err := v(context.Background(), tt.cred)
			if !errors.Is(err, canal.ErrUnavailable) || errors.Is(err, auth.ErrInvalid) || u.Authenticated() {
				t.Fatalf("%+v, %v; want canal.ErrUnavailable", u, err)
			}
			noSecret(t, err)
		})
	}

	// What auth.Cache documents: a credential revoked on the site stays accepted for
	// up to TTL through the cache, and is refused at once without it.
	t.Run("revocation", func(t *testing.T) {
		direct := djangoVerifier(t, site.URL+"/auth/", djangoSecret, "drf")
		cached, err := auth.Cache(direct, auth.CacheOptions{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if u, err := cached(context.Background(), alice["drf"]); err != nil || u.Username != "alice" {
			t.Fatalf("before: %+v, %v", u, err)
		}
		site.Shell(t, "from rest_framework.authtoken.models import Token; Token.objects.filter(user__username='alice').delete()")
		if _, err := direct(context.Background(), alice["drf"]); !errors.Is(err, auth.ErrInvalid) {
			t.Fatalf("without the cache, a deleted token: %v, want ErrInvalid", err)
		}
		if u, err := cached(context.Background(), alice["drf"]); err != nil || u.Username != "alice" {
			t.Fatalf("through the cache, within TTL: %+v, %v; want alice still", u, err)
		}
	})

	t.Run("Django down", func(t *testing.T) {
		v := djangoVerifier(t, site.URL+"/auth/", djangoSecret, "drf")
		site.Stop()
		u, err := v(context.Background(), alice["drf"])
		if !errors.Is(err, canal.ErrUnavailable) || u.Authenticated() {
			t.Fatalf("%+v, %v; want canal.ErrUnavailable", u, err)
		}
		noSecret(t, err)
	})

	// runserver logs each request line (method, path, status): never a credential.
	log := site.Log()
	if !strings.Contains(log, "POST /auth/") {
		t.Fatalf("Django's log has no request lines:\n%s", log)
	}
	for _, s := range append(secrets, djangoSecret) {
		if strings.Contains(log, s) {
			t.Fatalf("Django's log carries a secret:\n%s", log)
		}
	}
}

// TestDjangoAnswers covers how the verifier reads answers Django does not give (a
// redirect, an oversized or malformed body, a hang), against a stand-in endpoint: the
// narrow edge. TestDjango covers the real endpoint's answers.
func TestDjangoAnswers(t *testing.T) {
	const cred = "credential-4b7d19e2"
	tests := []struct {
		name    string
		status  int
		body    string
		invalid bool // else unavailable
		user    string
	}{
		{name: "user", status: 200, body: `{"user":{"id":42,"username":"ada","is_staff":true}}`, user: "ada"},
		{name: "nobody", status: 200, body: `{"user":null}`, invalid: true},
		{name: "no user key", status: 200, body: `{}`},
		{name: "user without username", status: 200, body: `{"user":{"id":42}}`},
		{name: "user with a fractional id", status: 200, body: `{"user":{"id":4.2,"username":"ada"}}`},
		{name: "not JSON", status: 200, body: `<html>`},
		{name: "oversized", status: 200, body: `{"user":{"id":42,"username":"ada","pad":"` + strings.Repeat("x", 64<<10) + `"}}`},
		{name: "redirect", status: 302},
		{name: "server error", status: 500, body: `oops`},
		{name: "an answer quoting the credential", status: 400, body: `{"error":"bad ` + cred + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotAuth, gotBody, gotURL string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotAuth, gotURL = r.Header.Get("Authorization"), r.URL.String()
				b, _ := io.ReadAll(r.Body)
				gotBody = string(b)
				if tt.status == 302 {
					w.Header().Set("Location", "/elsewhere/")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			t.Cleanup(srv.Close)
			v := djangoVerifier(t, srv.URL+"/auth/", djangoSecret, "drf")
			u, err := v(context.Background(), cred)
			if gotAuth != "Bearer "+djangoSecret || gotBody != `{"kind":"drf","credential":"`+cred+`"}` || gotURL != "/auth/" {
				t.Fatalf("request: Authorization %q, URL %q, body %q", gotAuth, gotURL, gotBody)
			}
			if err != nil && (strings.Contains(err.Error(), cred) || strings.Contains(err.Error(), djangoSecret)) {
				t.Fatalf("error %q carries a secret", err)
			}
			switch {
			case tt.user != "":
				if err != nil || u.Username != tt.user || u.ID != "42" || u.Attrs["is_staff"] != true {
					t.Fatalf("%+v, %v; want %s", u, err, tt.user)
				}
			case tt.invalid:
				if !errors.Is(err, auth.ErrInvalid) || u.Authenticated() {
					t.Fatalf("%+v, %v; want ErrInvalid", u, err)
				}
			default:
				if !errors.Is(err, canal.ErrUnavailable) || u.Authenticated() {
					t.Fatalf("%+v, %v; want canal.ErrUnavailable", u, err)
				}
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) }) // before srv.Close, which waits for handlers
		v, err := auth.Django(auth.DjangoOptions{URL: srv.URL + "/auth/", Token: djangoSecret, Kind: "drf", Client: noRedirects(t), Timeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = v(context.Background(), cred)
		if !errors.Is(err, canal.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%v; want canal.ErrUnavailable and the deadline", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("returned after %v", d)
		}
	})

	t.Run("credentials refused without a request", func(t *testing.T) {
		v := djangoVerifier(t, "http://127.0.0.1:1/auth/", djangoSecret, "drf")
		for _, c := range []string{"", strings.Repeat("x", 8193)} {
			if _, err := v(context.Background(), c); !errors.Is(err, auth.ErrInvalid) {
				t.Fatalf("credential of %d bytes: %v, want ErrInvalid", len(c), err)
			}
		}
	})
}

func TestDjangoOptionsInvalid(t *testing.T) {
	const ok = "http://127.0.0.1:8000/auth/"
	for _, o := range []auth.DjangoOptions{
		{Token: "t", Kind: "drf"},
		{URL: "ftp://127.0.0.1/auth/", Token: "t", Kind: "drf"},
		{URL: "http:///auth/", Token: "t", Kind: "drf"},
		{URL: "http://u:p@127.0.0.1/auth/", Token: "t", Kind: "drf"},
		{URL: ok + "?credential=x", Token: "t", Kind: "drf"},
		{URL: ok, Kind: "drf"},
		{URL: ok, Token: "t"},
		{URL: ok, Token: "t", Kind: "a kind"},
		{URL: ok, Token: "t", Kind: strings.Repeat("k", 65)},
		{URL: ok, Token: "t", Kind: "drf", Timeout: -time.Second},
	} {
		if _, err := auth.Django(o); err == nil {
			t.Fatalf("Django(%+v) accepted", o)
		} else if !strings.HasPrefix(err.Error(), "auth: Django: ") {
			t.Fatalf("error %q lacks the package prefix", err)
		}
	}
}
