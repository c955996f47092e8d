// Package auth turns the credentials a Django site hands out into a [canal.User].
//
// One type covers the family: a [Verifier] takes the credential a client presented
// (a ticket, a session key, a Django REST framework token, a simplejwt access token, a
// django.core.signing token, a django-sesame token) and answers with its user, or with
// an error wrapping [ErrInvalid] (the credential identifies nobody: unknown, expired,
// tampered, revoked, of the wrong kind) or [canal.ErrUnavailable] (the backing service
// cannot answer). Middleware decides what the outcomes mean for a handshake (403, 503);
// the verifiers only verify.
//
// Verifiers never put the credential in their errors, and are safe for concurrent use.
//
// # Stateless verifiers
//
// [SimpleJWT] and [Signed] check a credential with a key alone, in microseconds and
// without a network round trip, so they suit the hot path of a handshake:
//
//   - SimpleJWT: access tokens of djangorestframework-simplejwt, configured with the
//     SIMPLE_JWT settings by name (HS256 with SECRET_KEY by default; RS, ES and EdDSA
//     with the public key), through github.com/golang-jwt/jwt/v5.
//   - Signed: tokens of django.core.signing (signing.dumps, TimestampSigner, Signer),
//     with the key derivation, base62 timestamps, zlib payloads and
//     SECRET_KEY_FALLBACKS of Django 3.2 to 5.2. A maximum age is required, or an
//     explicit NoMaxAge.
//
// What they cannot know is what happened since the token was made: a user deactivated
// or logged out keeps a valid token until it expires. Keep lifetimes short (minutes),
// or use a verifier that asks the site.
//
// Both map the token's claims to the user the same way: a user id claim (an integer or
// a string) becomes ID, a username claim Username, and the remaining claims Attrs, with
// numbers as json.Number; [canal.User.Bool], [canal.User.Int64s] and friends read them.
// Both refuse credentials longer than 8 KiB before any cryptography.
package auth
