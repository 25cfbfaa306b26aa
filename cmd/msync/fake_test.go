package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/makuo/makuo/replicator/control"
)

// fakeConfig describes a fake makuosan for the scripts (JSON in the
// script's archive). Zero fields take the defaults of newFake.
type fakeConfig struct {
	// Members are the members the daemon knows, itself included (Self).
	Members []control.Member `json:"members"`
	// Base is the base directory, relative to $WORK.
	Base string `json:"base"`
	// Fail names members that fail a push as a whole, with the reason.
	Fail map[string]string `json:"fail"`
	// Unchanged paths are reported as "same" to a verbose push.
	Unchanged []string `json:"unchanged"`
	// Differs are the paths a check finds different (on every member);
	// every other path checked is equal.
	Differs []string `json:"differs"`
	// PayloadBytes is what every push reports as sent.
	PayloadBytes uint64 `json:"payload_bytes"`
	// Password, when set, is required on every request.
	Password string `json:"password"`
}

// fakeDaemon is a control.Backend and control.Pusher that answers from its
// config and appends every push request it gets, as one JSON line, to its
// log file, so that scripts can compare what msync asked for.
type fakeDaemon struct {
	cfg fakeConfig
	log string

	mu sync.Mutex // serialises appends to log
}

var (
	_ control.Backend = (*fakeDaemon)(nil)
	_ control.Pusher  = (*fakeDaemon)(nil)
)

func (f *fakeDaemon) Members(context.Context) ([]control.Member, error) { return f.cfg.Members, nil }

func (f *fakeDaemon) Status(context.Context) (control.Status, error) {
	st := control.Status{PID: 4242, Version: "makuo fake", NodeID: "0001", Base: f.cfg.Base,
		Group: "224.0.0.108:5000", UptimeSeconds: 3725, Members: len(f.cfg.Members),
		Counters: map[string]uint64{"datagrams_sent": 10, "bytes_sent": 12000, "dropped_bad_seal": 2}}
	for _, m := range f.cfg.Members {
		if m.Self {
			st.Hostname = m.Hostname
		}
	}
	return st, nil
}

// Push reports every requested path as sent to every receiving member
// (limited to the targets), or for a check the paths of cfg.Differs as
// different, and the members of cfg.Fail as failed.
func (f *fakeDaemon) Push(_ context.Context, req control.PushRequest, emit func(control.Event)) error {
	if err := f.record(req); err != nil {
		return err
	}
	var to []string
	for _, m := range f.cfg.Members {
		if !m.Self && strings.Contains(m.Roles, "recv") {
			to = append(to, m.Hostname)
		}
	}
	if len(req.Targets) > 0 {
		for _, t := range req.Targets {
			if !slices.Contains(to, t) {
				return fmt.Errorf("unknown member %q: not a live receiving member (msync --members lists them)", t)
			}
		}
		to = req.Targets
	}
	sum := &control.Summary{Members: to, FailedMembers: []string{}, PayloadBytes: f.cfg.PayloadBytes,
		WireBytes: f.cfg.PayloadBytes * 11 / 10, Seconds: 0.25, DryRun: req.DryRun, Check: req.Check}
	var ok []string
	for _, m := range to {
		if reason, failed := f.cfg.Fail[m]; failed {
			emit(control.Event{Type: control.EventFailure, Member: m, Reason: reason})
			sum.FailedMembers = append(sum.FailedMembers, m)
		} else {
			ok = append(ok, m)
		}
	}
	paths := req.Paths
	if len(paths) == 0 {
		paths = []string{"."}
	}
	action := "send"
	if req.Check {
		action = "differs"
	}
	emit(control.Event{Type: control.EventProgress, BytesSent: f.cfg.PayloadBytes, BytesTotal: f.cfg.PayloadBytes})
	for _, p := range paths {
		if len(ok) > 0 && (!req.Check || slices.Contains(f.cfg.Differs, p)) {
			emit(control.Event{Type: control.EventPath, Action: action, Path: p, Members: ok})
			sum.Changed++
		}
		sum.Entries++
	}
	if req.Verbose {
		for _, p := range f.cfg.Unchanged {
			emit(control.Event{Type: control.EventPath, Action: "same", Path: p})
			sum.Entries++
		}
	}
	emit(control.Event{Type: control.EventSummary, Summary: sum})
	return nil
}

func (f *fakeDaemon) record(req control.PushRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	lf, err := os.OpenFile(f.log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := lf.Write(append(b, '\n')); err != nil {
		lf.Close()
		return err
	}
	return lf.Close()
}

// newFake reads the config file (none: the defaults): members web1 (self),
// web2 and web3, base $WORK/base, 1536 bytes per push.
func newFake(work, configFile, log string) (*fakeDaemon, error) {
	cfg := fakeConfig{
		Members: []control.Member{
			{ID: "0001", Hostname: "web1", Addr: "10.0.0.1", Version: "makuo fake", Roles: "send,recv", Self: true, Root: "ab"},
			{ID: "0002", Hostname: "web2", Addr: "10.0.0.2", Version: "makuo fake", Roles: "send,recv", LastHeardSeconds: 0.4, Root: "ab", InSync: true},
			{ID: "0003", Hostname: "web3", Addr: "10.0.0.3", Version: "makuo fake", Roles: "send,recv", LastHeardSeconds: 1.2, Root: "cd", LagSeconds: 12},
		},
		Base:         "base",
		PayloadBytes: 1536,
	}
	if configFile != "" {
		b, err := os.ReadFile(configFile)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", configFile, err)
		}
	}
	cfg.Base = filepath.Join(work, cfg.Base)
	return &fakeDaemon{cfg: cfg, log: log}, nil
}

// cmdFakemakuo is the script command
//
//	fakemakuo VAR unix:PATH|tcp:HOST:PORT [CONFIG]
//
// It serves a fake daemon there until the script ends, sets $VAR to its
// target (with the port chosen for tcp:HOST:0), and logs the push requests
// to $WORK/VAR.pushes. It is ready when the command returns.
func cmdFakemakuo(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: fakemakuo VAR TARGET [CONFIG]")
	}
	config := ""
	if len(args) == 3 {
		config = ts.MkAbs(args[2])
	}
	work := ts.Getenv("WORK")
	fake, err := newFake(work, config, filepath.Join(work, args[0]+".pushes"))
	ts.Check(err)
	network, addr, err := control.ParseTarget(args[1])
	ts.Check(err)
	ln, err := net.Listen(network, addr)
	ts.Check(err)
	srv := &http.Server{Handler: control.NewHandler(fake, fake.cfg.Password)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			ts.Logf("fakemakuo: %v", err)
		}
	}()
	ts.Defer(func() {
		srv.Close()
		<-done
	})
	ts.Setenv(args[0], network+":"+ln.Addr().String())
}
