package canal_test

import (
	"sync"
	"testing"

	"github.com/canal-rt/canal"
)

// SetUser from the session's goroutine and CurrentUser from others never race, and
// readers see one user whole: never the ID of one with the name of the other.
func TestSetUserIsAtomic(t *testing.T) {
	a := canal.User{ID: "1", Username: "a", Attrs: map[string]any{"v": "a"}}
	b := canal.User{ID: "1", Username: "b", Attrs: map[string]any{"v": "b"}}
	s := &canal.Scope{User: a}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				u := s.CurrentUser()
				if u.Username != u.String("v") {
					t.Errorf("mixed user: %q with claims of %q", u.Username, u.String("v"))
					return
				}
			}
		}()
	}
	for i := range 2000 {
		if i%2 == 0 {
			s.SetUser(b)
		} else {
			s.SetUser(a)
		}
		if got := s.User.Username; got != s.CurrentUser().Username {
			t.Fatalf("field %q and CurrentUser disagree", got)
		}
	}
	close(stop)
	wg.Wait()
}
