package parser

import (
	"fmt"
	"strings"
)

// maxSearches is how many different unknown names of one kind (stage,
// semaphore) get a "did you mean" searched among the script's own names.
// A search looks at every name, so a generated script with thousands of
// typos would take time in names × typos; past the first maxSearches,
// errors come without a suggestion (nobody reads that far anyway).
const maxSearches = 100

// didYouMean returns ` (did you mean "x"?)` for the candidate closest to
// name, or "" when none is close enough to be a likely typo.
func didYouMean(name string, candidates []string) string {
	return newSuggester(candidates, -1).suggest(name)
}

// Closest returns the candidate closest to name, by the rule of the
// script's "did you mean", or "" when none is close enough to be a likely
// typo (or name is one of them): for the command line's own suggestions.
func Closest(name string, candidates []string) string {
	return newSuggester(candidates, -1).closest(name)
}

// suggester finds the name closest to a misspelt one among a fixed list
// of candidates. It is built once per list, remembers its answers, and
// gives up after its number of searches, if that is not negative.
type suggester struct {
	names    []string
	folded   []string // names in lower case: PIPE is a typo of pipe
	memo     map[string]string
	searches int      // searches left; negative: no limit
	rows     [3][]int // distanceWithin's rows, reused
}

func newSuggester(names []string, searches int) *suggester {
	folded := make([]string, len(names))
	for i, n := range names {
		folded[i] = strings.ToLower(n)
	}
	return &suggester{names: names, folded: folded, memo: map[string]string{}, searches: searches}
}

// suggest returns ` (did you mean "x"?)` or "". The closest candidate
// wins, and of two as close, the first in byte order; a candidate is
// close enough when it is at most 2 edits, and at most half of the
// name's length, away. Case does not count: a name that differs from a
// candidate only in case gets it suggested.
func (s *suggester) suggest(name string) string {
	if msg, ok := s.memo[name]; ok {
		return msg
	}
	if s.searches == 0 {
		return ""
	}
	if s.searches > 0 {
		s.searches--
	}
	msg := ""
	if best := s.closest(name); best != "" {
		msg = fmt.Sprintf(" (did you mean %q?)", best)
	}
	s.memo[name] = msg
	return msg
}

// closest returns the candidate closest to name, or "": see suggest.
func (s *suggester) closest(name string) string {
	folded := strings.ToLower(name)
	best, bestD := "", min(len(name)/2+1, 3)
	for i, c := range s.names {
		// Only a distance below bestD can win, or equal to it for a
		// name that sorts first: the search stops counting past that.
		limit := bestD - 1
		if best != "" && c < best {
			limit = bestD
		}
		if d := s.distanceWithin(folded, s.folded[i], limit); d <= limit {
			best, bestD = c, d
		}
	}
	if best == name {
		return ""
	}
	return best
}

// distanceWithin returns the edit distance between a and b (Levenshtein,
// in bytes, with an adjacent swap counted as one edit) when it is at most
// limit, and limit+1 otherwise. Only the cells within limit of the
// diagonal are computed, and it stops at the first rows that are all
// over limit: with limit at most 3 a comparison costs a few dozen cells,
// not len(a) × len(b).
func (s *suggester) distanceWithin(a, b string, limit int) int {
	over := limit + 1
	if limit < 0 || len(a)-len(b) > limit || len(b)-len(a) > limit {
		return over
	}
	if a == b {
		return 0
	}
	for i := range s.rows {
		if cap(s.rows[i]) < len(b)+1 {
			s.rows[i] = make([]int, len(b)+1)
		}
	}
	prev2, prev, cur := s.rows[0][:len(b)+1], s.rows[1][:len(b)+1], s.rows[2][:len(b)+1]
	for j := range prev {
		prev[j] = min(j, over)
	}
	prevMin := 0
	for i := 1; i <= len(a); i++ {
		lo, hi := max(1, i-limit), min(len(b), i+limit)
		cur[0] = min(i, over)
		if lo > 1 {
			cur[lo-1] = over // left of the band: too far from the diagonal
		}
		rowMin := cur[0]
		for j := lo; j <= hi; j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d = min(d, prev2[j-2]+1)
			}
			cur[j] = min(d, over)
			rowMin = min(rowMin, cur[j])
		}
		if hi < len(b) {
			cur[hi+1] = over // right of the band, read by the next row
		}
		// A cell only grows from the row above (or, for a swap, the one
		// above that): two rows over the limit end the search.
		if rowMin > limit && prevMin > limit {
			return over
		}
		prevMin = rowMin
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
