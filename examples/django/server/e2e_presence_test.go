package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/canal-rt/canal/canaltest/browser"
)

// presenceRoom is the room of this test, which no other subtest uses.
const presenceRoom = "online"

// page is one tab of a person in Chromium, with its console for failure messages.
type page struct {
	t       *testing.T
	name    string
	tab     context.Context
	console *browser.ConsoleLog
}

// newPerson opens a tab in a browser context of its own (its own cookie jar), so that
// several users are logged in at once in one Chromium, as in separate browsers.
func newPerson(t *testing.T, b context.Context, name string) *page {
	t.Helper()
	tab, cancel := chromedp.NewContext(b, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel) // disposes of the browser context
	return &page{t: t, name: name, tab: tab, console: browser.WatchConsole(tab)}
}

// newTab opens another tab in p's browser context: the same person, the same cookies.
func (p *page) newTab(name string) *page {
	p.t.Helper()
	tab, cancel := chromedp.NewContext(p.tab)
	p.t.Cleanup(cancel)
	return &page{t: p.t, name: name, tab: tab, console: browser.WatchConsole(tab)}
}

// do runs actions in the tab within d, and fails the test with a screenshot and the
// console if they do not complete.
func (p *page) do(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.tab, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		browser.Screenshot(p.t, p.tab, "django-presence-failure-"+p.name+".png")
		p.t.Fatalf("%s, %s: %v\n%s's console:\n%s", p.name, what, err, p.name, p.console)
	}
}

// waitFor polls a JavaScript predicate in the tab for up to 10 s.
func (p *page) waitFor(what, predicate string) {
	p.t.Helper()
	p.do(what, 10*time.Second, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(50*time.Millisecond)))
}

// login opens path, is sent to Django's login form, and signs in.
func (p *page) login(site *djangoSite, path, username, password string) {
	p.t.Helper()
	p.do("log in", 15*time.Second,
		chromedp.Navigate(site.URL+path),
		chromedp.WaitVisible(chromedp.ID("id_username")),
		chromedp.SendKeys(chromedp.ID("id_username"), username),
		chromedp.SendKeys(chromedp.ID("id_password"), password),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.ID("messages")),
	)
}

// onlineIs is a JavaScript predicate: the page's list of who is online reads names,
// e.g. "alice, bob", and is the live one.
func onlineIs(names string) string {
	namesJS, _ := json.Marshal(names)
	return fmt.Sprintf(`[...document.querySelectorAll("#online li")].map(li => li.textContent).join(", ") === %s && %s`,
		namesJS, textIs("online-status", "live"))
}

