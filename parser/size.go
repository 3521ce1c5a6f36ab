package parser

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are the suffixes a size may carry: all powers of 1024, as SPEC 4
// says (K is KiB, not 1000).
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
}

// ParseSize turns "4096", "64K", "1MiB" or "2G" into bytes. The number is a
// positive decimal integer.
func ParseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || num == "" || num[0] < '0' || num[0] > '9' {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return 0, fmt.Errorf("bad size %q: expected bytes or a number with K, KiB, M, MiB, G or GiB", s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("bad size %q: must be more than 0", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// parseCount turns a decimal count into an int within [lo, hi].
func parseCount(s, what string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("bad %s %q: expected a number from %d to %d", what, s, lo, hi)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%s must be %d to %d, found %d", what, lo, hi, n)
	}
	return n, nil
}
