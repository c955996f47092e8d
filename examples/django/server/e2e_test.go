package main

// End-to-end: a real redis-server, the real Django demo site under runserver (Debian's
// Django, Channels and channels_redis), this package's Canal server, and headless
// Chromium, all on 127.0.0.1. Django issues the tickets exactly as in production (POST
// /ticket/ behind its login and CSRF protection); Canal consumes them from the same
// Redis. Django reaches the sockets through the channel layer in that Redis:
// channels_redis' group_send on Django's side, layers.NewRedis on Canal's.
//
// The subtests share one deployment, so they run in order, not in parallel; the Redis
// outage comes last.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/canaltest/browser"
	"github.com/canal-rt/canal/ticket"
)

const (
	alicePassword = "correct-horse-battery-staple"
	bobPassword   = "tr0ub4dor-and-3"
	adminPassword = "admin-of-the-demo-9f3b"
)

// closeLoggedOut is the close code Django sends to a user's sockets at logout
// (django_canal's REALTIME_USER_SIGNALS), and when an admin disconnects them.
const closeLoggedOut = 4403

func TestDjangoEndToEnd(t *testing.T) {
	start := time.Now()
	st := startStack(t)
	t.Logf("redis, Django (%s) and Canal (%s) up in %v", st.django.URL, st.goAddr, time.Since(start).Round(time.Millisecond))
	alice := login(t, st.django, "alice", alicePassword)
	bob := login(t, st.django, "bob", bobPassword)

	t.Run("transports", func(t *testing.T) { testTransports(t, st, alice) })
	t.Run("refusals", func(t *testing.T) { testRefusals(t, st, alice) })
	t.Run("race", func(t *testing.T) { testRace(t, st, alice) })
	t.Run("notify", func(t *testing.T) { testNotify(t, st, alice, bob) })
	t.Run("session_cookie", func(t *testing.T) { testSessionCookie(t, st) })
	t.Run("browser", func(t *testing.T) { testBrowser(t, st, alice) })
	t.Run("logout", func(t *testing.T) { testLogout(t, st, alice, bob) })
	t.Run("online_and_kick", func(t *testing.T) { testOnlineAndKick(t, st, bob) })
	t.Run("redis_outage", func(t *testing.T) { testRedisOutage(t, st, alice) })
}

// A Django-issued ticket works in each of the three transports, and the consumer
// knows the Django user.
func testTransports(t *testing.T, st *stack, alice *session) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, err := tr.dial(ctx, st, "/ws/chat/lobby/", alice.ticket(t))
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Abort()
			m, err := receive(ctx, c)
			if err != nil || m != (serverMsg{Type: "greeting", Text: "hello alice"}) {
				t.Fatalf("first message %+v, %v; want the greeting \"hello alice\"", m, err)
			}
			// The socket works: a chat message comes back from the room, signed by alice.
			if err := c.SendJSON(map[string]string{"message": "via " + tr.name}); err != nil {
				t.Fatal(err)
			}
			m, err = receive(ctx, c)
			if err != nil || m != (serverMsg{Type: "chat", User: "alice", Message: "via " + tr.name}) {
				t.Fatalf("echo %+v, %v", m, err)
			}
		})
	}
}

// Django's session cookie alone opens a socket (middleware.Session asks Django's
// /session/ endpoint), only from Django's origin, and stops working at logout.
func testSessionCookie(t *testing.T, st *stack) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s := login(t, st.django, "alice", alicePassword) // a session of its own
	cookie := http.Header{"Cookie": {"sessionid=" + s.cookie(t, "sessionid")}}
	path := "/ws/chat/lobby/"

	c, err := canaltest.Dial(ctx, st.wsURL(path), canaltest.DialOptions{Origin: st.django.Origin, Header: cookie})
	if err != nil {
		t.Fatalf("dial with the session cookie: %v", err)
	}
	defer c.Abort()
	if m, err := receive(ctx, c); err != nil || m != (serverMsg{Type: "greeting", Text: "hello alice"}) {
		t.Fatalf("first message %+v, %v; want the greeting \"hello alice\"", m, err)
	}

	// Cross-site WebSocket hijacking: another site's page gets the cookie sent too.
	evil, err := canaltest.Dial(ctx, st.wsURL(path), canaltest.DialOptions{Origin: "http://evil.example", Header: cookie})
	wantRefused(t, "session cookie from a foreign origin", evil, err, http.StatusForbidden)

	s.logout(t)
	// The demo closes the user's sockets at logout, cookie-opened ones included.
	wantClosed(ctx, t, "socket of the logged-out session", c, closeLoggedOut)
	// The dead session identifies nobody: the server wants a ticket instead.
	c, err = canaltest.Dial(ctx, st.wsURL(path), canaltest.DialOptions{Origin: st.django.Origin, Header: cookie})
	if err != nil {
		t.Fatalf("dial with a logged-out cookie: %v, want a socket waiting for a ticket", err)
	}
	if err := c.SendText(`{"hello": "no ticket here"}`); err != nil {
		t.Fatal(err)
	}
	wantClosed(ctx, t, "logged-out cookie, no ticket", c, canal.CloseUnauthorized)
}

