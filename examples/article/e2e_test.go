package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/canaltest/browser"
)

// The article's and the guide's flows end to end: real Django (runserver, Debian's
// Django, REST framework and simplejwt), tokens minted by those packages through the
// site's own endpoints, this package's handler on a Canal server, and Chromium.
func TestArticle(t *testing.T) {
	st := startStack(t)
	a := st.login(t, alice)
	b := st.login(t, bob)
	c := st.login(t, carol)
	expiredAccess, expiredSesame := st.expired(t, alice)
	// What happens on the site after the tokens were handed out: bob's DRF token is
	// deleted (DRF's way to revoke it), carol's account is deactivated.
	st.shell(t, `
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
Token.objects.filter(user__username="bob").delete()
get_user_model().objects.filter(username="carol").update(is_active=False)
`)
	every := []string{a.drf, a.access, a.refresh, a.sesame, b.drf, b.access, b.refresh, b.sesame,
		c.drf, c.access, c.refresh, c.sesame, expiredAccess, expiredSesame, st.secret}
	t.Cleanup(func() {
		noTrace(t, "the Canal server's log", st.logs.String(), every...)
		noTrace(t, "the consumers' log", consumerLog.String(), every...)
		noTrace(t, "Django's log", st.django.Log(), every...)
	})

	t.Run("valid tokens", func(t *testing.T) {
		for _, tc := range []struct {
			name, path string
			opts       canaltest.DialOptions
			first      string // a token sent as the first message
		}{
			{"DRF token in the query (the article)", "/?token=" + a.drf, canaltest.DialOptions{}, ""},
			{"DRF token in the subprotocol", "/", canaltest.DialOptions{Subprotocols: []string{"canal.token", "canal.token." + a.drf}}, ""},
			{"DRF token as the first message", "/", canaltest.DialOptions{}, a.drf},
			{"simplejwt access token", "/jwt/?token=" + a.access, canaltest.DialOptions{}, ""},
		} {
			t.Run(tc.name, func(t *testing.T) { sayHello(t, st, tc.path, tc.opts, tc.first) })
		}
	})

	t.Run("refused before the upgrade", func(t *testing.T) {
		for _, tc := range []struct{ name, path, token string }{
			{"unknown DRF token", "/", randomHex(t, 20)},
			{"deleted DRF token", "/", b.drf},
			{"tampered DRF token", "/", flip(a.drf, len(a.drf)-1)},
			{"inactive user's DRF token", "/", c.drf},
			{"simplejwt access token where a DRF token is expected", "/", a.access},
			{"refresh token where an access token is expected", "/jwt/", a.refresh},
			{"expired access token", "/jwt/", expiredAccess},
			{"access token rewritten to name another user", "/jwt/", withClaim(t, c.access, "user_id", userID(t, a.access))},
			{"access token with a forged signature", "/jwt/", flip(a.access, len(a.access)-2)},
			{"inactive user's access token", "/jwt/", c.access},
			{"DRF token where a JWT is expected", "/jwt/", a.drf},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ws, err := canaltest.Dial(t.Context(), st.ws(tc.path+"?token="+url.QueryEscape(tc.token)), canaltest.DialOptions{})
				var he *canaltest.HandshakeError
				if !errors.As(err, &he) || he.Status != 403 {
					if ws != nil {
						ws.Abort()
					}
					t.Fatalf("got %v, want HTTP 403", err)
				}
				if strings.Contains(he.Reason, tc.token) {
					t.Errorf("the refusal quotes the token: %q", he.Reason)
				}
			})
		}
		// Django's log is read from its tail (4 KiB): check it while it holds all of this.
		noTrace(t, "Django's log", st.django.Log(), every...)
	})

	t.Run("no token", func(t *testing.T) {
		// The socket waits 5 s for a first-message token, then closes with 4408.
		ws := dial(t, st.ws("/"), canaltest.DialOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		if code, reason, err := ws.ExpectClose(ctx); err != nil || code != canal.CloseAuthTimeout {
			t.Fatalf("got close %d %q, %v; want %d", code, reason, err, canal.CloseAuthTimeout)
		}
	})

	t.Run("sesame token as the first message", func(t *testing.T) {
		for _, tc := range []struct{ name, first, want string }{
			{"bare, as websocket.send(token)", a.sesame, "Hello testuserone!"},
			{`as {"token": ...}`, `{"token": "` + a.sesame + `"}`, "Hello testuserone!"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ws := dial(t, st.ws("/ws/events/"), canaltest.DialOptions{})
				defer ws.Close(canal.CloseNormal)
				if err := ws.SendText(tc.first); err != nil {
					t.Fatal(err)
				}
				if got, err := ws.ReceiveText(t.Context()); err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
			})
		}
		for _, tc := range []struct{ name, first string }{
			{"not a token", "not a token"},
			{"expired sesame token", expiredSesame},
			{"tampered sesame token", flip(a.sesame, 5)},
			{"inactive user's sesame token", c.sesame},
			{"DRF token where a sesame token is expected", a.drf},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ws := dial(t, st.ws("/ws/events/"), canaltest.DialOptions{})
				if err := ws.SendText(tc.first); err != nil {
					t.Fatal(err)
				}
				code, reason, err := ws.ExpectClose(t.Context())
				if err != nil || code != canal.CloseUnauthorized {
					t.Fatalf("got close %d %q, %v; want %d", code, reason, err, canal.CloseUnauthorized)
				}
				if strings.Contains(reason, tc.first) {
					t.Errorf("the close reason quotes the token: %q", reason)
				}
			})
		}
		noTrace(t, "Django's log", st.django.Log(), every...)
	})

	t.Run("admin events", func(t *testing.T) {
		// The guide's stream: a superuser sees every change; erin, who may only view
		// users, sees the change to a user and not the one to a group.
		e := st.login(t, erin)
		every = append(every, e.drf, e.access, e.refresh, e.sesame)
		connect := func(sesame string) *canaltest.Communicator {
			ws := dial(t, st.ws("/ws/events/"), canaltest.DialOptions{})
			if err := ws.SendText(sesame); err != nil {
				t.Fatal(err)
			}
			if _, err := ws.ReceiveText(t.Context()); err != nil { // the greeting
				t.Fatal(err)
			}
			return ws
		}
		superuser, viewer := connect(a.sesame), connect(e.sesame)
		st.adminChange(t, "group", "editors")
		st.adminChange(t, "user", "frank")
		type event struct{ Model, Object, User string }
		next := func(ws *canaltest.Communicator) event {
			t.Helper()
			var ev event
			if err := ws.ReceiveJSON(t.Context(), &ev); err != nil {
				t.Fatal(err)
			}
			return ev
		}
		if got, want := next(superuser), (event{"group", "editors", alice}); got != want {
			t.Errorf("superuser's first event %+v, want %+v", got, want)
		}
		if got, want := next(superuser), (event{"user", "frank", alice}); got != want {
			t.Errorf("superuser's second event %+v, want %+v", got, want)
		}
		// Events of one sender arrive in order: the group's would have come first.
		if got, want := next(viewer), (event{"user", "frank", alice}); got != want {
			t.Errorf("viewer's first event %+v, want %+v (and none about groups)", got, want)
		}
	})

	t.Run("browser", func(t *testing.T) { testBrowser(t, st) })
}

