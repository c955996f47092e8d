package config_test

import (
	"fmt"
	"os"

	"github.com/canal-rt/canal/cmd/canal/internal/config"
)

// The README's minimal canal.toml: Django's tickets, and group_send reaching the
// sockets of a chat room and of a user.
func ExampleParse() {
	doc := `
[redis]
url = "redis://127.0.0.1:6379/0"   # or CANAL_REDIS_URL

[auth.ticket]                      # django_canal's POST /ticket/

[[route]]
path = "ws/chat/<slug:room>/"
groups = ["chat_{room}", "user_{user.id}"]
events = ["chat.message"]
`
	c, err := config.Parse("canal.toml", []byte(doc), os.Getenv)
	if err != nil {
		fmt.Println(err)
		return
	}
	r := c.Routes[0]
	fmt.Println(c.Layer.Backend, r.Auth, r.Groups, r.Events, r.Receive.Mode)
	// Output: redis [ticket] [chat_{room} user_{user.id}] [chat.message] refuse
}

// What canal check prints for a mistake.
func ExampleParse_error() {
	doc := `
[[route]]
path = "ws/chat/<slug:room>/"
anonymous = true
groups = ["chat_{rom}"]
`
	_, err := config.Parse("canal.toml", []byte(doc), nil)
	fmt.Println(err)
	// Output: canal.toml:5: route[0].groups[0]: {rom}: the route pattern captures only room
}

// doc.go's recovery configuration: a feed's history, recovered for clients that
// come back with their positions.
func ExampleParse_history() {
	doc := `
[redis]
url = "redis://127.0.0.1:6379/0"

[[layer.history]]
group = "feed_*"
size = 1000
ttl = "10m"

[[route]]
path = "ws/feed/<slug:feed>/"
anonymous = true
groups = ["feed_{feed}"]
events = ["feed.item"]
recover = ["feed_*"]
`
	c, err := config.Parse("canal.toml", []byte(doc), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	h := c.Layer.History[0]
	fmt.Println(h.Group, h.Size, h.TTL, c.Routes[0].Recover, c.Server.ServeClientJS())
	// Output: feed_* 1000 10m0s [feed_*] true
}