// Used, expired and forged tickets are refused before the upgrade.
func testRefusals(t *testing.T, st *stack, alice *session) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	query, sub, first := transports[0], transports[1], transports[2]
	path := "/ws/chat/lobby/"

	// Issue the ticket that will expire first, so its wait overlaps the other checks.
	stale := alice.ticket(t)
	issued := time.Now()

	used := alice.ticket(t)
	c, err := query.dial(ctx, st, path, used)
	if err != nil {
		t.Fatalf("first use: %v", err)
	}
	c.Abort()
	c, err = query.dial(ctx, st, path, used)
	wantRefused(t, "same ticket again (query)", c, err, http.StatusForbidden)
	c, err = sub.dial(ctx, st, path, used)
	wantRefused(t, "same ticket again (subprotocol)", c, err, http.StatusForbidden)
	c, err = first.dial(ctx, st, path, used)
	if err != nil {
		t.Fatalf("first-message dial: %v", err)
	}
	wantClosed(ctx, t, "same ticket again (first message)", c, canal.CloseUnauthorized)

	forged, err := ticket.New() // well-formed, never issued
	if err != nil {
		t.Fatal(err)
	}
	c, err = query.dial(ctx, st, path, forged)
	wantRefused(t, "forged ticket", c, err, http.StatusForbidden)
	c, err = sub.dial(ctx, st, path, "not a ticket!")
	wantRefused(t, "malformed ticket", c, err, http.StatusForbidden)
	c, err = query.dial(ctx, st, path, "")
	if err == nil {
		// No ticket at all: first-message mode waits for one.
		if err := c.SendText(`{"hello": "no ticket here"}`); err != nil {
			t.Fatal(err)
		}
		wantClosed(ctx, t, "no ticket", c, canal.CloseUnauthorized)
	} else {
		t.Fatalf("dial without a ticket: %v, want a socket waiting for the ticket frame", err)
	}

	// A valid ticket from a page Canal does not trust.
	evil, err := canaltest.Dial(ctx, st.wsURL(path)+"?ticket="+alice.ticket(t), canaltest.DialOptions{Origin: "http://evil.example"})
	wantRefused(t, "foreign origin", evil, err, http.StatusForbidden)

	// REALTIME_TICKET_EXPIRE=2 in this deployment.
	time.Sleep(time.Until(issued.Add(2500 * time.Millisecond)))
	c, err = query.dial(ctx, st, path, stale)
	wantRefused(t, "expired ticket", c, err, http.StatusForbidden)
}

