package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
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

func exitCode(err error) int {
	if _, ok := errors.AsType[configError](err); ok {
		return exitConfig
	}
	return exitFail
}

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
	case o.genKey != "":
		if err := genKey(o.genKey, stderr); err != nil {
			fmt.Fprintf(stderr, "makuosan: %v\n", err)
			return exitCode(err)
		}
		return exitOK
	}
	child := childReport(env)
	// Configuration errors first, before detaching (the parent checks, the
	// child again) and whatever the log: they say what to fix.
	s, err := prepare(o)
	if err == nil && detaches(o, env) {
		return detach(o, args, env, stderr) // Ctrl-C still stops the wait
	}
	// Installed before anything is bound, so that no signal meant as a
	// clean stop kills the daemon on the way up; serve handles them.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	var logs *logOutput
	if err == nil {
		var warning string
		logs, warning, err = openLog(o, stderr, child != nil, syslogDaemon)
		if warning != "" {
			child.warn(warning)
		}
	}
	if err == nil {
		defer logs.close()
		err = serve(ctx, o, s, logs, sigs, func() {
			if child != nil {
				child.ready()
			}
		})
	}
	if err == nil {
		return exitOK
	}
	if logs != nil {
		logs.flush() // the log up to here, before the error that ends it
	}
	switch {
	case child.pending():
		child.failed(err)
	case child != nil:
		// Started and detached: stderr is /dev/null, the log is all.
	default:
		fmt.Fprintf(stderr, "makuosan: %v\n", err)
	}
	if logs != nil && logs.separate {
		logs.logger.Error("makuosan stopped on an error", "err", err)
	}
	return exitCode(err)
}

// setup is what serve reads and checks before it binds anything.
type setup struct {
	cfg      replicator.Config
	password string
	ident    identity
	excludes []string // the operator's, without the defaults
	warnings []string
}

// prepare checks the configuration, reads the key, password and exclude
// files and resolves the identity to switch to.
func prepare(o *options) (*setup, error) {
	s := &setup{cfg: o.node}
	// replicator.New validates again; here, before anything is bound.
	if err := s.cfg.Validate(); err != nil {
		return nil, configError{err}
	}
	keys, warnings, err := readKeys(o.keyFiles)
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		s.cfg.Key, s.cfg.OldKeys = keys[0], keys[1:]
	}
	s.warnings = warnings
	if w := linkLocalWarning(s.cfg); w != "" {
		s.warnings = append(s.warnings, w)
	}
	if o.passwordFile != "" {
		if s.password, err = readSecret(o.passwordFile); err != nil {
			return nil, configError{fmt.Errorf("-K: %w", err)}
		}
		if w := secretWarning("password", o.passwordFile); w != "" {
			s.warnings = append(s.warnings, w)
		}
	}
	if s.ident, err = resolveIdentity(identitySpec{user: o.user, group: o.primaryGroup, groups: o.groups}, osAccounts{}); err != nil {
		return nil, configError{err}
	}
	s.excludes = o.excludes
	for _, f := range o.excludeFrom {
		pats, err := exclude.ReadFile(f)
		if err != nil {
			return nil, configError{fmt.Errorf("--exclude-from: %w", err)}
		}
		s.excludes = append(s.excludes, pats...)
	}
	if _, err := exclude.New(s.excludes); err != nil {
		return nil, configError{err}
	}
	s.cfg.Excludes = append(exclude.DefaultPatterns(), s.excludes...)
	s.cfg.Watch = o.watch
	return s, nil
}

