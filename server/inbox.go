package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/canal-rt/canal"
)

// The inbox: client frames and layer events wait here for the session, which gets them
// one at a time, in arrival order, on the server's session workers (Options.SessionWorkers).
// A connection has at most one task queued or running there (c.working), and its inbox
// holds at most FrameQueue client frames and EventQueue events.

func (c *conn) kickWorker() {
	if c.working || c.session == nil || len(c.inbox) == 0 {
		return
	}
	c.working = true
	c.wg.Add(1)
	c.srv.sessions.run(c.workTask)
}

func (c *conn) work() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		if len(c.inbox) == 0 {
			c.working = false
			c.mu.Unlock()
			return
		}
		it := c.inbox[0]
		c.inbox[0] = item{}
		c.inbox = c.inbox[1:]
		switch it.kind {
		case kindFrame:
			c.frames--
			c.space.Signal()
		case kindEvent, kindSend:
			c.events--
		}
		// After a close request the session gets nothing but its Disconnect.
		skip := it.kind != kindDisconnect && c.state >= stateRejected
		sess := c.session
		c.mu.Unlock()
		if !skip {
			c.dispatch(sess, it)
		}
	}
}

func (c *conn) dispatch(sess canal.Session, it item) {
	var err error
	func() {
		defer func() {
			if v := recover(); v != nil {
				c.srv.logs.Log(c.log(), slog.LevelError, "panic", "canal: panic in session", "panic", v, "stack", string(debug.Stack()))
				err = &canal.CloseError{Code: canal.CloseInternalError}
			}
		}()
		switch it.kind {
		case kindFrame:
			err = sess.Receive(c.ctx, c, it.frame)
		case kindEvent:
			err = sess.Event(c.ctx, c, it.msg)
		case kindSend:
			err = c.Send(it.frame)
		case kindDisconnect:
			sess.Disconnect(context.WithoutCancel(c.ctx), c, it.code)
		}
	}()
	if err == nil {
		return
	}
	var ce *canal.CloseError
	if errors.As(err, &ce) {
		c.closeWith(ce.Code, ce.Reason)
		return
	}
	if errors.Is(err, canal.ErrClosed) {
		return
	}
	c.srv.logs.Log(c.log(), slog.LevelError, "session error", "canal: session error", "err", err)
	c.mu.Lock()
	if c.state == stateHandshake {
		c.rejectLocked(http.StatusInternalServerError)
	} else {
		c.closeLocked(canal.CloseInternalError, "")
	}
	c.mu.Unlock()
}
