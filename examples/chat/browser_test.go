package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/canal-rt/canal/canaltest/browser"
)

// TestTwoTabsChat is the demo as a person uses it: two tabs of a real browser sign in,
// join the same room, and see each other's messages.
func TestTwoTabsChat(t *testing.T) {
	addr := startChat(t, config{})
	page := "http://" + addr + "/"
	b := browser.New(t)
	alice, bob := b, browser.NewTab(t, b)

	join := func(name string) []chromedp.Action[chromedp.Void] {
		return []chromedp.Action[chromedp.Void]{
			chromedp.Navigate(page),
			chromedp.SendKeys(chromedp.ID("name"), name),
			chromedp.Click(chromedp.CSS("#signin button")),
			chromedp.WaitEnabled(chromedp.ID("joinbtn")),
			chromedp.Click(chromedp.ID("joinbtn")),
			chromedp.WaitEnabled(chromedp.ID("message")),
		}
	}
	if err := chromedp.Do(alice, join("alice")...); err != nil {
		t.Fatalf("alice joins: %v", err)
	}
	if err := chromedp.Do(bob, join("bob")...); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	if err := chromedp.Do(alice,
		chromedp.SendKeys(chromedp.ID("message"), "hello from alice"),
		chromedp.Click(chromedp.ID("send")),
	); err != nil {
		t.Fatalf("alice sends: %v", err)
	}
	if err := chromedp.Do(bob,
		chromedp.WaitVisible(chromedp.Search(`//div[@id="log"]/div[contains(., "alice: hello from alice")]`)),
	); err != nil {
		t.Fatalf("bob never saw alice's message: %v", err)
	}
	log, err := chromedp.Run(bob, chromedp.Text(chromedp.ID("log")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, "joined lobby as bob") {
		t.Errorf("bob's log: %q", log)
	}
	browser.Screenshot(t, bob, "chat-two-tabs.png")
}

// TestOnlineListAndKick: each tab shows who is online in the room, live; an admin's
// kick closes bob's page with the reason, and alice's list loses him.
func TestOnlineListAndKick(t *testing.T) {
	const token = "browser-admin-token-0123456789"
	addr := startChat(t, config{AdminToken: token})
	page := "http://" + addr + "/"
	b := browser.New(t)
	alice, bob := b, browser.NewTab(t, b)
	join := func(name string) []chromedp.Action[chromedp.Void] {
		return []chromedp.Action[chromedp.Void]{
			chromedp.Navigate(page),
			chromedp.SendKeys(chromedp.ID("name"), name),
			chromedp.Click(chromedp.CSS("#signin button")),
			chromedp.WaitEnabled(chromedp.ID("joinbtn")),
			chromedp.Click(chromedp.ID("joinbtn")),
			chromedp.WaitEnabled(chromedp.ID("message")),
		}
	}
	online := func(text string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(chromedp.Search(`//div[@id="online" and .="` + text + `"]`))
	}
	if err := chromedp.Do(alice, append(join("alice"), online("Online: alice"))...); err != nil {
		t.Fatalf("alice joins: %v", err)
	}
	if err := chromedp.Do(bob, append(join("bob"), online("Online: alice, bob"))...); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	if err := chromedp.Do(alice, online("Online: alice, bob")); err != nil {
		t.Fatalf("alice never saw bob arrive: %v", err)
	}
	if got := postKick(t, addr, token, "bob"); got != 200 {
		t.Fatalf("kick: HTTP %d", got)
	}
	if err := chromedp.Do(bob,
		chromedp.WaitVisible(chromedp.Search(`//div[@id="log"]/div[contains(., "disconnected (4403: kicked by an admin)")]`)),
	); err != nil {
		t.Fatalf("bob's page never showed the kick: %v", err)
	}
	if err := chromedp.Do(alice, online("Online: alice")); err != nil {
		t.Fatalf("alice's list kept bob: %v", err)
	}
	browser.Screenshot(t, alice, "chat-online-after-kick.png")
}
