package transport

import (
	"context"
	"time"

	"github.com/makuo/makuo/replicator/transport/peers"
)

// watchRelayPeers lists the relay peers again whenever RelayConfig's
// PeersFile may have changed, until ctx ends. Reload runs here, not on
// the relay's loop: it may wait for DNS. A list that fails (a bad line,
// a name that does not resolve) is logged once per distinct error, and
// the relays listed before stay listed.
func (c *Conn) watchRelayPeers(ctx context.Context, fw *peers.FileWatch) {
	r := c.rel
	failed := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-fw.C:
		}
		list, err := r.cfg.Reload(ctx)
		if err == nil {
			list, err = r.norm(list)
		}
		if err != nil {
			if msg := err.Error(); msg != failed && ctx.Err() == nil {
				failed = msg
				r.log.Error("relay peers file refused; keeping the previous list", "file", r.cfg.PeersFile, "err", err)
			}
			continue
		}
		failed = ""
		if r.setPeers(list, time.Now()) {
			r.log.Info("relay peers file reloaded", "file", r.cfg.PeersFile, "relay_peers", len(list))
		}
	}
}

// runRelayPeers starts watchRelayPeers if the relay has a peers file to
// follow, and returns what stops it.
func (c *Conn) runRelayPeers(ctx context.Context) (stop func()) {
	r := c.rel
	if r.cfg.PeersFile == "" || r.cfg.Reload == nil {
		return func() {}
	}
	fw := peers.NewFileWatch(r.cfg.PeersFile, r.cfg.PollEvery, r.log)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		fw.Run(wctx)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		c.watchRelayPeers(wctx, fw)
	}()
	return func() {
		cancel()
		<-done
		<-done
	}
}
