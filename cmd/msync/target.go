package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/makuo/makuo/replicator/control"
)

// defaultTargets are tried in order when neither -c nor $MSYNC_TARGET
// names the daemon: the packaged daemon's socket first, then the TCP
// listener that the original makuosan and msync defaulted to, so that a
// plain `msync -r` finds the daemon whichever it listens on.
func defaultTargets() []string {
	return []string{"unix:" + control.DefaultSocket, control.DefaultTarget}
}

// probeTimeout bounds each attempt to reach a default target: both are
// local, so only a daemon too busy to accept would take that long.
const probeTimeout = 5 * time.Second

// normalizeTarget accepts what the original msync accepted for -c and
// $MSYNC_TARGET: besides unix:PATH and tcp:HOST:PORT, a bare socket path.
// A value is taken for one when it contains a '/' or ends in ".sock" and
// is not HOST:PORT; anything else is refused, as it would otherwise dial
// something the user did not mean.
func normalizeTarget(t string) (string, error) {
	if !strings.HasPrefix(t, "unix:") && !strings.HasPrefix(t, "tcp:") && isSocketPath(t) {
		t = "unix:" + t
	}
	if _, _, err := control.ParseTarget(t); err != nil {
		return "", fmt.Errorf("%w (or a socket path, with a '/' or ending in .sock)", err)
	}
	return t, nil
}

func isSocketPath(s string) bool {
	if !strings.Contains(s, "/") && !strings.HasSuffix(s, ".sock") {
		return false
	}
	host, port, err := net.SplitHostPort(s)
	return err != nil || strings.Contains(host, "/") || strings.Trim(port, "0123456789") != ""
}

// findDaemon returns the first of targets that accepts a connection. When
// none does, the error names every target and why it failed.
func findDaemon(ctx context.Context, targets []string) (string, error) {
	var errs []string
	for _, t := range targets {
		network, addr, err := control.ParseTarget(t)
		if err != nil {
			return "", err
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		var d net.Dialer
		conn, err := d.DialContext(pctx, network, addr)
		cancel()
		if err == nil {
			conn.Close()
			return t, nil
		}
		if oe, ok := errors.AsType[*net.OpError](err); ok {
			err = oe.Err
		}
		errs = append(errs, fmt.Sprintf("%s: %v", t, err))
	}
	return "", fmt.Errorf("no makuosan found (%s); name it with -c TARGET", strings.Join(errs, "; "))
}
