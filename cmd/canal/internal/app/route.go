package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/cmd/canal/internal/config"
	"github.com/canal-rt/canal/cmd/canal/internal/expr"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/internal/ratelog"
	"github.com/canal-rt/canal/layers"
)

// route is one [[route]] of the configuration: the consumer every socket on its path
// runs, made of configuration instead of Go.
type route struct {
	cfg    *config.Route
	layer  canal.Layer
	django *djangoClient
	log    *slog.Logger
	logs   ratelog.Limiter // refusals clients can cause: a line a second per kind
}

// newRouteHandler returns the consumer handler of cfg; auth middleware goes around it.
func newRouteHandler(cfg *config.Route, layer canal.Layer, django *djangoClient, log *slog.Logger) (*consumer.Handler[*socket], error) {
	rt := &route{cfg: cfg, layer: layer, django: django, log: log}
	frames := map[string]consumer.FrameFunc{
		config.BusType: busFrame,
	}
	whole := consumer.JSONFrame(func(m canal.Message) any { return map[string]any(withoutPosition(m)) })
	for _, t := range cfg.Events {
		frames[t] = whole
	}
	frames["websocket.send"] = sendFrame // config keeps websocket.* out of Events
	return consumer.New(func() *socket { return &socket{rt: rt} }, consumer.Options[*socket]{
		Layer:     layer,
		Frames:    frames,
		OnInvalid: rt.invalid,
		Logger:    log,
		Recover:   cfg.Recover,
	})
}

// withoutPosition returns m without the position a message published with history
// carries (canal.PositionKey): a recovered group's frame gets it spliced in as the
// "canal" key canal.js reads, and the layer's own key is not the client's business.
// m is shared by every member, so it is copied, not changed.
func withoutPosition(m canal.Message) canal.Message {
	if _, ok := m[canal.PositionKey]; !ok {
		return m
	}
	out := make(canal.Message, len(m)-1)
	for k, v := range m {
		if k != canal.PositionKey {
			out[k] = v
		}
	}
	return out
}

// busFrame sends a bus message as it was published: no decoding, no re-encoding.
func busFrame(m canal.Message) (canal.Frame, error) {
	b, _ := m["raw"].([]byte)
	return canal.Frame{Data: b}, nil
}

// sendFrame is Channels' {"type": "websocket.send", "text": ...} (or "bytes"): how a
// worker or Django replies to one socket through the layer.
func sendFrame(m canal.Message) (canal.Frame, error) {
	if b, ok := m["bytes"].([]byte); ok {
		return canal.Frame{Binary: true, Data: b}, nil
	}
	s, ok := m["text"].(string)
	if !ok || !utf8.ValidString(s) {
		return canal.Frame{}, errors.New("websocket.send without a UTF-8 \"text\" or \"bytes\"")
	}
	return canal.Text(s), nil
}

// invalid answers frames that are not JSON text: 1008 when the route refuses client
// messages anyway, else the consumer's 1007 (invalid JSON) and 1003 (binary).
func (rt *route) invalid(_ context.Context, _ *consumer.Conn, _ canal.Frame, err error) error {
	if rt.cfg.Receive.Mode == config.ModeRefuse {
		return refused
	}
	code := canal.CloseInvalidPayload
	if errors.Is(err, consumer.ErrBinaryFrame) {
		code = canal.CloseUnsupportedData
	}
	return &canal.CloseError{Code: code, Reason: strings.TrimPrefix(err.Error(), "consumer: "), Err: err}
}

var refused = &canal.CloseError{Code: canal.ClosePolicyViolation, Reason: "this socket takes no messages"}

// socket is one connection's consumer.
type socket struct {
	rt      *route
	groups  []string // joined from the route's templates
	targets []string // group mode: the groups client messages go to
}

func (s *socket) Connect(ctx context.Context, c *consumer.Conn) error {
	rt := s.rt
	scope := c.Scope()
	vars := expr.Conn{User: scope.User, Route: scope.Route}
	if !rt.cfg.Anonymous && !scope.User.Authenticated() {
		return canal.Reject(http.StatusForbidden, "login required")
	}
	for _, p := range rt.cfg.Predicates {
		if !p.Eval(vars) {
			rt.log.Debug("connection refused by require", "route", scope.RoutePattern, "require", p.String(), "user", scope.User.ID)
			return canal.Reject(http.StatusForbidden, "forbidden")
		}
	}
	groups, err := expandAll(rt.cfg.GroupTemplates, vars, rt.cfg.MaxGroups)
	if err != nil {
		rt.logs.Log(rt.log, slog.LevelWarn, "groups", "connection refused: groups", "route", scope.RoutePattern, "user", scope.User.ID, "err", err)
		return err
	}
	if t := rt.cfg.Receive.GroupTemplate; t != nil {
		if s.targets, err = expandAll([]*expr.Template{t}, vars, rt.cfg.MaxGroups); err != nil {
			rt.logs.Log(rt.log, slog.LevelWarn, "receive.group", "connection refused: receive.group", "route", scope.RoutePattern, "user", scope.User.ID, "err", err)
			return err
		}
	}
	if rt.cfg.Authorize != "" {
		if err := rt.django.authorize(ctx, rt.cfg.Authorize, scope, groups); err != nil {
			return err
		}
	}
	for _, g := range groups {
		if err := c.GroupAdd(ctx, g); err != nil {
			return err
		}
	}
	s.groups = groups
	return c.Accept()
}

