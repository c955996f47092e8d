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
package auth
