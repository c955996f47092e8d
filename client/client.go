package client

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"
)

//go:embed canal.js
var source string

// etag is the strong validator of the embedded file.
var etag = func() string {
	sum := sha256.Sum256([]byte(source))
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}()

// ContentType is canal.js's media type.
const ContentType = "text/javascript; charset=utf-8"

// Source returns canal.js.
func Source() string { return source }

// ETag returns the entity tag Handler serves canal.js with.
func ETag() string { return etag }

// Handler serves canal.js at whatever path it is mounted on (GET and HEAD; 405
// otherwise). Browsers revalidate it on each load (no-cache, with an ETag), so a new
// deploy reaches them at once and an unchanged file costs a 304.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", ContentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("Access-Control-Allow-Origin", "*") // a module imported by another origin's page
		h.Set("X-Content-Type-Options", "nosniff")
		if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write([]byte(source))
	})
}
