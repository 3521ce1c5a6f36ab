package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestBenchCommand runs a small `ipcflow bench` and checks that every row
// asked for is measured: throughput, its ratio to the reference pipe, and
// the object-only throughput and the round trips (figures are not
// asserted: the machine is shared).
func TestBenchCommand(t *testing.T) {
	var out, errb bytes.Buffer
	args := []string{"bench", "--size", "4MiB", "--runs", "1", "--rounds", "50", "--json", "shm", "mq", "mmap", "socket"}
	if code := Main(args, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rows []struct {
		Type   string  `json:"type"`
		GBps   float64 `json:"throughput_gb_per_s"`
		Ratio  float64 `json:"ratio_to_pipe"`
		Object float64 `json:"object_gb_per_s"`
		RTT    float64 `json:"rtt_us"`
		ViaCat float64 `json:"rtt_via_cat_us"`
		Err    string  `json:"error"`
	}
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	want := []string{"pipe(2) reference", "shm", "mq", "mmap", "socket unix", "socket tcp", "socket udp"}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %v", rows, want)
	}
	for i, r := range rows {
		if r.Type != want[i] || r.GBps <= 0 || r.Ratio <= 0 {
			t.Errorf("row %d: %+v, want %s measured", i, r, want[i])
		}
		if r.Err != "" {
			t.Errorf("row %s: %s", r.Type, r.Err)
		}
		if i > 0 && r.ViaCat <= 0 {
			t.Errorf("row %s: no round trip via cat", r.Type)
		}
		if i > 0 && r.Type != "mmap" && r.RTT <= 0 {
			t.Errorf("row %s: no round trip", r.Type)
		}
		if hasObject := i > 0 && r.Type != "mmap" && r.Type != "socket udp"; hasObject != (r.Object > 0) {
			t.Errorf("row %s: object throughput %v", r.Type, r.Object)
		}
	}

	out.Reset()
	if code := Main([]string{"bench", "--size", "1MiB", "--runs", "1", "--rounds", "10", "shm"}, nil, &out, &errb); code != 0 {
		t.Fatalf("table: exit %d: %s", code, errb.String())
	}
	for _, s := range []string{"TYPE", "THROUGHPUT", "vs PIPE", "OBJECT", "pipe(2) reference", "shm", "/s", "median of 1 runs"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"bench", "nosuch"}, `unknown edge type "nosuch"`},
		{[]string{"bench", "--size", "12X"}, `--size "12X"`},
		{[]string{"bench", "--runs", "0"}, "at least 1"},
	} {
		var out, errb bytes.Buffer
		if code := Main(c.args, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errb.String(), c.msg)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "4K": 4 << 10, "4KiB": 4 << 10, "256MiB": 256 << 20, "2G": 2 << 30, "3GiB": 3 << 30} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "1.5M", "4KB", "-1x", "99999999999G"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}
