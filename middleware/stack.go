package middleware

import (
	"fmt"

	"github.com/canal-rt/canal"
)

// Stack composes middleware into one, in the order written: Stack(a, b)(h) runs a,
// then b, then h, as canal.Chain does. It is the Go spelling of a Channels stack such
// as AllowedHostsOriginValidator(TokenAuthMiddleware(router)):
//
//	secure := middleware.Stack(recoverer, allowedHosts, tokenAuth)
//	h := secure(router)
//
// Stack copies its arguments, so the result is immutable and safe for concurrent use.
// A nil middleware is a programming error (often an ignored constructor error) and
// panics here rather than on the first connection.
func Stack(m ...canal.Middleware) canal.Middleware {
	chain := make(canal.Chain, len(m))
	for i, mw := range m {
		if mw == nil {
			panic(fmt.Sprintf("middleware: Stack: nil middleware at index %d", i))
		}
		chain[i] = mw
	}
	return func(next canal.Handler) canal.Handler { return chain.Then(next) }
}
