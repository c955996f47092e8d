//go:build !unix

package server

// fileLimit reports that there is no file limit to read (Windows has none of the
// kind): MaxConnections then defaults to no limit.
func fileLimit() (uint64, bool) { return 0, false }
