package client_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/canal-rt/canal/client"
)

func TestHandler(t *testing.T) {
	h := client.Handler()
	for _, tc := range []struct {
		name, method, match string
		status              int
		body                bool
	}{
		{"get", http.MethodGet, "", 200, true},
		{"head", http.MethodHead, "", 200, false},
		{"revalidated", http.MethodGet, client.ETag(), 304, false},
		{"stale etag", http.MethodGet, `"old"`, 200, true},
		{"post", http.MethodPost, "", 405, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/canal.js", nil)
			if tc.match != "" {
				r.Header.Set("If-None-Match", tc.match)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			got := w.Body.String()
			if tc.body != (got == client.Source()) {
				t.Fatalf("body of %d bytes; want the source: %v", len(got), tc.body)
			}
			if tc.status < 300 && w.Header().Get("Content-Type") != client.ContentType {
				t.Fatalf("Content-Type %q", w.Header().Get("Content-Type"))
			}
		})
	}
}

// TestSource: the module exports connect and Canal, and is the file on disk.
func TestSource(t *testing.T) {
	s := client.Source()
	for _, want := range []string{"export function connect(", "export class Canal ", `"canal.recover"`, "@typedef {object} Options"} {
		if !strings.Contains(s, want) {
			t.Errorf("canal.js lacks %q", want)
		}
	}
}
