package layers

import (
	"sync/atomic"
	"time"
)

// everySecond rate-limits a log line to one a second, so hostile input cannot flood
// the log. Concurrency: safe for concurrent use.
type everySecond struct{ last atomic.Int64 }

func (e *everySecond) allow() bool {
	now := time.Now().UnixNano()
	last := e.last.Load()
	return now-last >= int64(time.Second) && e.last.CompareAndSwap(last, now)
}
