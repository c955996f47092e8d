package main

// End-to-end: a real redis-server, the real Django demo site under runserver (Debian's
// Django), this package's Canal server, and headless Chromium, all on 127.0.0.1. Django
// issues the tickets exactly as in production (POST /ticket/ behind its login and
// CSRF protection); Canal consumes them from the same Redis.
//
// The subtests share one deployment, so they run in order, not in parallel; the Redis
// outage comes last.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
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

const alicePassword = "correct-horse-battery-staple"

func TestDjangoEndToEnd(t *testing.T) {
	start := time.Now()
	st := startStack(t)
	t.Logf("redis, Django (%s) and Canal (%s) up in %v", st.django.URL, st.goAddr, time.Since(start).Round(time.Millisecond))
	alice := login(t, st.django, "alice", alicePassword)

	t.Run("transports", func(t *testing.T) { testTransports(t, st, alice) })
	t.Run("refusals", func(t *testing.T) { testRefusals(t, st, alice) })
	t.Run("race", func(t *testing.T) { testRace(t, st, alice) })
	t.Run("browser", func(t *testing.T) { testBrowser(t, st, alice) })
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

	// Django pushes a notification (POST /notify/ from alice's other session) and the
	// page shows it live.
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

	// The "notify me" button: the page asks Django, Django asks Canal, Canal pushes.
	step("press notify me", 5*time.Second, chromedp.Click(chromedp.ID("notify-button")))
	waitFor("button's notification", listHas("notifications", "this notification came from Django"))

	browser.Screenshot(t, bctx, "django-e2e.png")
}

// Redis dies: new sockets are refused with 503 and Django's /ticket/ answers 503, but
// open sockets keep working and nothing crashes. After a restart, tickets work again.
func testRedisOutage(t *testing.T, st *stack, alice *session) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	a1 := joinChat(ctx, t, st, alice, "outage")
	a2 := joinChat(ctx, t, st, alice, "outage")
	notif, err := transports[0].dial(ctx, st, "/ws/notify/", alice.ticket(t))
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	defer notif.Abort()
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

	// Open sockets do not need Redis.
	if err := a1.SendJSON(map[string]string{"message": "still here"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*canaltest.Communicator{a1, a2} {
		if m, err := receive(ctx, c); err != nil || m != (serverMsg{Type: "chat", User: "alice", Message: "still here"}) {
			t.Fatalf("chat during the outage: %+v, %v", m, err)
		}
	}
	status, body = alice.post(t, "/notify/", url.Values{"text": {"Redis is down, Django still talks"}})
	if status != http.StatusOK {
		t.Fatalf("POST /notify/ during the outage: HTTP %d %v", status, body)
	}
	if m, err := receive(ctx, notif); err != nil || m != (serverMsg{Type: "notification", Text: "Redis is down, Django still talks"}) {
		t.Fatalf("notification during the outage: %+v, %v", m, err)
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
}
