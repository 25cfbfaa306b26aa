package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/internal/version"
	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator"
	"github.com/makuo/makuo/replicator/control"
	"github.com/makuo/makuo/replicator/transport"
	"github.com/makuo/makuo/watcher"
)

// Exit codes, documented in the usage text.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

// configError marks errors that come from what the operator asked for, as
// opposed to runtime failures; they exit with exitConfig.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

func run(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, env, stdout)
	switch {
	case errors.Is(err, errHelp):
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "makuosan: %v\nTry 'makuosan -h' for help.\n", err)
		return exitConfig
	case o.version:
		fmt.Fprintln(stdout, version.Line("makuosan"))
		return exitOK
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, o, stderr); err != nil {
		fmt.Fprintf(stderr, "makuosan: %v\n", err)
		if _, ok := errors.AsType[configError](err); ok {
			return exitConfig
		}
		return exitFail
	}
	return exitOK
}

// serve builds the daemon from o and runs it until ctx ends.
func serve(ctx context.Context, o *options, stderr io.Writer) error {
	logger := newLogger(o, stderr)
	cfg := o.node
	if o.keyFile != "" {
		key, err := transport.ReadKey(o.keyFile)
		if err != nil {
			return configError{fmt.Errorf("-k: %w", err)}
		}
		cfg.Key = key
	}
	var password string
	if o.passwordFile != "" {
		p, err := readSecret(o.passwordFile)
		if err != nil {
			return configError{fmt.Errorf("-K: %w", err)}
		}
		password = p
	}
	ident, err := resolveIdentity(identitySpec{user: o.user, group: o.primaryGroup, groups: o.groups}, osAccounts{})
	if err != nil {
		return configError{err}
	}

	excludes := o.excludes
	for _, f := range o.excludeFrom {
		pats, err := exclude.ReadFile(f)
		if err != nil {
			return configError{fmt.Errorf("--exclude-from: %w", err)}
		}
		excludes = append(excludes, pats...)
	}
	if _, err := exclude.New(excludes); err != nil {
		return configError{err}
	}

	cfg.Excludes = append(exclude.DefaultPatterns(), excludes...)
	cfg.Watch = o.watch

	reg := prometheus.NewRegistry()
	met := metrics.New(reg, replicator.Version)
	node, err := replicator.New(cfg, logger, met)
	if err != nil {
		return configError{err}
	}
	if err := metrics.RegisterMembers(reg, node.MemberStats); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	var w *watcher.Watcher
	if o.watch {
		if w, err = newWatcher(o, cfg.Base, excludes, node, reg, logger); err != nil {
			return err
		}
	}

	// Bind every listener before dropping privileges.
	listeners, err := bindListeners(o, node, reg, password, ident)
	if err != nil {
		return err
	}
	closeAll := func() {
		for _, l := range listeners {
			l.ln.Close()
		}
	}
	sd := newNotifier(os.Getenv, logger) // systemd's notify socket, connected before the identity switch
	defer sd.close()
	if err := switchIdentity(ident, cfg.StateDir); err != nil {
		closeAll()
		return configError{err}
	}

	if cfg.Key == nil {
		logger.Warn(noKeyWarning(cfg))
	}
	// READY=1: the node has no readiness signal of its own, but by now
	// replicator.New has bound the multicast socket and joined the group, and
	// every control and metrics listener is bound (connections wait in their
	// backlog until Serve below), so systemd may start units ordered after us.
	sd.ready()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return node.Run(gctx) })
	g.Go(func() error { return sd.run(gctx, node) })
	if w != nil {
		batches := make(chan watcher.Batch)
		changes := make(chan replicator.WatchBatch)
		g.Go(func() error { return w.Run(gctx, batches) })
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case b := <-batches:
					select {
					case changes <- replicator.WatchBatch{Paths: b.Paths, Rescan: b.Rescan}:
					case <-gctx.Done():
						return nil
					}
				}
			}
		})
		g.Go(func() error { return node.WatchLoop(gctx, changes, excludes) })
	}
	for _, l := range listeners {
		g.Go(func() error {
			if err := l.srv.Serve(l.ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", l.ln.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, l := range listeners {
			_ = l.srv.Shutdown(sctx)
		}
		return nil
	})
	err = g.Wait()
	if o.socket != "" {
		_ = os.Remove(o.socket)
	}
	logger.Info("stopped")
	return err
}

