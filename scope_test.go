package canal_test

import (
	"net/http"
	"testing"

	"github.com/canal-rt/canal"
)

func TestScopeAccessors(t *testing.T) {
	t.Parallel()
	s := &canal.Scope{
		RawQuery: "room=a%20b&x=1",
		Headers: http.Header{
			"Origin": {"http://first", "http://last"},
			"Cookie": {"sessionid=abc; csrftoken=def"},
		},
		Route: canal.Args{"room": "lobby", "id": 42},
	}
	tests := []struct {
		name, got, want string
	}{
		{"query", s.Query().Get("room"), "a b"},
		{"last header counts", s.Header("Origin"), "http://last"},
		{"missing header", s.Header("X-None"), ""},
		{"cookie", s.Cookie("csrftoken"), "def"},
		{"missing cookie", s.Cookie("nope"), ""},
		{"route string", s.Route.String("room"), "lobby"},
		{"route int as string", s.Route.String("id"), "42"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	if n, ok := s.Route.Int("id"); !ok || n != 42 {
		t.Errorf("Route.Int = %d, %v", n, ok)
	}
	if (canal.User{}).Authenticated() || !(canal.User{ID: "1"}).Authenticated() {
		t.Error("User.Authenticated wrong")
	}
}

func TestRejectAndCloseErrors(t *testing.T) {
	t.Parallel()
	if e := canal.Reject(0, "").(*canal.RejectError); e.Status != 403 {
		t.Errorf("Reject(0) status %d, want 403", e.Status)
	}
	ce := &canal.CloseError{Code: 4001, Reason: "x", Err: canal.ErrClosed}
	if ce.Error() != "canal: close 4001 (x): canal: connection closed" {
		t.Errorf("CloseError text %q", ce.Error())
	}
}
