// Package ticket authorizes WebSocket connections with single-use tickets issued by
// Django, the "realtime ticket" pattern.
//
// A logged-in page asks Django for a ticket. Django stores the user under the ticket in
// Redis with a short expiry (10 s by default) and hands the ticket to the browser, which
// presents it when it opens the WebSocket (in the query string or the first message).
// The Go server consumes the ticket: it reads and deletes it in one step and attaches
// the user to the connection. A ticket therefore opens one connection, once, shortly
// after it was issued, and the Go server never needs Django's session store or its
// secret key.
//
// # Format
//
// The Django package and this one must agree byte for byte:
//
//   - ticket: 32 bytes from a CSPRNG, base64url without padding: 43 characters, as
//     Python's secrets.token_urlsafe(32) and [New] produce;
//   - key: Prefix + lowercase hex SHA-256 of the ticket string ([Hash]); the default
//     prefix is "canal:ticket:";
//   - value: a JSON object with "id" (an integer or a string: Django's primary key) and
//     "username" (a string); every other key is an attribute (is_staff, groups, ...);
//   - expiry: the key's TTL, set with the value in one command (Django: SET key value
//     EX ttl NX; [Redis.Issue]: the same with PX, for sub-second lifetimes).
//
// The ID reaches Go as text exactly as written: 42 becomes "42", and integers beyond
// 2^53 keep every digit. See [Encode] and [Decode].
//
// # Security properties
//
//   - Single use: [Redis.Consume] is one atomic GETDEL (a Lua script doing GET and DEL
//     on servers older than 6.2), so of any number of concurrent attempts, on any
//     number of servers, exactly one gets the user.
//   - Only hashes at rest: keys hold the SHA-256 of the ticket, not the ticket, so
//     whoever can read Redis (a replica, a backup, SCAN, MONITOR) cannot replay them. The ticket has 256 bits of entropy, so the unsalted hash is safe.
//   - Unpredictable: tickets come from crypto/rand (Go) or secrets (Python).
//   - Indistinguishable failures: a malformed, unknown, expired or used ticket all
//     give [ErrInvalid], and malformed input is refused before any I/O.
//   - Fail closed: when Redis cannot be reached, Consume returns an error wrapping
//     canal.ErrUnavailable and authenticates no one.
//   - Discreet: tickets appear in no error message; callers must not log them either
//     (they travel in the query string, see canal.Scope.RawQuery).
//
// [Memory] implements the same [Store] in process memory, for demos and tests.
package ticket
