package consumer

import "time"

// SetMinRecoverCheck lowers MinRecoverCheck for a test, so that it can check every
// few hundred milliseconds; the returned func restores it. Tests that call it must
// not run in parallel with others that call it.
func SetMinRecoverCheck(d time.Duration) (restore func()) {
	old := minRecoverCheck.Swap(int64(d))
	return func() { minRecoverCheck.Store(old) }
}