// UserChanged follows a claims refresh (Django's django_canal.realtime.refresh_user,
// sent by its signals when a user's groups or permissions change): the route's rules
// are checked again with the new claims, and the socket joins and leaves groups to
// match its templates, without a reconnect. A user who no longer passes is closed with
// 4403. The authorize URL is not asked again (it answers for the handshake).
func (s *socket) UserChanged(ctx context.Context, c *consumer.Conn, _, u canal.User) error {
	rt := s.rt
	vars := expr.Conn{User: u, Route: c.Scope().Route}
	forbidden := &canal.CloseError{Code: canal.CloseForbidden, Reason: "forbidden"}
	if !rt.cfg.Anonymous && !u.Authenticated() {
		return forbidden
	}
	for _, p := range rt.cfg.Predicates {
		if !p.Eval(vars) {
			return forbidden
		}
	}
	groups, err := expandAll(rt.cfg.GroupTemplates, vars, rt.cfg.MaxGroups)
	if err != nil {
		return &canal.CloseError{Code: canal.CloseForbidden, Reason: "forbidden", Err: err}
	}
	if t := rt.cfg.Receive.GroupTemplate; t != nil {
		targets, err := expandAll([]*expr.Template{t}, vars, rt.cfg.MaxGroups)
		if err != nil {
			return &canal.CloseError{Code: canal.CloseForbidden, Reason: "forbidden", Err: err}
		}
		s.targets = targets
	}
	for _, g := range s.groups {
		if !slices.Contains(groups, g) {
			if err := c.GroupDiscard(ctx, g); err != nil {
				return layerClose(err)
			}
		}
	}
	for _, g := range groups {
		if !slices.Contains(s.groups, g) {
			if err := c.GroupAdd(ctx, g); err != nil {
				return layerClose(err)
			}
		}
	}
	s.groups = groups
	return nil
}

// expandAll expands templates into distinct, valid group names, at most max.
func expandAll(ts []*expr.Template, vars expr.Vars, max int) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, t := range ts {
		names, err := t.Expand(vars, max)
		if err != nil {
			return nil, &canal.RejectError{Status: http.StatusForbidden, Reason: "forbidden", Err: fmt.Errorf("%s: %w", t, err)}
		}
		for _, n := range names {
			if seen[n] {
				continue
			}
			if err := layers.ValidGroupName(n); err != nil {
				return nil, &canal.RejectError{Status: http.StatusBadRequest, Reason: "bad request", Err: fmt.Errorf("%s makes an invalid group name", t)}
			}
			seen[n] = true
			out = append(out, n)
		}
		if len(out) > max {
			return nil, &canal.RejectError{Status: http.StatusForbidden, Reason: "forbidden", Err: fmt.Errorf("more than max_groups (%d) groups", max)}
		}
	}
	return out, nil
}

func (s *socket) ReceiveJSON(ctx context.Context, c *consumer.Conn, content json.RawMessage) error {
	rc := &s.rt.cfg.Receive
	switch rc.Mode {
	case config.ModeGroup:
		m, err := clientMessage(content)
		if err != nil {
			return err
		}
		m["type"] = rc.Type
		m["sender"] = sender(c.Scope().User)
		for _, g := range s.targets {
			if err := c.GroupSend(ctx, g, m); err != nil {
				return layerClose(err)
			}
		}
		return nil
	case config.ModeWorker:
		m, err := clientMessage(content)
		if err != nil {
			return err
		}
		m["type"] = rc.Type
		m["sender"] = sender(c.Scope().User)
		m["reply_channel"] = c.ChannelName()
		m["route"] = routeValues(c.Scope().Route)
		if err := s.rt.layer.Send(ctx, rc.Channel, m); err != nil {
			return layerClose(err)
		}
		return nil
	case config.ModeDjango:
		return s.rt.django.receive(ctx, rc.URL, c, content)
	}
	return refused
}

// layerClose closes a socket whose message the layer could not take: 1013 (try again
// later) for a full worker channel or a layer that is down, so the client knows the
// message was not delivered.
func layerClose(err error) error {
	if errors.Is(err, canal.ErrChannelFull) || errors.Is(err, canal.ErrUnavailable) {
		return &canal.CloseError{Code: canal.CloseTryAgainLater, Reason: "try again later", Err: err}
	}
	return err
}

// clientMessage decodes a client's JSON object into a layer message. Numbers become
// int64 when integral (so Django sees ints), else float64; keys starting with "__"
// (channels_redis' own, such as __asgi_channel__) are dropped.
func clientMessage(content json.RawMessage) (canal.Message, error) {
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, &canal.CloseError{Code: canal.CloseInvalidPayload, Reason: "expected a JSON object"}
	}
	for k, v := range m {
		if strings.HasPrefix(k, "__") {
			delete(m, k)
			continue
		}
		m[k] = numbers(v)
	}
	return canal.Message(m), nil
}

func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) {
			return v.String()
		}
		return f
	case []any:
		for i := range v {
			v[i] = numbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = numbers(v[k])
		}
	}
	return v
}

func sender(u canal.User) map[string]any {
	return map[string]any{"id": u.ID, "username": u.Username}
}

func routeValues(a canal.Args) map[string]any {
	m := make(map[string]any, len(a))
	for k, v := range a {
		if n, ok := v.(int); ok {
			m[k] = int64(n)
		} else {
			m[k] = v
		}
	}
	return m
}
