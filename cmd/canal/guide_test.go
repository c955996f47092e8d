package main

// The websockets guide's Django integration ("Integrate with Django"), reproduced
// with zero Go: examples/notifications is a Django site (the guide's signal handler
// publishing admin events to the Redis channel "events", the guide's
// get_content_types as ticket claims) and a canal.toml. This test runs it as a user
// would: real redis-server, real Django under runserver, the built canal binary on
// the example's own canal.toml (addresses from the environment), and Chromium.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/canaltest/browser"
)

const (
	guidePassword = "guide-password-for-tests"
	sessionToken  = "guide-session-token-guide-session-token"
)

func TestGuideNotifications(t *testing.T) {
	r := canaltest.StartRedis(t)
	example, err := filepath.Abs("../../examples/notifications")
	if err != nil {
		t.Fatal(err)
	}
	p := startCanalFile(t, filepath.Join(example, "canal.toml"), "", "CANAL_REDIS_URL="+r.URL(), "CANAL_ORIGINS=127.0.0.1")
	opts := canaltest.DjangoOptions{
		Dir:      filepath.Join(example, "site"),
		Settings: "guide.settings",
		Env: map[string]string{
			"REDIS_URL":           r.URL(),
			"CANAL_WS_URL":        "ws://" + p.addr,
			"GUIDE_DB":            filepath.Join(t.TempDir(), "db.sqlite3"),
			"DJANGO_SECRET_KEY":   "guide-test-secret-key-guide-test-secret-key",
			"CANAL_SESSION_TOKEN": sessionToken,
		},
	}
	canaltest.DjangoCommand(t, opts, "django", "migrate", "--noinput")
	canaltest.DjangoCommand(t, opts, "django", "guide_users", guidePassword)
	dj := canaltest.StartDjango(t, opts)

	editor := adminLogin(t, dj.URL, "editor")
	articles := adminLogin(t, dj.URL, "articles")
	invoices := adminLogin(t, dj.URL, "invoices")
	ca := dialTicket(t, p.url("/ws/events/"), articles.ticket(t))
	ci := dialTicket(t, p.url("/ws/events/"), invoices.ticket(t))
	waitReady(t, r)
	ctx := context.Background()

	// An article saved in the admin reaches the article reader, as Django published it.
	editor.adminAdd(t, "article", url.Values{"title": {"Über news"}})
	var ev struct {
		Model, Object, User, Timestamp string
		ContentTypeID                  int `json:"content_type_id"`
	}
	if err := ca.ReceiveJSON(ctx, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Model != "article" || ev.Object != "Über news" || ev.User != "editor" || ev.ContentTypeID == 0 || ev.Timestamp == "" {
		t.Fatalf("article event: %+v", ev)
	}
	if err := ci.ExpectNothing(500 * time.Millisecond); err != nil {
		t.Fatalf("the invoice reader got an article event: %v", err)
	}
	// And an invoice the invoice reader only.
	editor.adminAdd(t, "invoice", url.Values{"number": {"F-2026-1"}})
	if err := ci.ReceiveJSON(ctx, &ev); err != nil || ev.Model != "invoice" || ev.Object != "F-2026-1" {
		t.Fatalf("invoice event: %+v, %v", ev, err)
	}
	invoiceCT := ev.ContentTypeID
	if err := ca.ExpectNothing(500 * time.Millisecond); err != nil {
		t.Fatalf("the article reader got an invoice event: %v", err)
	}

	// The same with Django's session cookie instead of a ticket: a second canal on the
	// example's canal.toml plus [auth.session], the socket carrying the admin session's
	// cookie as a browser on the site's host would.
	p2 := startCanalFile(t, filepath.Join(example, "canal.toml"),
		fmt.Sprintf("\n[auth.session]\nurl = %q\n", dj.URL+"/session/"),
		"CANAL_REDIS_URL="+r.URL(), "CANAL_SESSION_TOKEN="+sessionToken)
	cookie := http.Header{"Cookie": {"sessionid=" + articles.cookie("sessionid")}}
	cs, err := canaltest.Dial(ctx, p2.url("/ws/events/"), canaltest.DialOptions{Header: cookie})
	if err != nil {
		t.Fatalf("session cookie: %v\n%s", err, p2.logs)
	}
	defer cs.Abort()
	waitSubscribers(t, r, 2)
	editor.adminAdd(t, "article", url.Values{"title": {"By cookie"}})
	for _, c := range []*canaltest.Communicator{ca, cs} {
		if err := c.ReceiveJSON(ctx, &ev); err != nil || ev.Object != "By cookie" {
			t.Fatalf("article event by cookie: %+v, %v", ev, err)
		}
	}
	if strings.Contains(p2.logs.String(), articles.cookie("sessionid")) {
		t.Error("the session key reached the log")
	}

	// The page: the article reader signs in to the admin in Chromium, opens the events
	// page (its socket gets a ticket from Django and connects to canal), and sees the
	// editor's next change appear.
	bctx := browser.New(t)
	console := browser.WatchConsole(bctx)
	step := func(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, d)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			browser.Screenshot(t, bctx, "guide-failure.png")
			t.Fatalf("%s: %v\nbrowser console:\n%s\ncanal log:\n%s", what, err, console, p.logs)
		}
	}
	poll := func(what, js string) {
		t.Helper()
		step(what, 15*time.Second, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(50*time.Millisecond)))
	}
	step("sign in", 20*time.Second,
		chromedp.Navigate(dj.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("id_username")),
		chromedp.SendKeys(chromedp.ID("id_username"), "articles"),
		chromedp.SendKeys(chromedp.ID("id_password"), guidePassword),
		chromedp.Submit(chromedp.ID("id_password")),
		chromedp.WaitVisible(chromedp.ID("events")),
	)
	poll("socket connected", `document.getElementById("status").textContent === "connected"`)
	editor.adminAdd(t, "invoice", url.Values{"number": {"F-2026-2"}}) // not for this page
	editor.adminAdd(t, "article", url.Values{"title": {"Seen in Chromium"}})
	poll("the article event on the page", `[...document.querySelectorAll("#events li")].some(li => li.textContent.includes("article “Seen in Chromium”"))`)
	cctx, cancel := context.WithTimeout(bctx, 5*time.Second)
	defer cancel()
	items, err := chromedp.Run(cctx, chromedp.Evaluate[int](`document.querySelectorAll("#events li").length`))
	if err != nil {
		t.Fatal(err)
	}
	if items != 1 {
		t.Errorf("%d events on the page, want 1 (the invoice is not for this user)", items)
	}
	browser.Screenshot(t, bctx, "guide-notifications.png")

	// The Go clients got the browser part's events too, each its own.
	for c, want := range map[*canaltest.Communicator]string{ca: "Seen in Chromium", ci: "F-2026-2"} {
		if err := c.ReceiveJSON(ctx, &ev); err != nil || ev.Object != want {
			t.Fatalf("%s: %+v, %v", want, ev, err)
		}
	}

	// Better than the guide: the article reader is granted the right to view
	// invoices (in Django: user_permissions.add); django_canal's signal pushes the new
	// claims through the channel layer, and the open socket gets invoice events from
	// then on, without a reconnect.
	canaltest.DjangoCommand(t, opts, "django", "shell", "-c",
		`from django.contrib.auth.models import Permission, User; `+
			`User.objects.get(username="articles").user_permissions.add(Permission.objects.get(codename="view_invoice"))`)
	// The invoice reader, and the article reader's three sockets (ticket, page, cookie).
	waitMembers(t, r, fmt.Sprintf("ct_%d", invoiceCT), 4)
	editor.adminAdd(t, "invoice", url.Values{"number": {"F-2026-granted"}})
	for _, c := range []*canaltest.Communicator{ca, ci} {
		if err := c.ReceiveJSON(ctx, &ev); err != nil || ev.Object != "F-2026-granted" {
			t.Fatalf("invoice event after the grant: %+v, %v", ev, err)
		}
	}
}