// serve builds the daemon from o and s and runs it until ctx ends or a stop
// signal arrives on sigs; started is called once it serves.
func serve(ctx context.Context, o *options, s *setup, logs *logOutput, sigs <-chan os.Signal, started func()) error {
	logger := logs.logger
	var coreLimit uint64
	if o.core {
		var err error
		if coreLimit, err = enableCore(); err != nil {
			return err
		}
	}
	cfg := s.cfg

	// Bind every listener before dropping privileges.
	ls, err := bindListeners(o, s.ident, osAccounts{})
	if err != nil {
		return err
	}
	defer ls.close()
	base, _ := filepath.Abs(cfg.Base)
	logger.Info("makuosan starting", "version", version.Release, "pid", os.Getpid(), "base", base,
		"control_socket", addr(ls.unix), "control_tcp", addr(ls.tcp), "tcp_password", s.password != "",
		"metrics", addr(ls.metrics), "group", groupString(cfg), "interface", cfg.Interface, "sealed", cfg.Key != nil, "old_keys", len(cfg.OldKeys))
	for _, w := range s.warnings {
		logger.Warn(w)
	}
	if o.core {
		logger.Info("core dumps enabled (-C)", "rlimit_core", coreLimitString(coreLimit))
	}

	reg := prometheus.NewRegistry()
	met := metrics.New(reg, replicator.Version)
	node, err := replicator.New(cfg, logger, met)
	if err != nil {
		return configError{err}
	}
	if err := metrics.RegisterMembers(reg, node.MemberStats); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	ls.attach(o, node, reg, s.password)
	var w *watcher.Watcher
	if o.watch {
		if w, err = newWatcher(o, cfg.Base, s.excludes, node, reg, logger); err != nil {
			return err
		}
	}
	if o.pidFile != "" {
		if err := writePidFile(o.pidFile); err != nil {
			return err
		}
		defer removePidFile(o.pidFile)
	}
	sd := newNotifier(os.Getenv, logger) // systemd's notify socket, connected before the identity switch
	defer sd.close()
	if err := switchIdentity(s.ident, cfg.StateDir); err != nil {
		return configError{err}
	}
	if o.core && s.ident.changes() {
		if err := keepDumpable(); err != nil {
			return err
		}
	}
	if cfg.Key == nil {
		logger.Warn(noKeyWarning(cfg))
	}
	// READY=1: the node has no readiness signal of its own, but by now
	// replicator.New has bound the multicast socket and joined the group, and
	// every control and metrics listener is bound (connections wait in their
	// backlog until Serve below), so systemd may start units ordered after us.
	sd.ready()
	started()
	err = runServices(ctx, node, w, ls, sd, s.excludes, logs, sigs)
	logger.Info("stopped")
	return err
}

// runServices runs the node, the watcher and the servers until ctx ends, a
// stop signal arrives or one of them fails. SIGUSR1 and SIGUSR2 step the
// log level meanwhile.
func runServices(ctx context.Context, node *replicator.Node, w *watcher.Watcher, ls *listeners, sd *sdNotifier,
	excludes []string, logs *logOutput, sigs <-chan os.Signal) error {
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(sctx)
	var changes chan replicator.WatchBatch
	if w != nil {
		changes = make(chan replicator.WatchBatch)
		node.Watch(changes, excludes) // the node's Run owns the loop that pushes them
	}
	g.Go(func() error { return node.Run(gctx) })
	g.Go(func() error { return sd.run(gctx, node) })
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case sig := <-sigs:
				switch sig {
				case syscall.SIGUSR1, syscall.SIGUSR2:
					l := stepLevel(logs.level, sig == syscall.SIGUSR1)
					logs.logger.Log(gctx, l, "log level changed", "log_level", l.String(), "signal", sig.String())
				default:
					logs.logger.Info("shutting down", "signal", sig.String())
					stop()
					return nil
				}
			}
		}
	})
	if w != nil {
		batches := make(chan watcher.Batch)
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
	}
	for i, ln := range ls.bound() {
		srv := ls.servers[i]
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
		for _, srv := range ls.servers {
			_ = srv.Shutdown(sctx)
		}
		return nil
	})
	return g.Wait()
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

// groupString says where the daemon's datagrams go, for the start-up log.
func groupString(cfg replicator.Config) string {
	g := netip.AddrPortFrom(cfg.Group, uint16(cfg.Port)).String()
	switch {
	case !cfg.Unicast():
		return g
	case cfg.Mixed:
		return g + " and unicast peers"
	}
	return fmt.Sprintf("unicast peers, port %d", cfg.Port)
}

// noKeyWarning says what running without -k exposes, in the start-up log:
// before, only sealed=false in "node started" told.
func noKeyWarning(cfg replicator.Config) string {
	who := "any host on the network segment"
	switch {
	case cfg.Unicast():
		who = fmt.Sprintf("any host that can reach UDP port %d of this member", cfg.Port)
	case cfg.TTL > 1 && !transport.LinkLocalGroup(cfg.Group):
		who = "any host that can reach the multicast group"
	}
	base := cfg.Base
	if abs, err := filepath.Abs(base); err == nil {
		base = abs
	}
	return fmt.Sprintf("no group key (-k): %s can push, overwrite and delete files under %s on every member, and read what is pushed; use -k FILE", who, base)
}

// linkLocalWarning says, for a link-local group with --ttl above 1, that
// the TTL buys nothing and what to use to span routed segments instead.
func linkLocalWarning(cfg replicator.Config) string {
	if cfg.TTL <= 1 || !cfg.Multicast() || !transport.LinkLocalGroup(cfg.Group) {
		return ""
	}
	block, scoped := "224.0.0.0/24", "an administratively scoped group (239.192.0.0/14, e.g. -m 239.192.0.108)"
	if cfg.Group.Is6() {
		block, scoped = "ffx2::/16", "a site- or organization-local group (ff05::/16 or ff08::/16, e.g. -m ff05::108)"
	}
	return fmt.Sprintf("multicast group %v is link-local (%s): routers never forward it, so --ttl %d reaches this segment only; "+
		"to span routed segments use %s and a multicast router", cfg.Group, block, cfg.TTL, scoped)
}
