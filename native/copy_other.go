//go:build !amd64

package native

// Copy copies src into dst and returns how many bytes it copied, as copy
// does (on amd64 it is tuned for ring spans: copy_amd64.go).
func Copy(dst, src []byte) int { return copy(dst, src) }