// startCanalFile runs canal serve on an existing configuration file, with more
// appended.
func startCanalFile(t *testing.T, path, more string, env ...string) *proc {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return startCanal(t, string(doc)+more, env...)
}

// admin is a Django admin session of one user.
type admin struct {
	base   string
	client *http.Client
}

func adminLogin(t *testing.T, base, user string) *admin {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	a := &admin{base: base, client: &http.Client{Jar: jar, Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	t.Cleanup(a.client.CloseIdleConnections)
	a.get(t, "/admin/login/")
	resp := a.postForm(t, "/admin/login/", url.Values{"username": {user}, "password": {guidePassword}, "next": {"/admin/"}})
	if resp.Request.URL.Path != "/admin/" {
		t.Fatalf("login as %s ended at %s", user, resp.Request.URL)
	}
	return a
}

func (a *admin) csrf() string { return a.cookie("csrftoken") }

func (a *admin) cookie(name string) string {
	u, _ := url.Parse(a.base)
	for _, c := range a.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (a *admin) get(t *testing.T, path string) {
	t.Helper()
	resp, err := a.client.Get(a.base + path)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
}

func (a *admin) postForm(t *testing.T, path string, form url.Values) *http.Response {
	t.Helper()
	form.Set("csrfmiddlewaretoken", a.csrf())
	resp, err := a.client.PostForm(a.base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d\n%.500s", path, resp.StatusCode, body)
	}
	return resp
}

// adminAdd saves a new object through the admin's add form, which writes the
// LogEntry the guide's signal publishes.
func (a *admin) adminAdd(t *testing.T, model string, fields url.Values) {
	t.Helper()
	path := fmt.Sprintf("/admin/news/%s/add/", model)
	a.get(t, path)
	fields.Set("_save", "Save")
	resp := a.postForm(t, path, fields)
	if want := fmt.Sprintf("/admin/news/%s/", model); resp.Request.URL.Path != want {
		t.Fatalf("add %s ended at %s, want the change list", model, resp.Request.URL)
	}
}

// ticket asks Django for a ticket, as the page does.
func (a *admin) ticket(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.base+"/ticket/", nil)
	req.Header.Set("X-CSRFToken", a.csrf())
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Ticket string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Ticket == "" {
		t.Fatalf("POST /ticket/: %d %v", resp.StatusCode, err)
	}
	return out.Ticket
}
