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
