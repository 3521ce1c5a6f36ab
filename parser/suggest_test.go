package parser

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"
)

// fullDistance is the plain dynamic programme that distanceWithin bounds:
// Levenshtein in bytes, an adjacent swap counting as one edit.
func fullDistance(a, b string) int {
	prev2, prev, cur := make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// TestDistanceWithin: the banded, early-stopping distance agrees with the
// full one up to its limit, on random strings over a small alphabet (so
// that they are often close).
func TestDistanceWithin(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	word := func() string {
		b := make([]byte, rng.Intn(9))
		for i := range b {
			b[i] = "abc"[rng.Intn(3)]
		}
		return string(b)
	}
	s := newSuggester(nil, -1)
	for n := 0; n < 20000; n++ {
		a, b, limit := word(), word(), rng.Intn(5)
		want := min(fullDistance(a, b), limit+1)
		if got := s.distanceWithin(a, b, limit); got != want {
			t.Fatalf("distanceWithin(%q, %q, %d) = %d, want %d", a, b, limit, got, want)
		}
	}
}

// TestManyTypos: 20,000 misspelt references to 10,000 stages. Each one
// used to list, sort and compare against every stage name (over 400 s);
// now the names are listed once and only the first maxSearches typos are
// searched. The deadline is generous: it only catches the quadratic case.
func TestManyTypos(t *testing.T) {
	var b strings.Builder
	const n = 10000
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "stage stage_number_%d = cat\n", i)
	}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "stage_numbr_%d -> stage_nmber_%d.in\n", i, (i+1)%n)
	}
	src := []byte(b.String())
	done := make(chan error, 1)
	go func() {
		_, err := Parse("f", src)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("checking 20,000 unknown names took more than 20 s")
	}
	list, ok := err.(ErrorList)
	if !ok || len(list) != 2*n {
		t.Fatalf("want %d errors, got %d (%T)", 2*n, len(list), err)
	}
	if want := `f:10001:1: unknown stage stage_numbr_0 (did you mean "stage_number_0"?)`; list[0].Error() != want {
		t.Errorf("first error:\n got: %v\nwant: %s", list[0], want)
	}
	if want := "f:20000:1: unknown stage stage_numbr_9999"; list[len(list)-2].Error() != want {
		t.Errorf("late error (past the searches):\n got: %v\nwant: %s", list[len(list)-2], want)
	}
}

// TestSuggesterSearches: repeated typos are answered from memory and do
// not use up searches; past the limit there is no suggestion.
func TestSuggesterSearches(t *testing.T) {
	s := newSuggester([]string{"alpha", "beta"}, 1)
	for i := 0; i < 3; i++ {
		if got := s.suggest("alpah"); got != ` (did you mean "alpha"?)` {
			t.Fatalf("suggest(alpah) #%d = %q", i, got)
		}
	}
	if got := s.suggest("btea"); got != "" {
		t.Errorf("suggest(btea) past the limit = %q, want none", got)
	}
}
