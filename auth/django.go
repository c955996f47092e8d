package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/userjson"
)

// DjangoOptions configure [Django]. URL, Token and Kind are required.
type DjangoOptions struct {
	// URL is django_canal's credential endpoint, e.g. "http://127.0.0.1:8000/auth/";
	// http or https. (Its "/session/" endpoint answers the "session" kind too.)
	URL string
	// Token is the shared secret Django knows as REALTIME_SESSION_TOKEN. The endpoint
	// turns credentials into users, so only the Go server may call it.
	Token string
	// Kind names how Django checks the credential, one of the site's
	// REALTIME_AUTH_KINDS: "session" (a session key), "drf" (a REST framework token),
	// "simplejwt" (an access token), "sesame" (a django-sesame token), or a kind of
	// the site's own. Letters, digits, '_', '-' and '.', at most 64.
	Kind string
	// Client makes the requests; nil means a client of its own that follows no
	// redirect (one would be a misconfigured URL, and must not carry the secret or
	// the credential elsewhere).
	Client *http.Client
	// Timeout bounds each request, including reading the answer; zero means 5 s.
	Timeout time.Duration
}

const (
	defaultDjangoTimeout = 5 * time.Second
	// maxDjangoAnswer bounds the answer read: a user's claims are a few hundred bytes.
	maxDjangoAnswer = 64 << 10
	// maxCredential is the longest credential sent to Django, which refuses longer
	// ones as a bad request; here they identify nobody without a request.
	maxCredential = 8192
	maxKind       = 64
)

// Django returns a [Verifier] that asks the Django site itself, through
// django_canal's credential endpoint, who a credential belongs to. Django checks it
// with its own machinery (its session engine, DRF's TokenAuthentication, simplejwt's
// JWTAuthentication, its AUTHENTICATION_BACKENDS) and answers with the user's id,
// username and REALTIME_TICKET_CLAIMS: the object a ticket holds.
//
// Nothing is cached: a logout, a deleted token or a deactivated user takes effect on
// the next call. Wrap the verifier in [Cache] to trade that for fewer requests.
//
// Outcomes: the user; an error wrapping [ErrInvalid] when Django answers that the
// credential identifies nobody (unknown, expired, revoked, tampered, an inactive
// user); an error wrapping [canal.ErrUnavailable] for anything else: a refused
// secret (401), a disabled endpoint (404), a kind the site does not enable (400), a
// redirect, a server error, an unreadable or oversized answer, a timeout. The
// credential travels in the POST body, never in the URL, and appears in no error.
func Django(opts DjangoOptions) (Verifier, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("auth: Django: URL %q is not an http(s) URL", opts.URL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("auth: Django: URL must not carry user info, a query or a fragment")
	}
	if opts.Token == "" {
		return nil, errors.New("auth: Django: empty Token (Django's REALTIME_SESSION_TOKEN)")
	}
	if !validKind(opts.Kind) {
		return nil, fmt.Errorf("auth: Django: Kind %q: want 1 to %d letters, digits, '_', '-' or '.'", opts.Kind, maxKind)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("auth: Django: negative Timeout %v", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = defaultDjangoTimeout
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	d := &django{endpoint: u.String(), auth: "Bearer " + opts.Token, kind: opts.Kind, client: client, timeout: opts.Timeout}
	return d.verify, nil
}

func validKind(k string) bool {
	if k == "" || len(k) > maxKind {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

type django struct {
	endpoint, auth, kind string
	client               *http.Client
	timeout              time.Duration
}

func (d *django) verify(ctx context.Context, credential string) (canal.User, error) {
	if credential == "" || len(credential) > maxCredential {
		return canal.User{}, fmt.Errorf("%w: %s credential empty or longer than %d bytes", ErrInvalid, d.kind, maxCredential)
	}
	body, err := json.Marshal(struct {
		Kind       string `json:"kind"`
		Credential string `json:"credential"`
	}{d.kind, credential})
	if err != nil {
		return canal.User{}, err // unreachable: two strings always marshal
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.endpoint, bytes.NewReader(body))
	if err != nil {
		return canal.User{}, d.unavailable("%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", d.auth)
	resp, err := d.client.Do(req)
	if err != nil {
		// A *url.Error quotes the URL only; the credential is in the body.
		return canal.User{}, d.unavailable("%w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDjangoAnswer+1))
	if err != nil {
		return canal.User{}, d.unavailable("reading the answer: %w", err)
	}
	if len(data) > maxDjangoAnswer {
		return canal.User{}, d.unavailable("answer larger than %d bytes", maxDjangoAnswer)
	}
	var answer struct {
		User  json.RawMessage `json:"user"`
		Error string          `json:"error"`
	}
	jsonErr := json.Unmarshal(data, &answer)
	if resp.StatusCode != http.StatusOK {
		// Django's reason ("bad token", "unknown kind", ...) helps whoever configures
		// the pair; it is dropped if it ever quoted the credential.
		reason := answer.Error
		if jsonErr != nil || len(reason) > 200 || strings.Contains(reason, credential) {
			reason = ""
		}
		if reason != "" {
			return canal.User{}, d.unavailable("answered %d (%s)", resp.StatusCode, reason)
		}
		return canal.User{}, d.unavailable("answered %d", resp.StatusCode)
	}
	switch {
	case jsonErr != nil:
		return canal.User{}, d.unavailable("unreadable answer")
	case answer.User == nil:
		return canal.User{}, d.unavailable(`answer has no "user"`)
	case string(answer.User) == "null":
		return canal.User{}, fmt.Errorf("%w: Django: the %s credential identifies nobody", ErrInvalid, d.kind)
	}
	user, err := userjson.Decode(answer.User)
	if err != nil {
		return canal.User{}, d.unavailable("unreadable user: %v", err)
	}
	return user, nil
}

// unavailable formats an error wrapping canal.ErrUnavailable (and, with %w, the cause).
func (d *django) unavailable(format string, args ...any) error {
	return fmt.Errorf("auth: Django %s endpoint: %w: "+format, append([]any{d.kind, canal.ErrUnavailable}, args...)...)
}
