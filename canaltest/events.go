package canaltest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// Event is one Server-Sent Event as a browser's EventSource sees it.
type Event struct {
	Name string // "event:" field; "" is the default "message"
	Data string // the data lines joined with "\n"
}

// EventStream is a Server-Sent Events client for tests (server.Options.EventStreams),
// over a real socket. It parses the stream as the HTML standard's EventSource does,
// without reconnecting.
//
// Concurrency: Next may be called by one goroutine at a time; Close is safe anytime.
type EventStream struct {
	Header http.Header // the 200 response headers

	resp   *http.Response
	cancel context.CancelFunc
	events chan Event
	done   chan struct{} // closed when the read loop ends
	err    error         // why the stream ended; read after done
	pings  atomic.Int64
}

// DialEvents opens an event stream at url (http://). A refusal (any status but 200)
// returns *HandshakeError.
func DialEvents(ctx context.Context, url string, opts DialOptions) (*EventStream, error) {
	sctx, cancel := context.WithCancel(context.Background()) // the stream outlives ctx
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("canaltest: events: %w", err)
	}
	for k, vs := range opts.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if opts.Origin != "" {
		req.Header.Set("Origin", opts.Origin)
	}
	req.Header.Set("Accept", "text/event-stream")
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	go func() {
		resp, err := client.Do(req)
		got <- result{resp, err}
	}()
	dctx, dcancel := withDefault(ctx)
	defer dcancel()
	var r result
	select {
	case r = <-got:
	case <-dctx.Done():
		cancel()
		if r := <-got; r.resp != nil {
			r.resp.Body.Close()
		}
		return nil, fmt.Errorf("canaltest: events: %w", dctx.Err())
	}
	if r.err != nil {
		cancel()
		return nil, fmt.Errorf("canaltest: events: %w", r.err)
	}
	if r.resp.StatusCode != http.StatusOK {
		r.resp.Body.Close()
		cancel()
		return nil, &HandshakeError{Status: r.resp.StatusCode}
	}
	s := &EventStream{Header: r.resp.Header, resp: r.resp, cancel: cancel, events: make(chan Event, 64), done: make(chan struct{})}
	go s.readLoop()
	return s, nil
}

func (s *EventStream) readLoop() {
	defer close(s.done)
	defer close(s.events)
	br := bufio.NewReader(s.resp.Body)
	var ev Event
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.err = err // io.EOF when the server closed the stream
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data != nil {
				ev.Data = strings.Join(data, "\n")
				select {
				case s.events <- ev:
				case <-s.resp.Request.Context().Done():
					s.err = context.Canceled
					return
				}
			}
			ev, data = Event{}, nil
		case strings.HasPrefix(line, ":"):
			s.pings.Add(1)
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				ev.Name = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// Next returns the next event. When the stream has ended it returns io.EOF (the
// server closed it) or the read error.
func (s *EventStream) Next(ctx context.Context) (Event, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	select {
	case ev, ok := <-s.events:
		if !ok {
			<-s.done
			return Event{}, s.err
		}
		return ev, nil
	case <-ctx.Done():
		return Event{}, fmt.Errorf("%w: %w", ErrNoFrame, ctx.Err())
	}
}

// Comments returns how many comment lines (the server's pings) have arrived.
func (s *EventStream) Comments() int64 { return s.pings.Load() }

// Close drops the connection, as EventSource.close() does.
func (s *EventStream) Close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}
