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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/exclude"
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
		fmt.Fprintf(stdout, "makuosan %s\n", replicator.Version)
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
		wc := watcher.DefaultConfig()
		wc.Base, wc.Quiet, wc.MaxDelay = cfg.Base, o.watchQuiet, o.watchMaxDelay
		wc.Exclude, _ = exclude.New(append(exclude.DefaultPatterns(), excludes...))
		wc.Ignore = node.IsEcho
		wc.Logger = logger.With("component", "watcher")
		if w, err = watcher.New(wc); err != nil {
			return configError{err}
		}
		err = metrics.RegisterWatcher(reg, func() metrics.WatcherStat {
			st := w.Stats()
			return metrics.WatcherStat{Events: st.Events, Batches: st.Batches, Overflows: st.Overflows, Rescans: st.Rescans,
				WatchErrors: st.WatchErrors, Watches: st.WatchesInUse, Pending: st.Pending}
		})
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}

	// Bind every listener before dropping privileges.
	var servers []*http.Server
	var listeners []net.Listener
	closeAll := func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}
	api := control.NewHandler(node, "")
	if o.socket != "" {
		_ = os.Remove(o.socket) // a stale socket from a crash
		ln, err := net.Listen("unix", o.socket)
		if err != nil {
			closeAll()
			return configError{fmt.Errorf("control socket: %w", err)}
		}
		if err := os.Chmod(o.socket, 0o660); err != nil {
			ln.Close()
			closeAll()
			return fmt.Errorf("control socket: %w", err)
		}
		// After -u/-g the socket belongs to the daemon's user and group:
		// they, and root, may use it.
		if ident.uid >= 0 || ident.gid >= 0 {
			if err := os.Chown(o.socket, ident.uid, ident.gid); err != nil {
				ln.Close()
				closeAll()
				return fmt.Errorf("control socket: %w", err)
			}
		}
		listeners = append(listeners, ln)
		servers = append(servers, &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second})
	}
	if !o.noListen {
		ln, err := net.Listen("tcp", controlAddr(o))
		if err != nil {
			closeAll()
			return configError{fmt.Errorf("control listener: %w", err)}
		}
		listeners = append(listeners, ln)
		servers = append(servers, &http.Server{Handler: control.NewHandler(node, password), ReadHeaderTimeout: 10 * time.Second})
	}
	if o.metrics != "" {
		ln, err := net.Listen("tcp", o.metrics)
		if err != nil {
			closeAll()
			return configError{fmt.Errorf("metrics listener: %w", err)}
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(reg))
		mux.Handle("/", control.StatusPage(node))
		if o.pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		listeners = append(listeners, ln)
		servers = append(servers, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
	}
	if err := dropPrivileges(ident); err != nil {
		closeAll()
		return configError{err}
	}
	if ident.changes() {
		// The index is saved there every minute from now on.
		if err := syscall.Access(cfg.StateDir, unix.W_OK|unix.X_OK); err != nil {
			closeAll()
			return configError{fmt.Errorf("--state-dir %s is not writable after -u/-g/-G (uid %d, gid %d): %w; chown it to that user", cfg.StateDir, os.Getuid(), os.Getgid(), err)}
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return node.Run(gctx) })
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
	for i, srv := range servers {
		ln := listeners[i]
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, srv := range servers {
			_ = srv.Shutdown(sctx)
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