// newWatcher builds the -w watcher of base and registers its metrics.
func newWatcher(o *options, base string, excludes []string, node *replicator.Node, reg *prometheus.Registry, logger *slog.Logger) (*watcher.Watcher, error) {
	wc := watcher.DefaultConfig()
	wc.Base, wc.Quiet, wc.MaxDelay = base, o.watchQuiet, o.watchMaxDelay
	wc.Exclude, _ = exclude.New(append(exclude.DefaultPatterns(), excludes...))
	wc.Ignore = node.IsEcho
	wc.Logger = logger.With("component", "watcher")
	w, err := watcher.New(wc)
	if err != nil {
		return nil, configError{err}
	}
	err = metrics.RegisterWatcher(reg, func() metrics.WatcherStat {
		st := w.Stats()
		return metrics.WatcherStat{Events: st.Events, Batches: st.Batches, Overflows: st.Overflows, Rescans: st.Rescans,
			WatchErrors: st.WatchErrors, Watches: st.WatchesInUse, Pending: st.Pending}
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return w, nil
}

// listener is a bound socket and the server that is to serve it.
type listener struct {
	ln  net.Listener
	srv *http.Server
}

// bindListeners binds the control socket (-U), the control listener (-l)
// and the metrics listener; on an error it closes what it had bound.
func bindListeners(o *options, node *replicator.Node, reg *prometheus.Registry, password string, ident identity) (_ []listener, err error) {
	var ls []listener
	defer func() {
		if err != nil {
			for _, l := range ls {
				l.ln.Close()
			}
		}
	}()
	add := func(ln net.Listener, h http.Handler) {
		ls = append(ls, listener{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}})
	}
	if o.socket != "" {
		ln, err := listenUnix(o.socket, ident)
		if err != nil {
			return nil, err
		}
		add(ln, control.NewHandler(node, ""))
	}
	if !o.noListen {
		ln, err := net.Listen("tcp", controlAddr(o))
		if err != nil {
			return nil, configError{fmt.Errorf("control listener: %w", err)}
		}
		add(ln, control.NewHandler(node, password))
	}
	if o.metrics != "" {
		ln, err := net.Listen("tcp", o.metrics)
		if err != nil {
			return nil, configError{fmt.Errorf("metrics listener: %w", err)}
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(reg))
		mux.Handle("/", control.StatusPage(node))
		if o.pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		add(ln, mux)
	}
	return ls, nil
}

// listenUnix serves control on a unix socket of mode 0660. After -u/-g it
// belongs to the daemon's user and group: they, and root, may use it.
func listenUnix(path string, ident identity) (net.Listener, error) {
	_ = os.Remove(path) // a stale socket from a crash
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, configError{fmt.Errorf("control socket: %w", err)}
	}
	err = os.Chmod(path, 0o660)
	if err == nil && (ident.uid >= 0 || ident.gid >= 0) {
		err = os.Chown(path, ident.uid, ident.gid)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// noKeyWarning says what running without -k exposes, in the start-up log:
// before, only sealed=false in "node started" told.
func noKeyWarning(cfg replicator.Config) string {
	who := "any host on the network segment"
	if cfg.TTL > 1 {
		who = "any host that can reach the multicast group"
	}
	base := cfg.Base
	if abs, err := filepath.Abs(base); err == nil {
		base = abs
	}
	return fmt.Sprintf("no group key (-k): %s can push, overwrite and delete files under %s on every member, and read what is pushed; use -k FILE", who, base)
}

func newLogger(o *options, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if o.debug > 0 {
		opts.Level = slog.LevelDebug
	}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
