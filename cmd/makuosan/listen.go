package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator"
	"github.com/makuo/makuo/replicator/control"
)

// socketMode lets the socket's owner and group connect, nobody else (and
// root, whatever the mode).
const socketMode = 0o660

// defaultSocketGroup owns the control socket when neither --socket-group
// nor -g names one and the group exists: the Debian package creates it,
// and its members may use msync.
const defaultSocketGroup = "makuosan"

// listeners are the daemon's bound HTTP sockets: control on the unix
// socket and on TCP, and metrics; a nil one was not asked for.
type listeners struct {
	unix, tcp, metrics net.Listener
	servers            []*http.Server // once serve attached the handlers
}

// bindListeners binds what o asks for, before the node exists (so the
// first log line can say where the daemon listens) and before the
// privilege drop; on an error it closes what it had bound.
func bindListeners(o *options, ident identity, db accountDB) (_ *listeners, err error) {
	ls := &listeners{}
	defer func() {
		if err != nil {
			ls.close()
		}
	}()
	if path := o.controlSocket(); path != "" {
		gid, err := socketGroup(o, ident, db)
		if err != nil {
			return nil, configError{err}
		}
		if ls.unix, err = listenUnix(path, ident.uid, gid); err != nil {
			return nil, err
		}
	}
	if addr := o.controlTCP(); addr != "" {
		if ls.tcp, err = net.Listen("tcp", addr); err != nil {
			return nil, configError{fmt.Errorf("control listener: %w", err)}
		}
	}
	if o.metrics != "" {
		if ls.metrics, err = net.Listen("tcp", o.metrics); err != nil {
			return nil, configError{fmt.Errorf("metrics listener: %w", err)}
		}
	}
	return ls, nil
}

// attach gives every bound listener its server: the control API over the
// node (the password on TCP only: the socket is guarded by its mode), and
// on the metrics listener /metrics, the probes and the status page.
func (ls *listeners) attach(o *options, node *replicator.Node, reg *prometheus.Registry, password string) {
	add := func(h http.Handler) {
		ls.servers = append(ls.servers, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
	}
	if ls.unix != nil {
		add(control.NewHandler(node, ""))
	}
	if ls.tcp != nil {
		add(control.NewHandler(node, password))
	}
	if ls.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(reg))
		mux.Handle("/healthz", control.Healthz())
		mux.Handle("/readyz", control.Readyz(node.Ready))
		mux.Handle("/", control.StatusPage(node))
		if o.pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		add(mux)
	}
}

// bound lists the bound listeners in the order of attach's servers.
func (ls *listeners) bound() []net.Listener {
	var out []net.Listener
	for _, l := range []net.Listener{ls.unix, ls.tcp, ls.metrics} {
		if l != nil {
			out = append(out, l)
		}
	}
	return out
}

// close closes every bound listener; a unix socket's file goes with it.
func (ls *listeners) close() {
	for _, l := range ls.bound() {
		l.Close()
	}
}

// addr names a listener for the log: its address, or "off".
func addr(l net.Listener) string {
	if l == nil {
		return "off"
	}
	return l.Addr().String()
}

// socketGroup is the group the control socket is given: --socket-group,
// else -g, else the group makuosan if the system has it, else the
// daemon's own (root's, or the -u user's primary group).
func socketGroup(o *options, ident identity, db accountDB) (int, error) {
	switch {
	case o.socketGroup != "":
		gid, err := resolveGroup(db, o.socketGroup)
		if err != nil {
			return 0, fmt.Errorf("--socket-group %s: %w", o.socketGroup, err)
		}
		return gid, nil
	case o.primaryGroup != "":
		return ident.gid, nil
	}
	gid, err := db.groupByName(defaultSocketGroup)
	switch {
	case err == nil:
		return gid, nil
	case !errors.Is(err, errNoEntry):
		return 0, fmt.Errorf("control socket: group %s: %w", defaultSocketGroup, err)
	case ident.gid >= 0:
		return ident.gid, nil
	}
	return os.Getegid(), nil
}

// listenUnix serves control on a unix socket of mode 0660 owned by uid
// (-1: the daemon's) and gid. The default socket's directory is created
// if missing (outside systemd, which makes it); a socket left by a daemon
// that died is replaced, but not one a daemon still answers on, nor a
// file that is not a socket.
func listenUnix(path string, uid, gid int) (net.Listener, error) {
	if path == control.DefaultSocket {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, configError{fmt.Errorf("control socket: %w (give another with -U PATH, or -o)", err)}
		}
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode().Type() != fs.ModeSocket:
		return nil, configError{fmt.Errorf("control socket %s: exists and is not a socket", path)}
	case err == nil:
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, configError{fmt.Errorf("control socket %s: another makuosan serves it", path)}
		}
		_ = os.Remove(path) // left by a crash
	case !errors.Is(err, fs.ErrNotExist):
		return nil, configError{fmt.Errorf("control socket: %w", err)}
	}
	// Created 0600 whatever the umask, so that no one else may connect
	// before the chmod and chown; no other goroutine creates files yet.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, configError{fmt.Errorf("control socket: %w", err)}
	}
	if err = os.Chmod(path, socketMode); err == nil {
		err = os.Chown(path, uid, gid)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}
