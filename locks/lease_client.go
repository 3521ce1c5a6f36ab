package locks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The client side of the lease protocol (lease.go): what `ipcflow lock`
// runs inside a stage.

// AcquireLease asks the lease server at socketPath for one unit of sem and
// waits for it until ctx ends. release gives the unit back; if the process
// dies first, the server gives it back when the kernel closes the
// connection. The connection is close-on-exec: a command started by the
// caller does not hold the lease.
func AcquireLease(ctx context.Context, socketPath, sem string) (release func() error, err error) {
	if strings.ContainsAny(sem, "\n") || sem == "" {
		return nil, fmt.Errorf("lease %q: bad semaphore name", sem)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
		return nil, fmt.Errorf("connect to %s: %w (%w)", socketPath, ErrNoLeaseServer, err)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to lease server: %w", err)
	}
	// A wait for the reply ends with ctx: closing tells the server to stop
	// waiting on our behalf.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	reply, err := func() (string, error) {
		_, werr := conn.Write([]byte("acquire " + sem + "\n"))
		// Even when the write failed, the server may have said why
		// before it hung up (a refusal comes before the request is read).
		line, err := bufio.NewReaderSize(conn, maxRequest).ReadString('\n')
		if werr != nil && !strings.HasSuffix(line, "\n") {
			return "", werr
		}
		return strings.TrimSuffix(line, "\n"), err
	}()
	if !stop() || ctx.Err() != nil {
		conn.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("lease %s: the lease server closed the connection (is the run ending?)", sem)
		}
		return nil, fmt.Errorf("lease %s: %w", sem, err)
	}
	switch {
	case reply == "ok":
		var once sync.Once
		var rerr error
		return func() error {
			once.Do(func() {
				// The server posts on "release" or on end of file,
				// whichever it sees first.
				conn.Write([]byte("release\n"))
				if err := conn.Close(); err != nil {
					rerr = fmt.Errorf("release lease %s: %w", sem, err)
				}
			})
			return rerr
		}, nil
	case strings.HasPrefix(reply, "unknown "):
		conn.Close()
		return nil, fmt.Errorf("lease %s: %w", sem, ErrUnknownSem)
	default:
		conn.Close()
		return nil, fmt.Errorf("lease %s: %s", sem, strings.TrimPrefix(reply, "error "))
	}
}
