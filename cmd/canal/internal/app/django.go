package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/consumer"
)

// maxDjangoAnswer bounds what canal reads of a Django answer (a reply relayed to a
// socket must fit a frame anyway).
const maxDjangoAnswer = 64 << 10

// djangoClient calls the Django URLs of a configuration (authorize, receive mode
// "django") with the shared secret as a bearer token. Calls run on the server's
// session goroutines, so at most server.session_workers are in flight.
type djangoClient struct {
	http    *http.Client
	token   string
	timeout time.Duration
}

func newDjangoClient(token string, timeout time.Duration) *djangoClient {
	return &djangoClient{token: token, timeout: timeout, http: &http.Client{
		// A redirect would be a misconfigured URL; it must not carry the token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		// Its own pool, closed with the App. No proxy from the environment: the
		// secret goes to the configured URL only. Kept connections are bounded; the
		// calls in flight are bounded by the session workers.
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second},
	}}
}

// post sends body as JSON and returns the status and at most maxDjangoAnswer bytes.
// Errors never hold the token; they wrap canal.ErrUnavailable.
func (d *djangoClient) post(ctx context.Context, url string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", canal.ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", canal.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDjangoAnswer+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", canal.ErrUnavailable, err)
	}
	if len(data) > maxDjangoAnswer {
		return 0, nil, fmt.Errorf("%w: answer over %d bytes", canal.ErrUnavailable, maxDjangoAnswer)
	}
	return resp.StatusCode, data, nil
}

// userJSON is the user as a ticket holds it: id, username and the claims.
func userJSON(u canal.User) map[string]any {
	m := make(map[string]any, len(u.Attrs)+2)
	for k, v := range u.Attrs {
		m[k] = v
	}
	m["id"], m["username"] = u.ID, u.Username
	return m
}

// authorize asks Django whether the connection may open: 200 or 204 yes, 401 or 403
// no (HTTP 403 to the client), anything else (or no answer in time) 503.
func (d *djangoClient) authorize(ctx context.Context, url string, s *canal.Scope, groups []string) error {
	status, _, err := d.post(ctx, url, map[string]any{
		"user": userJSON(s.User), "path": s.Path, "route": routeValues(s.Route), "groups": groups,
	})
	switch {
	case err != nil:
		return &canal.RejectError{Status: http.StatusServiceUnavailable, Reason: "try again later", Err: err}
	case status == http.StatusOK || status == http.StatusNoContent:
		return nil
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return canal.Reject(http.StatusForbidden, "forbidden")
	}
	return &canal.RejectError{Status: http.StatusServiceUnavailable, Reason: "try again later",
		Err: fmt.Errorf("%w: authorize answered %d", canal.ErrUnavailable, status)}
}

// receive posts a client message to Django and relays a non-empty answer to the
// socket as a text frame. 4xx closes the socket with 4000+status (the client's
// message was refused); 5xx, no answer in time or a non-UTF-8 answer close it with
// 1013: the message was not handled.
func (d *djangoClient) receive(ctx context.Context, url string, c *consumer.Conn, content json.RawMessage) error {
	s := c.Scope()
	status, data, err := d.post(ctx, url, map[string]any{
		"message": content, "user": userJSON(s.User), "path": s.Path,
		"route": routeValues(s.Route), "channel_name": c.ChannelName(),
	})
	switch {
	case err != nil:
		return &canal.CloseError{Code: canal.CloseTryAgainLater, Reason: "try again later", Err: err}
	case status >= 400 && status < 500:
		return &canal.CloseError{Code: 4000 + status, Reason: http.StatusText(status)}
	case status < 200 || status >= 300:
		return &canal.CloseError{Code: canal.CloseTryAgainLater, Reason: "try again later",
			Err: fmt.Errorf("%w: django answered %d", canal.ErrUnavailable, status)}
	case len(data) == 0:
		return nil
	case !utf8.Valid(data):
		return &canal.CloseError{Code: canal.CloseTryAgainLater, Reason: "try again later",
			Err: fmt.Errorf("django answered with invalid UTF-8")}
	}
	return c.Send(canal.Frame{Data: data})
}