// 500 clients race with one ticket, over all transports: exactly one gets in.
func testRace(t *testing.T, st *stack, alice *session) {
	const clients, parallel = 500, 50
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tk := alice.ticket(t)

	var accepted, refused atomic.Int32
	var mu sync.Mutex
	var unexpected []string
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		tr := transports[i%len(transports)]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := tr.dial(ctx, st, "/ws/chat/race/", tk)
			if err != nil {
				if he := (*canaltest.HandshakeError)(nil); errors.As(err, &he) && he.Status == http.StatusForbidden {
					refused.Add(1)
					return
				}
				mu.Lock()
				unexpected = append(unexpected, tr.name+": "+err.Error())
				mu.Unlock()
				return
			}
			defer c.Abort()
			m, err := receive(ctx, c)
			switch {
			case err == nil && m.Type == "greeting" && m.Text == "hello alice":
				accepted.Add(1)
			case closeCodeOf(err) == canal.CloseUnauthorized && tr.name == "first-message":
				refused.Add(1)
			default:
				mu.Lock()
				unexpected = append(unexpected, tr.name+": "+describe(m, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d clients with one ticket in %v: %d accepted, %d refused",
		clients, time.Since(start).Round(time.Millisecond), accepted.Load(), refused.Load())
	if len(unexpected) > 0 {
		t.Errorf("%d unexpected outcomes, e.g. %q", len(unexpected), unexpected[0])
	}
	if accepted.Load() != 1 || refused.Load() != clients-1 {
		t.Fatalf("accepted %d, refused %d; want exactly 1 accepted and %d refused",
			accepted.Load(), refused.Load(), clients-1)
	}
}

func describe(m serverMsg, err error) string {
	if err != nil {
		return err.Error()
	}
	return m.Type + " " + m.Text + m.Message
}

// Django's send_to_user is channels_redis' group_send to "user_<id>": it reaches every
// notification socket of that user on the Go server, and nobody else's.
func testNotify(t *testing.T, st *stack, alice, bob *session) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	n1, n2 := openNotify(ctx, t, st, alice), openNotify(ctx, t, st, alice)
	chat := joinChat(ctx, t, st, alice, "notify")
	bobs := openNotify(ctx, t, st, bob)

	// The groups are where Django looks for them: channels_redis' sorted sets
	// "asgi:group:user_<id>" of channel names, written by the Go layer. alice and bob
	// are users 1 and 2 of a fresh database; alice's group holds her two notification
	// sockets (sockets of earlier subtests may still be leaving it); chat sockets are
	// only in "canal.user.1", where logout and the admin's action close them.
	rc := st.redis.Client(t)
	members := func(group string) []string {
		m, err := rc.Do(ctx, rc.B().Zrange().Key("asgi:group:"+group).Min("0").Max("-1").Build()).AsStrSlice()
		if err != nil {
			t.Fatalf("ZRANGE asgi:group:%s: %v", group, err)
		}
		return m
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		a, b := members("user_1"), members("user_2")
		if len(a) == 2 && len(b) == 1 {
			for _, name := range append(a, b...) {
				if !strings.HasPrefix(name, "specific.") || !strings.Contains(name, "!") {
					t.Fatalf("member %q is not a process-local channel as channels_redis names them", name)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("groups in Redis: user_1 %q, user_2 %q; want 2 and 1 members", a, b)
		}
	}

	start := time.Now()
	status, body := alice.post(t, "/notify/", url.Values{"text": {"for alice, through channels_redis"}})
	if status != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("POST /notify/: HTTP %d %v", status, body)
	}
	want := serverMsg{Type: "notification", Text: "for alice, through channels_redis"}
	for i, c := range []*canaltest.Communicator{n1, n2} {
		if m, err := receive(ctx, c); err != nil || m != want {
			t.Fatalf("alice's notification socket %d: %+v, %v; want %+v", i+1, m, err, want)
		}
	}
	t.Logf("Django's group_send reached both sockets %v after the POST began", time.Since(start).Round(time.Millisecond))
	if err := chat.ExpectNothing(300 * time.Millisecond); err != nil {
		t.Errorf("alice's chat socket: %v (notifications are for /ws/notify/)", err)
	}
	if err := bobs.ExpectNothing(0); err != nil {
		t.Errorf("bob's socket got alice's notification: %v", err)
	}

	status, body = bob.post(t, "/notify/", url.Values{"text": {"for bob"}})
	if status != http.StatusOK {
		t.Fatalf("POST /notify/ as bob: HTTP %d %v", status, body)
	}
	if m, err := receive(ctx, bobs); err != nil || m != (serverMsg{Type: "notification", Text: "for bob"}) {
		t.Fatalf("bob's notification: %+v, %v", m, err)
	}
	if err := n1.ExpectNothing(300 * time.Millisecond); err != nil {
		t.Errorf("alice's socket got bob's notification: %v", err)
	}
}

// Logging out in Django closes the user's sockets on the Go server: django_canal's
// user_logged_out handler (REALTIME_USER_SIGNALS) sends {"type": "canal.disconnect",
// "code": 4403, "reason": "logged out"} to "canal.user.<id>", which both routes'
// consumers joined. Other users keep theirs.
func testLogout(t *testing.T, st *stack, alice, bob *session) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	elsewhere := login(t, st.django, "alice", alicePassword) // alice in another browser
	chat := joinChat(ctx, t, st, alice, "logout")
	notify := openNotify(ctx, t, st, elsewhere)
	bobChat := joinChat(ctx, t, st, bob, "logout")
	bobNotify := openNotify(ctx, t, st, bob)

	start := time.Now()
	elsewhere.logout(t)
	for _, c := range []struct {
		name string
		c    *canaltest.Communicator
	}{{"chat", chat}, {"notify", notify}} {
		code, reason, err := expectClose(ctx, c.c)
		if err != nil || code != closeLoggedOut || reason != "logged out" {
			t.Fatalf("alice's %s socket after logout: close %d %q, %v; want close %d \"logged out\"", c.name, code, reason, err, closeLoggedOut)
		}
	}
	t.Logf("alice's sockets closed %v after the logout began", time.Since(start).Round(time.Millisecond))

	// The logged-out session gets no more tickets.
	status, body := elsewhere.post(t, "/ticket/", nil)
	if status != http.StatusForbidden {
		t.Fatalf("POST /ticket/ after logout: HTTP %d %v, want 403", status, body)
	}
	// bob's sockets are open and in their groups.
	if err := bobChat.SendJSON(map[string]string{"message": "still here"}); err != nil {
		t.Fatal(err)
	}
	if m, err := receive(ctx, bobChat); err != nil || m != (serverMsg{Type: "chat", User: "bob", Message: "still here"}) {
		t.Fatalf("bob's chat after alice's logout: %+v, %v", m, err)
	}
	if status, body := bob.post(t, "/notify/", url.Values{"text": {"bob is still in"}}); status != http.StatusOK {
		t.Fatalf("POST /notify/ as bob: HTTP %d %v", status, body)
	}
	if m, err := receive(ctx, bobNotify); err != nil || m.Text != "bob is still in" {
		t.Fatalf("bob's notification after alice's logout: %+v, %v", m, err)
	}
	// alice's other session is still logged in: its new sockets work.
	again := joinChat(ctx, t, st, alice, "logout")
	if err := again.SendJSON(map[string]string{"message": "back"}); err != nil {
		t.Fatal(err)
	}
	if m, err := receive(ctx, again); err != nil || m.Message != "back" {
		t.Fatalf("alice's new socket: %+v, %v", m, err)
	}
}

// The demo page in Chromium: log in, get the greeting, see live messages from Django
// and from another client, send one, press "notify me".
func testBrowser(t *testing.T, st *stack, alice *session) {
	bctx := browser.New(t)
	console := browser.WatchConsole(bctx)
	step := func(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, d)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			browser.Screenshot(t, bctx, "django-e2e-failure.png")
			t.Fatalf("%s: %v\nbrowser console:\n%s", what, err, console)
		}
	}
	waitFor := func(what, predicate string) {
		t.Helper()
		step(what, 10*time.Second, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(50*time.Millisecond)))
	}

	// The chat page requires a login: Django sends the browser to its login form.
	step("log in", 15*time.Second,
		chromedp.Navigate(st.django.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("id_username")),
		chromedp.SendKeys(chromedp.ID("id_username"), "alice"),
		chromedp.SendKeys(chromedp.ID("id_password"), alicePassword),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.ID("messages")),
	)
	// The page got a ticket from Django, opened the socket on Canal with it, and
	// Canal greeted the Django user.
	waitFor("greeting in #messages", listHas("messages", "hello alice"))
	waitFor("notification socket open", textIs("notify-status", "connected"))

	// Django pushes a notification (POST /notify/ from alice's other session: a
	// group_send through channels_redis to "user_1") and the page shows it live.
	status, body := alice.post(t, "/notify/", url.Values{"text": {"pushed by Django for alice"}})
	if status != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("POST /notify/: HTTP %d %v", status, body)
	}
	waitFor("Django's notification in #notifications", listHas("notifications", "pushed by Django for alice"))

	// Another client in the room (alice on another device) talks; the page shows it.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	other := joinChat(ctx, t, st, alice, "lobby")
	if err := other.SendJSON(map[string]string{"message": "hello from a Go client"}); err != nil {
		t.Fatal(err)
	}
	waitFor("chat message in #messages", listHas("messages", "alice: hello from a Go client"))
	if m, err := receive(ctx, other); err != nil || m.Message != "hello from a Go client" {
		t.Fatalf("own message back: %+v, %v", m, err)
	}

	// The page talks: the Go client hears it.
	step("send from the page", 5*time.Second,
		chromedp.SendKeys(chromedp.ID("chat-input"), "typed in Chromium"),
		chromedp.Click(chromedp.ID("chat-send")),
	)
	if m, err := receive(ctx, other); err != nil || m != (serverMsg{Type: "chat", User: "alice", Message: "typed in Chromium"}) {
		t.Fatalf("message from the page: %+v, %v", m, err)
	}
	waitFor("own message in #messages", listHas("messages", "alice: typed in Chromium"))

	// The "notify me" button: the page asks Django, Django's group_send goes through
	// Redis to the Go layer, which hands it to the page's notification socket.
	step("press notify me", 5*time.Second, chromedp.Click(chromedp.ID("notify-button")))
	waitFor("button's notification", listHas("notifications", "this notification came from Django"))

	browser.Screenshot(t, bctx, "django-e2e.png")

	// alice logs out in another browser: Django closes all her sockets with 4403, and
	// the page, rather than reconnecting, goes to the login page. (Waiting for the
	// login form, not polling a script: the navigation destroys the page's context.)
	login(t, st.django, "alice", alicePassword).logout(t)
	step("the login page after logging out elsewhere", 10*time.Second,
		chromedp.WaitVisible(chromedp.ID("id_username")))
	lctx, lcancel := context.WithTimeout(bctx, 5*time.Second)
	defer lcancel()
	if loc, err := chromedp.Run(lctx, chromedp.Location()); err != nil || !strings.HasSuffix(loc, "/accounts/login/") {
		t.Fatalf("after logging out elsewhere the page is at %q (%v), want the login page", loc, err)
	}
}

