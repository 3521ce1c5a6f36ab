package parser

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
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

// edgeType resolves an arrow's type; an untyped arrow is a pipe.
func (r *resolver) edgeType(a *Arrow) (EdgeType, bool) {
	if !a.Typed {
		return Pipe, true
	}
	t := EdgeType(a.Type.Name)
	if _, ok := edgeOptions[t]; !ok {
		r.errorf(a.Type.Pos, "unknown edge type %q%s; expected one of %s", a.Type.Name,
			didYouMean(a.Type.Name, EdgeTypes()), strings.Join(EdgeTypes(), ", "))
		return "", false
	}
	return t, true
}

// options turns an arrow's options into values, reporting unknown options
// and bad values.
func (r *resolver) options(t EdgeType, a *Arrow) Options {
	var o Options
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
		var err error
		switch opt.Name {
		case "size":
			o.Size, err = ParseSize(opt.Value)
			if err == nil && (t == Pipe || t == FIFO) && o.Size > maxPipeSize {
				err = fmt.Errorf("%s buffer size %s is too large (at most %d bytes)", t, opt.Value, maxPipeSize)
			}
		case "path":
			if opt.Value == "" {
				err = fmt.Errorf("empty path")
			}
			o.Path = opt.Value
		case "maxmsg":
			var n int
			n, err = parseCount(opt.Value, "maxmsg", 1, maxMQMsgs)
			o.MaxMsg = int64(n)
		case "msgsize":
			o.MsgSize, err = ParseSize(opt.Value)
			if err == nil && o.MsgSize > maxMQMsg {
				err = fmt.Errorf("msgsize %s is too large (at most 16MiB)", opt.Value)
			}
		case "addr":
			err = checkAddr(opt.Value)
			o.Addr = opt.Value
		}
		if err != nil {
			r.errorf(opt.ValuePos, "%v", err)
		}
	}
	if t == Socket {
		if o.Socket == "" {
			o.Socket = "unix"
		}
		if o.Addr != "" && o.Socket == "unix" {
			r.errorf(seen["addr"], "addr is for socket tcp or udp, not unix")
		}
	}
	return o
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
