package auth

import (
	"context"
	"errors"

	"github.com/canal-rt/canal"
)

// ErrInvalid is what a [Verifier] returns (possibly wrapped) for a credential that
// identifies nobody: unknown, expired, tampered, revoked, of the wrong type, or of an
// inactive user. Middleware answers it with 403.
var ErrInvalid = errors.New("auth: invalid credential")

// Verifier resolves a credential to its user.
//
// It returns an authenticated [canal.User], or an error wrapping [ErrInvalid] when the
// credential identifies nobody, or one wrapping [canal.ErrUnavailable] when the backing
// store cannot answer (middleware then fails closed with 503). It must not put the
// credential in its errors, must honour ctx, and is called concurrently.
type Verifier func(ctx context.Context, credential string) (canal.User, error)
