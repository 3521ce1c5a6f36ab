package parser

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// edgeOptions lists, per edge type, the NAME=VALUE options it takes. A type
// missing here is unknown.
var edgeOptions = map[EdgeType][]string{
	Pipe:   {"size"},
	FIFO:   {"path", "size"},
	MQ:     {"maxmsg", "msgsize"},
	SHM:    {"size"},
	MMap:   {"path", "size"},
	Socket: {"addr"},
}

// Limits of option values. A pipe's size goes to fcntl(F_SETPIPE_SZ) as a C
// int; a message queue's limits are Linux's hard ones (HARD_MSGMAX,
// HARD_MSGSIZEMAX in ipc/mqueue.c).
const (
	maxPipeSize = 1<<31 - 1
	maxMQMsgs   = 65536
	maxMQMsg    = 16 << 20
)

// EdgeTypes returns the edge type words of the language, sorted.
func EdgeTypes() []string {
	var ts []string
	for t := range edgeOptions {
		ts = append(ts, string(t))
	}
	sort.Strings(ts)
	return ts
}

// socketKinds are the first words of a socket edge (SPEC 4), which people
// write as the type itself: -[tcp]-> for -[socket tcp]->.
var socketKinds = map[string]bool{"unix": true, "tcp": true, "udp": true}

// edgeType resolves an arrow's type; an untyped arrow is a pipe.
func (r *resolver) edgeType(a *Arrow) (EdgeType, bool) {
	if !a.Typed {
		return Pipe, true
	}
	t := EdgeType(a.Type.Name)
	if _, ok := edgeOptions[t]; !ok {
		hint := didYouMean(a.Type.Name, EdgeTypes())
		if socketKinds[a.Type.Name] {
			hint = fmt.Sprintf(" (did you mean \"-[socket %s]->\"?)", a.Type.Name)
		}
		r.errorf(a.Type.Pos, "unknown edge type %q%s; expected one of %s", a.Type.Name,
			hint, strings.Join(EdgeTypes(), ", "))
		return "", false
	}
	return t, true
}

// options turns an arrow's options into values, reporting unknown options
// and bad values. Values that hold an expansion are returned unexpanded,
// for run to expand and check.
func (r *resolver) options(t EdgeType, a *Arrow) (Options, []OptionWord) {
	var o Options
	var later []OptionWord
	seen := map[string]Pos{}
	allowed := edgeOptions[t]
	for _, opt := range a.Options {
		if opt.Name == "" {
			if t != Socket {
				r.errorf(opt.Pos, "expected an option NAME=VALUE for %s, found '%s'", t, opt.Raw)
				continue
			}
			switch opt.Value {
			case "unix", "tcp", "udp":
			default:
				r.errorf(opt.Pos, "unknown socket kind %q%s; expected unix, tcp or udp",
					opt.Value, didYouMean(opt.Value, []string{"unix", "tcp", "udp"}))
				continue
			}
			if o.Socket != "" {
				r.errorf(opt.Pos, "socket kind given twice (%s, then %s)", o.Socket, opt.Value)
				continue
			}
			o.Socket = opt.Value
			continue
		}
		if !contains(allowed, opt.Name) {
			r.errorf(opt.Pos, "unknown option %q for %s%s; %s takes %s", opt.Name, t,
				didYouMean(opt.Name, allowed), t, strings.Join(allowed, ", "))
			continue
		}
		if p, dup := seen[opt.Name]; dup {
			r.errorf(opt.Pos, "option %s given twice (first at %s)", opt.Name, p)
			continue
		}
		seen[opt.Name] = opt.Pos
		if opt.Word == nil {
			continue // its syntax error is reported
		}
		v, ok := LiteralWord(opt.Word)
		if !ok {
			later = append(later, OptionWord{Name: opt.Name, Word: opt.Word, Text: opt.Raw, Pos: opt.ValuePos})
			continue
		}
		if err := o.Set(t, opt.Name, v); err != nil {
			r.errorf(opt.ValuePos, "%v", err)
		}
	}
	if t == Socket {
		if o.Socket == "" {
			o.Socket = "unix"
		}
		if p, ok := seen["addr"]; ok && o.Socket == "unix" {
			r.errorf(p, "addr is for socket tcp or udp, not unix")
		}
	}
	return o, later
}

// Set checks v as the value of option name of an edge of type t and sets
// it: the parser does so for a value written out, run for one known only
// once expanded (size=$SZ). name is one that t takes.
func (o *Options) Set(t EdgeType, name, v string) error {
	var err error
	switch name {
	case "size":
		o.Size, err = ParseSize(v)
		if err == nil && (t == Pipe || t == FIFO) && o.Size > maxPipeSize {
			err = fmt.Errorf("%s buffer size %s is too large (at most %d bytes)", t, v, maxPipeSize)
		}
		if err == nil && t == SHM && o.Size > 0 && o.Size < 4096 {
			// As run says (channels' checkShm): the ring is pages.
			err = fmt.Errorf("shm size %d is below one page (4096)", o.Size)
		}
	case "path":
		if v == "" {
			err = fmt.Errorf("empty path")
		}
		o.Path = v
	case "maxmsg":
		var n int
		n, err = parseCount(v, "maxmsg", 1, maxMQMsgs)
		o.MaxMsg = int64(n)
	case "msgsize":
		o.MsgSize, err = ParseSize(v)
		if err == nil && o.MsgSize > maxMQMsg {
			err = fmt.Errorf("msgsize %s is too large (at most 16MiB)", v)
		}
		if err == nil && o.MsgSize == 1 {
			// As run says (budget.CheckMQ): a message's framing byte.
			err = fmt.Errorf("mq msgsize %d: must be at least 2 (each message has one byte of framing)", o.MsgSize)
		}
	case "addr":
		err = checkAddr(v)
		o.Addr = v
	default:
		err = fmt.Errorf("unknown option %q for %s", name, t)
	}
	return err
}

// LiteralWord returns the value of a word that needs no expansion:
// unquoted text, '…' and "…" holding no $ or backquote, with the quotes
// and backslashes removed as the shell removes them. ok is false for a
// word with a parameter, arithmetic, a ~ (tilde expansion), $'…' or $"…":
// run expands those with the params, as it expands param values.
func LiteralWord(w *syntax.Word) (v string, ok bool) {
	var b strings.Builder
	for _, part := range w.Parts {
		switch x := part.(type) {
		case *syntax.Lit:
			if strings.Contains(x.Value, "~") {
				return "", false
			}
			unescape(&b, x.Value, "")
		case *syntax.SglQuoted:
			if x.Dollar {
				return "", false
			}
			b.WriteString(x.Value)
		case *syntax.DblQuoted:
			if x.Dollar {
				return "", false
			}
			for _, q := range x.Parts {
				lit, isLit := q.(*syntax.Lit)
				if !isLit {
					return "", false
				}
				unescape(&b, lit.Value, "$`\"\\\n")
			}
		default:
			return "", false
		}
	}
	return b.String(), true
}

// unescape writes s with its backslashes removed as the shell removes
// them: before any byte unquoted (special ""), only before the bytes of
// special inside double quotes. A backslash and newline vanish.
func unescape(b *strings.Builder, s, special string) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && (special == "" || strings.IndexByte(special, s[i+1]) >= 0) {
			i++
			if s[i] == '\n' {
				continue
			}
		}
		b.WriteByte(s[i])
	}
}

// checkAddr validates host:port.
func checkAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("bad addr %q: expected HOST:PORT", s)
	}
	_ = host
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port %q in addr: expected 0 to 65535", port)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