// Redis dies: new sockets are refused with 503, Django's /ticket/ and /notify/ answer
// 503, and open sockets stay open: a chat message gets an error frame instead of the
// room, and nothing crashes. After a restart, tickets, rooms and notifications work
// again for new sockets, and the old ones are still open.
func testRedisOutage(t *testing.T, st *stack, alice *session) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	a1 := joinChat(ctx, t, st, alice, "outage")
	a2 := joinChat(ctx, t, st, alice, "outage")
	notif := openNotify(ctx, t, st, alice)
	issuedBefore := alice.ticket(t) // valid, but Redis is about to lose it

	st.redis.Kill()

	for i, tr := range transports[:2] {
		tk := issuedBefore
		if i > 0 {
			tk, _ = ticket.New()
		}
		start := time.Now()
		c, err := tr.dial(ctx, st, "/ws/chat/outage/", tk)
		wantRefused(t, "dial while Redis is down ("+tr.name+")", c, err, http.StatusServiceUnavailable)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("refusal took %v; the store must fail fast", d)
		}
	}
	tk, _ := ticket.New()
	c, err := transports[2].dial(ctx, st, "/ws/chat/outage/", tk)
	if err != nil {
		t.Fatalf("first-message dial while Redis is down: %v", err)
	}
	wantClosed(ctx, t, "first-message ticket while Redis is down", c, canal.CloseInternalError)

	start := time.Now()
	status, body := alice.post(t, "/ticket/", nil)
	if status != http.StatusServiceUnavailable || body["error"] != "ticket store unavailable" {
		t.Fatalf("POST /ticket/ while Redis is down: HTTP %d %v; want 503 ticket store unavailable", status, body)
	}
	t.Logf("Django refused a ticket in %v while Redis was down", time.Since(start).Round(time.Millisecond))

	// The rooms are in Redis: a message cannot reach them, and the sender is told so
	// on a socket that stays open.
	for range 2 {
		if err := a1.SendJSON(map[string]string{"message": "anyone?"}); err != nil {
			t.Fatal(err)
		}
		if m, err := receive(ctx, a1); err != nil || m.Type != "error" || !strings.Contains(m.Text, "unavailable") {
			t.Fatalf("chat during the outage: %+v, %v; want an error frame", m, err)
		}
	}
	// So are Django's notifications: channels_redis fails fast, Django answers 503.
	start = time.Now()
	status, body = alice.post(t, "/notify/", url.Values{"text": {"Redis is down"}})
	if status != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(body["error"]), "channel layer unavailable") {
		t.Fatalf("POST /notify/ during the outage: HTTP %d %v; want 503 channel layer unavailable", status, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Django took %v to give up on the channel layer", d)
	}
	if !st.django.alive() {
		t.Fatalf("Django died during the outage:\n%s", st.django.logTail())
	}

	st.redis.Restart()

	// A fresh ticket from Django works at once: Django and Canal both reconnect.
	tk = alice.ticket(t)
	c, err = transports[1].dial(ctx, st, "/ws/chat/outage/", tk)
	if err != nil {
		t.Fatalf("dial after Redis restarted: %v", err)
	}
	defer c.Abort()
	if m, err := receive(ctx, c); err != nil || m.Text != "hello alice" {
		t.Fatalf("greeting after Redis restarted: %+v, %v", m, err)
	}
	// The ticket issued before the crash died with Redis's memory.
	c2, err := transports[0].dial(ctx, st, "/ws/chat/outage/", issuedBefore)
	wantRefused(t, "ticket issued before the crash", c2, err, http.StatusForbidden)

	// Rooms and notifications work again for sockets opened since. (The restarted
	// Redis is empty: the group memberships of the sockets opened before are gone
	// with its memory, as with Channels; see the README.)
	if err := c.SendJSON(map[string]string{"message": "after the restart"}); err != nil {
		t.Fatal(err)
	}
	if m, err := receive(ctx, c); err != nil || m != (serverMsg{Type: "chat", User: "alice", Message: "after the restart"}) {
		t.Fatalf("chat after Redis restarted: %+v, %v", m, err)
	}
	n2 := openNotify(ctx, t, st, alice)
	// Redis came back empty: the Go layer adds the channels of the sockets that stayed
	// open back to their groups by itself, in one ZADD per group. Wait until it has, so
	// the old notification socket is in user_1 again beside n2.
	rc := st.redis.Client(t)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n, err := rc.Do(ctx, rc.B().Zcard().Key("asgi:group:user_1").Build()).AsInt64()
		if err == nil && n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the layer did not restore user_1's memberships after the restart (%d members, %v)", n, err)
		}
	}
	status, body = alice.post(t, "/notify/", url.Values{"text": {"Redis is back"}})
	if status != http.StatusOK {
		t.Fatalf("POST /notify/ after the restart: HTTP %d %v", status, body)
	}
	if m, err := receive(ctx, n2); err != nil || m != (serverMsg{Type: "notification", Text: "Redis is back"}) {
		t.Fatalf("notification after Redis restarted: %+v, %v", m, err)
	}
	// The sockets opened before the outage are still open and answering. One in the
	// room may first get "after the restart": the layer restores its membership on
	// its own, and may have done so before that message was sent.
	for i, c := range []*canaltest.Communicator{a1, a2} {
		if err := c.SendJSON(map[string]string{}); err != nil {
			t.Fatal(err)
		}
		m, err := receive(ctx, c)
		if err == nil && m == (serverMsg{Type: "chat", User: "alice", Message: "after the restart"}) {
			m, err = receive(ctx, c)
		}
		if err != nil || m.Type != "error" {
			t.Fatalf("chat socket %d opened before the outage: %+v, %v; want the reply to an empty message", i+1, m, err)
		}
	}
	// The socket opened before the outage got it too: its membership was restored.
	if m, err := receive(ctx, notif); err != nil || m != (serverMsg{Type: "notification", Text: "Redis is back"}) {
		t.Fatalf("notification socket opened before the outage: %+v, %v", m, err)
	}
}
