package main

import (
	"context"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/makuo/makuo/replicator/control"
)

// sdNotifier speaks systemd's notify protocol (sd_notify(3)) for the unit's
// Type=notify and WatchdogSec=: one datagram per state change, sent to the
// unix socket named by $NOTIFY_SOCKET. Outside systemd (no $NOTIFY_SOCKET)
// every method does nothing. A failed send is logged, never fatal: the
// daemon serves the group whether or not systemd hears it.
type sdNotifier struct {
	conn     *net.UnixConn // nil: not under a notify-type service
	interval time.Duration // keepalive period, half of $WATCHDOG_USEC; 0: no watchdog
	log      *slog.Logger
}

// newNotifier connects to $NOTIFY_SOCKET. It must run before a chroot (-c):
// the connected socket keeps working inside it, the path would not.
func newNotifier(getenv func(string) string, logger *slog.Logger) *sdNotifier {
	n := &sdNotifier{log: logger.With("component", "sd_notify")}
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return n
	}
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		n.log.Warn("NOTIFY_SOCKET is neither a path nor an abstract socket: systemd will not hear readiness", "socket", path)
		return n
	}
	// Go maps a leading "@" to the abstract namespace, as systemd means it.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		n.log.Warn("cannot reach systemd: it will not hear readiness", "socket", path, "err", err)
		return n
	}
	n.conn = conn
	n.interval = watchdogInterval(getenv, os.Getpid(), n.log)
	return n
}

// ready tells systemd the daemon is up (READY=1).
func (n *sdNotifier) ready() { n.send("READY=1") }

// statusReporter is what the watchdog asks before each keepalive: the
// node's Status (control.Backend).
type statusReporter interface {
	Status(context.Context) (control.Status, error)
}

// run sends a WATCHDOG=1 keepalive every interval while node answers its
// status query, and STOPPING=1 once ctx ends. A wedged node stops the
// keepalives, so systemd's watchdog restarts the daemon.
func (n *sdNotifier) run(ctx context.Context, node statusReporter) error {
	if n.conn == nil {
		return nil
	}
	defer n.send("STOPPING=1")
	if n.interval <= 0 {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(n.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if _, err := node.Status(ctx); err != nil {
				n.log.Warn("health check failed: no watchdog keepalive", "err", err)
				continue
			}
			n.send("WATCHDOG=1")
		}
	}
}

// close releases the socket; the notifier is a no-op afterwards.
func (n *sdNotifier) close() {
	if n.conn != nil {
		n.conn.Close()
		n.conn = nil
	}
}

func (n *sdNotifier) send(state string) {
	if n.conn == nil {
		return
	}
	if _, err := n.conn.Write([]byte(state)); err != nil {
		n.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// watchdogInterval is half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
// advises, or 0 when the watchdog is off or meant for another process.
func watchdogInterval(getenv func(string) string, pid int, log *slog.Logger) time.Duration {
	usec := getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return 0
	}
	us, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || us <= 0 || us > math.MaxInt64/int64(time.Microsecond) {
		log.Warn("ignoring WATCHDOG_USEC, not a positive number of microseconds: no watchdog keepalives", "value", usec)
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}