// Who is online in a room, live, and an admin's "disconnect" action in Django's
// admin: alice and bob each log in in their own browser context and open the same
// room; each sees the other. Django's page renders who is online from the presence the
// Go server keeps in Redis. The admin selects bob in /admin/auth/user/ and runs
// "Disconnect from the realtime server": bob's sockets close with 4403 and alice sees
// him leave. bob reloads, comes back, and logs out in another tab: his first tab's
// socket closes with 4403 "logged out" (REALTIME_USER_SIGNALS), and alice sees him
// leave again.
func testOnlineAndKick(t *testing.T, st *stack, bobHTTP *session) {
	start := time.Now()
	b := browser.New(t)
	alice := newPerson(t, b, "alice")
	bob := newPerson(t, b, "bob")
	admin := newPerson(t, b, "admin")
	room := "/room/" + presenceRoom + "/"
	lap := func(what string) { t.Logf("%-40s %v", what, time.Since(start).Round(time.Millisecond)) }

	alice.login(st.django, room, "alice", alicePassword)
	alice.waitFor("alice online", onlineIs("alice"))
	lap("alice online")

	// Django renders who is online from Redis (django_canal.realtime.presence reads
	// what presence.NewRedis wrote), before any socket of the page opens.
	resp, err := bobHTTP.client.Get(st.django.URL + room)
	if err != nil {
		t.Fatalf("GET %s: %v", room, err)
	}
	html := string(drain(resp))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", room, resp.StatusCode)
	}
	list := regexp.MustCompile(`<ul class="online" id="online">(.*?)</ul>`).FindStringSubmatch(html)
	if list == nil || list[1] != `<li data-id="1">alice</li>` {
		t.Fatalf("Django's list of who is online: %q, want alice's entry", list)
	}

	bob.login(st.django, room, "bob", bobPassword)
	bob.waitFor("bob sees alice and himself", onlineIs("alice, bob"))
	alice.waitFor("alice sees bob arrive", onlineIs("alice, bob"))
	alice.waitFor("alice's log says bob joined", listHas("messages", "bob joined"))
	lap("each sees the other")

	// The admin, in the real Django admin: tick bob, choose the action, press Go.
	admin.do("log in to the admin", 15*time.Second,
		chromedp.Navigate(st.django.URL+"/admin/auth/user/"),
		chromedp.WaitVisible(chromedp.ID("id_username")), // the admin's login form
		chromedp.SendKeys(chromedp.ID("id_username"), "admin"),
		chromedp.SendKeys(chromedp.ID("id_password"), adminPassword),
		chromedp.Submit(chromedp.ID("id_password")),
	)
	admin.do("the list of users", 10*time.Second, chromedp.WaitVisible(chromedp.ID("result_list")))
	// Done in the page's own JavaScript, polled until it takes: the admin's page can
	// still be settling, and a node id chromedp looked up goes stale with it ("No node
	// with given id found").
	admin.do("tick bob", 5*time.Second, chromedp.Poll[chromedp.Void](`(() => {
		const box = document.evaluate('//table[@id="result_list"]//tr[.//a[text()="bob"]]//input[@name="_selected_action"]',
			document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
		if (!box) return false;
		box.checked = true;
		return box.checked;
	})()`, chromedp.WithPollingInterval(50*time.Millisecond)))
	admin.do("choose the action", 5*time.Second, chromedp.Poll[chromedp.Void](`(() => {
		const sel = document.querySelector('select[name="action"]');
		if (!sel) return false;
		sel.value = "disconnect_selected";
		return sel.value === "disconnect_selected";
	})()`, chromedp.WithPollingInterval(50*time.Millisecond)))
	admin.do("press Go", 5*time.Second, chromedp.Poll[chromedp.Void](`(() => {
		const go = document.querySelector('button[name="index"]');
		if (!go) return false;
		go.click();
		return true;
	})()`, chromedp.WithPollingInterval(50*time.Millisecond)))
	admin.do("the admin's message", 10*time.Second,
		chromedp.WaitVisible(chromedp.Search(`//ul[contains(@class, "messagelist")]/li[contains(., "Disconnected 1 user(s) from the realtime server.")]`)))
	lap("admin ran the action")
	bob.waitFor("bob's chat socket closed by the admin", textIs("chat-status", "disconnected (4403: disconnected by an admin)"))
	bob.waitFor("bob's notification socket closed by the admin", textIs("notify-status", "disconnected (4403: disconnected by an admin)"))
	alice.waitFor("alice sees bob leave", onlineIs("alice"))
	alice.waitFor("alice's log says bob left", listHas("messages", "bob left"))
	lap("bob closed with 4403, alice saw him go")
	if c := bob.console.String(); !strings.Contains(c, "/ws/chat/"+presenceRoom+"/ closed: 4403 disconnected by an admin") {
		t.Errorf("bob's console does not show the close:\n%s", c)
	}
	browser.Screenshot(t, alice.tab, "django-online-after-kick.png")

	// The action closed bob's sockets, not his session: a reload brings him back.
	bob.do("bob reloads", 15*time.Second, chromedp.Navigate(st.django.URL+room), chromedp.WaitVisible(chromedp.ID("messages")))
	bob.waitFor("bob back", onlineIs("alice, bob"))
	alice.waitFor("alice sees bob come back", onlineIs("alice, bob"))
	lap("bob back")

	// bob logs out in another tab: django_canal's user_logged_out handler closes his
	// first tab's sockets with 4403 "logged out", and that page goes to the login form.
	other := bob.newTab("bob-2")
	other.do("bob logs out in another tab", 15*time.Second,
		chromedp.Navigate(st.django.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("messages")),
		chromedp.Click(chromedp.CSS(`header form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("id_username")),
	)
	bob.do("bob's first tab goes to the login page", 10*time.Second, chromedp.WaitVisible(chromedp.ID("id_username")))
	if c := bob.console.String(); !strings.Contains(c, "/ws/chat/"+presenceRoom+"/ closed: 4403 logged out") {
		t.Errorf("bob's console does not show the logout's close:\n%s", c)
	}
	alice.waitFor("alice sees bob leave after his logout", onlineIs("alice"))
	lap("bob logged out, alice saw him go")
}
