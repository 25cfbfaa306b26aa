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
	"os/user"
	"strconv"
	"strings"
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
	creds, err := lookupCredentials(o.user, o.primaryGroup, o.groups)
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

	// Bind every listener before dropping privileges or chrooting.
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
	sd := newNotifier(os.Getenv, logger) // systemd's notify socket, connected before the chroot
	defer sd.close()
	if o.chroot {
		if err := syscall.Chroot(cfg.Base); err != nil {
			closeAll()
			return configError{fmt.Errorf("chroot %s: %w", cfg.Base, err)}
		}
		if err := os.Chdir("/"); err != nil {
			closeAll()
			return fmt.Errorf("chdir after chroot: %w", err)
		}
	}
	if err := creds.apply(); err != nil {
		closeAll()
		return configError{err}
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

// credentials are the ids to switch to after start-up (-u, -g, -G).
type credentials struct {
	uid, gid int
	groups   []int
	set      bool
}

func lookupCredentials(userName, groupName, groups string) (credentials, error) {
	c := credentials{uid: -1, gid: -1}
	if userName == "" && groupName == "" && groups == "" {
		return c, nil
	}
	c.set = true
	if userName != "" {
		u, err := lookupUser(userName)
		if err != nil {
			return c, fmt.Errorf("-u %s: %w", userName, err)
		}
		c.uid, c.gid = u.uid, u.gid
	}
	if groupName != "" {
		gid, err := lookupGroup(groupName)
		if err != nil {
			return c, fmt.Errorf("-g %s: %w", groupName, err)
		}
		c.gid = gid
	}
	for g := range strings.SplitSeq(groups, ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		gid, err := lookupGroup(g)
		if err != nil {
			return c, fmt.Errorf("-G %s: %w", g, err)
		}
		c.groups = append(c.groups, gid)
	}
	return c, nil
}

// apply switches ids: groups first, since setuid takes away the right to.
func (c credentials) apply() error {
	if !c.set {
		return nil
	}
	if c.groups != nil || c.gid >= 0 {
		if err := syscall.Setgroups(c.groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if c.gid >= 0 {
		if err := syscall.Setgid(c.gid); err != nil {
			return fmt.Errorf("setgid %d: %w", c.gid, err)
		}
	}
	if c.uid >= 0 {
		if err := syscall.Setuid(c.uid); err != nil {
			return fmt.Errorf("setuid %d: %w", c.uid, err)
		}
	}
	return nil
}

type userIDs struct{ uid, gid int }

func lookupUser(name string) (userIDs, error) {
	if id, err := strconv.Atoi(name); err == nil {
		return userIDs{uid: id, gid: -1}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return userIDs{}, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return userIDs{uid: uid, gid: gid}, nil
}

func lookupGroup(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}
