package parser

import (
	"fmt"
	"strings"
)

// Label describes an edge's transport as the language writes it: the type
// and its options, such as "shm size=1MiB" or "socket tcp addr=:9000".
func (e *Edge) Label() string {
	parts := []string{string(e.Type)}
	o := e.Options
	if e.Type == Socket && o.Socket != "" && o.Socket != "unix" {
		parts = append(parts, o.Socket)
	}
	if o.Size > 0 {
		parts = append(parts, "size="+FormatSize(o.Size))
	}
	if o.MaxMsg > 0 {
		parts = append(parts, fmt.Sprintf("maxmsg=%d", o.MaxMsg))
	}
	if o.MsgSize > 0 {
		parts = append(parts, "msgsize="+FormatSize(o.MsgSize))
	}
	if o.Path != "" {
		parts = append(parts, "path="+o.Path)
	}
	if o.Addr != "" {
		parts = append(parts, "addr="+o.Addr)
	}
	for _, w := range e.Unexpanded {
		parts = append(parts, w.Name+"="+w.Text)
	}
	return strings.Join(parts, " ")
}

// FormatSize prints bytes with the largest binary unit that divides them
// exactly: 1048576 is "1MiB", 1500 is "1500".
func FormatSize(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.m && n%u.m == 0 {
			return fmt.Sprintf("%d%s", n/u.m, u.s)
		}
	}
	return fmt.Sprint(n)
}
