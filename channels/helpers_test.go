package channels

// Helpers shared by the tests of the edge types.

import (
	"io"
	"testing"
)

// pump writes input into ch's producer end and returns what its one reader
// gets, closing both ends.
func pump(t testing.TB, ch Channel, input []byte) []byte {
	t.Helper()
	w, r := ch.Writer(), ch.Reader(0)
	go func() {
		w.Write(input)
		w.Close()
	}()
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	return got
}