// sayHello connects, checks the consumer got the article's user with its email (a
// claim of REALTIME_TICKET_CLAIMS), and runs the article's "Say hello !" command.
func sayHello(t *testing.T, st *stack, path string, opts canaltest.DialOptions, first string) {
	t.Helper()
	// What the article's Connect prints; counted before and after, since the log is
	// the whole run's.
	const want = "article: testuserone <testuserone@example.com> connected"
	before := len(consumerLog.Lines(want))
	ws := dial(t, st.ws(path), opts)
	defer ws.Close(canal.CloseNormal)
	if first != "" {
		if err := ws.SendText(first); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.SendJSON(map[string]string{"command": "Say hello !", "data_string": "This is the data string !"}); err != nil {
		t.Fatal(err)
	}
	var reply map[string]string
	if err := ws.ReceiveJSON(t.Context(), &reply); err != nil {
		t.Fatal(err)
	}
	if reply["command_response"] != "The command to say hello was received " || reply["data_string_bacK"] != "This is the data string !" {
		t.Fatalf("reply %v", reply)
	}
	// Connect ran before the reply, so its line is in the log by now.
	if n := len(consumerLog.Lines(want)); n != before+1 {
		t.Fatalf("the consumer did not see the user: no %q in\n%s", want, consumerLog.String())
	}
}

func dial(t *testing.T, url string, opts canaltest.DialOptions) *canaltest.Communicator {
	t.Helper()
	ws, err := canaltest.Dial(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(ws.Abort)
	return ws
}

// The page in Chromium: a wrong password, then the article's login, its socket's
// reply, and the guide's greeting on the sesame socket.
func testBrowser(t *testing.T, st *stack) {
	bctx := browser.New(t)
	console := browser.WatchConsole(bctx)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			browser.Screenshot(t, bctx, "article-e2e-failure.png")
			t.Fatalf("%s: %v\nbrowser console:\n%s", what, err, console)
		}
	}
	logHas := func(text string) chromedp.Action[chromedp.Void] {
		js, _ := json.Marshal(text)
		return chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById("log").textContent.includes(%s)`, js),
			chromedp.WithPollingInterval(50*time.Millisecond))
	}
	step("a wrong password",
		chromedp.Navigate(st.django.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("form_username")),
		chromedp.SendKeys(chromedp.ID("form_username"), alice),
		chromedp.SendKeys(chromedp.ID("form_password"), "wrong"),
		chromedp.Click(chromedp.ID("login")),
		logHas("login failed"),
	)
	step("the article's login",
		chromedp.SetValue(chromedp.ID("form_password"), password),
		chromedp.Click(chromedp.ID("login")),
		logHas("reply: The command to say hello was received  / This is the data string !"),
		logHas("events: Hello testuserone!"),
	)
	st.adminChange(t, "group", "seen in the browser")
	step("an admin event", logHas(`"object": "seen in the browser"`))
	browser.Screenshot(t, bctx, "article-e2e.png")
}

// flip changes the character at i of a token (to another of the same alphabet).
func flip(token string, i int) string {
	b := []byte(token)
	if b[i] == 'a' {
		b[i] = 'b'
	} else {
		b[i] = 'a'
	}
	return string(b)
}

// jwtClaims decodes a JWT's payload.
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	var claims map[string]any
	if err := d.Decode(&claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func userID(t *testing.T, token string) any { return jwtClaims(t, token)["user_id"] }

// withClaim rewrites one claim of a JWT's payload and keeps its signature: what an
// attacker who can read a token but not sign one can make.
func withClaim(t *testing.T, token, name string, value any) string {
	t.Helper()
	claims := jwtClaims(t, token)
	claims[name] = value
	raw, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + parts[2]
}
