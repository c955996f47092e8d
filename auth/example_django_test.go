package auth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/canal-rt/canal/auth"
)

// A Django REST framework token, checked by the site itself through django_canal's
// POST /auth/ endpoint (here a stand-in that knows one token), with answers reused for
// 30 seconds: a revoked token is still accepted for up to 30 s.
func ExampleDjango() {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"credential":"9944b09199c62bcf"`) {
			_, _ = io.WriteString(w, `{"user": {"id": 42, "username": "ada", "email": "ada@example.com"}}`)
			return
		}
		_, _ = io.WriteString(w, `{"user": null}`)
	}))
	defer site.Close()

	django, err := auth.Django(auth.DjangoOptions{
		URL:   site.URL + "/auth/",      // django_canal's credential endpoint
		Token: "REALTIME_SESSION_TOKEN", // the secret Django has in that setting
		Kind:  "drf",                    // or "session", "simplejwt", "sesame", ...
	})
	if err != nil {
		panic(err)
	}
	verify, err := auth.Cache(django, auth.CacheOptions{TTL: 30 * time.Second})
	if err != nil {
		panic(err)
	}

	u, err := verify(context.Background(), "9944b09199c62bcf")
	fmt.Println(u.ID, u.Username, u.Attrs["email"], err)
	_, err = verify(context.Background(), "revoked")
	fmt.Println(errors.Is(err, auth.ErrInvalid))
	// Output:
	// 42 ada ada@example.com <nil>
	// true
}
