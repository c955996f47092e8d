package auth_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind (a verifier's, a cache's,
// or one of the processes' pipes).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
