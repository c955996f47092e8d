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
