package transport

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/transport/peers"
	"github.com/makuo/makuo/replicator/wire"
)

// lockedBuffer is a log sink the watch's goroutine writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Contains(l.b.Bytes(), []byte(s))
}

// TestRelayPeersReload: a relay follows its peers file: a relay added
// there is listed, one taken out refused from then on, and a file with a
// bad line is refused with the line's number while the previous list
// stays.
func TestRelayPeersReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "relays")
	write := func(s string) {
		t.Helper()
		// Renamed over the file, as configuration tools do.
		tmp := file + ".new"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(listedRelay.String() + "\n")
	reload := func(ctx context.Context) ([]netip.AddrPort, error) {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		specs, err := peers.ParseList(f, 5000)
		if err != nil {
			return nil, fmt.Errorf("relay peers: %w", err)
		}
		var out []netip.AddrPort
		for _, sp := range specs {
			out = append(out, netip.AddrPortFrom(netip.MustParseAddr(sp.Host), sp.Port))
		}
		return out, nil
	}
	var log lockedBuffer
	c, met := testConn(t, Config{Node: 1, Incarnation: 1, Logger: slog.New(slog.NewTextHandler(&log, nil)),
		Relay: &RelayConfig{Segment: "a", Peers: []netip.AddrPort{listedRelay}, PeersFile: file,
			PollEvery: 20 * time.Millisecond, Reload: reload}})
	stop := c.runRelayPeers(context.Background())
	defer stop()
	added := netip.MustParseAddrPort("10.0.1.2:5000")

	write(added.String() + " # the new relay\n")
	waitFor(t, "the new relay listed and the old one not", func() bool { return c.rel.listed(added) && !c.rel.listed(listedRelay) })
	cr := crafter{t, nil}
	c.accept(cr.datagram(0x99, 9, 1, &wire.RelayHello{Segment: "b", Hears: true}), listedRelay, fromRelay, time.Now(), time.Now())
	if got := dropped(met, metrics.DropRelayRefused); got != 1 {
		t.Errorf("a hello of the relay taken out of the file: %v refused, want 1", got)
	}

	write(added.String() + "\nnot a host!\n")
	waitFor(t, "the bad line logged with its number", func() bool { return log.Contains("line 2") })
	if !c.rel.listed(added) {
		t.Error("a file with a bad line replaced the list")
	}

	write(listedRelay.String() + "\n" + added.String() + "\n")
	waitFor(t, "both listed", func() bool { return c.rel.listed(added) && c.rel.listed(listedRelay) })
	if st, _ := c.RelayStatus(); len(st.Remote) != 0 {
		t.Errorf("relays heard: %v, want none", st.Remote)
	}
}
