package apply

import (
	"context"
	"encoding/binary"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/metrics"
	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// fuzzBudget is the session memory of the fuzzed receiver: small, so that
// the fuzzer reaches the bound.
const fuzzBudget = 1 << 20

// FuzzReceiverSequence feeds arbitrary sequences of session messages from
// a sending node to a receiver with a real base directory. Whatever the
// sequence: no panic, nothing written outside the base, the memory budget
// and session caps hold, and once the receiver closes no temp file is
// left. The input is a list of (type byte, length uint16, payload).
func FuzzReceiverSequence(f *testing.F) {
	for _, seed := range seedSequences() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) { fuzzOnce(t, in) })
}

// fuzzOnce is one run of FuzzReceiverSequence.
func fuzzOnce(t *testing.T, in []byte) bool {
	{
		top := t.TempDir()
		base := filepath.Join(top, "base")
		outside := filepath.Join(top, "outside")
		for _, d := range []string{base, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("../outside", filepath.Join(base, "esc")); err != nil {
			t.Fatal(err)
		}
		a, budget, closeAll := fuzzApplier(t, base)
		now := time.Unix(1_700_000_000, 0)
		for len(in) >= 3 {
			typ, n := wire.Type(in[0]), int(binary.BigEndian.Uint16(in[1:3]))
			in = in[3:]
			n = min(n, len(in))
			m, err := wire.ParsePayload(typ, in[:n])
			in = in[n:]
			now = now.Add(time.Duration(typ) * time.Second)
			if err != nil {
				continue
			}
			a.Handle(now, m)
			if budget.Used() > budget.Limit() || budget.Used() < 0 {
				t.Fatalf("session memory %d of %d", budget.Used(), budget.Limit())
			}
			if s := a.inbox.Active(); s > 4 {
				t.Fatalf("%d sessions in progress, at most 4", s)
			}
			a.Expire(now)
		}
		closeAll()
		if budget.Used() != 0 {
			t.Fatalf("%d bytes of session memory still charged after close", budget.Used())
		}
		entries, err := os.ReadDir(outside)
		if err != nil || len(entries) != 0 {
			t.Fatalf("written outside the base: %v %v", entries, err)
		}
		if entries, _ := os.ReadDir(top); len(entries) != 2 {
			t.Fatalf("written beside the base: %v", entries)
		}
		_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err == nil && stage.IsTempName(d.Name()) {
				t.Errorf("temp file %s left behind", p)
			}
			return nil
		})
	}
	return true
}

func fuzzApplier(t *testing.T, base string) (*Applier, *session.Budget, func()) {
	t.Helper()
	dir, err := stage.OpenUnsynced(base)
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := tree.New(root, tree.Options{SkipName: stage.IsTempName})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	excl, _ := exclude.New(nil)
	clock := time.Unix(1_700_000_000, 0)
	cfg := Config{Dir: dir, Index: ix, Provenance: NewProvenance(true, func() time.Time { return clock }), Excludes: excl,
		Self: func() wire.NodeID { return 7 }, Hostname: "fuzz", Watch: true, Now: func() time.Time { return clock },
		Log: slog.New(slog.DiscardHandler), Metrics: metrics.New(prometheus.NewRegistry(), "fuzz")}
	budget := session.NewBudget(fuzzBudget)
	a := New(cfg, session.InboxConfig{Self: cfg.Self, Node: 1, MaxSessions: 4, Idle: time.Minute, MaxPayload: 1440, Budget: budget},
		func(wire.Message) {})
	return a, budget, func() {
		a.Close()
		dir.Close()
		root.Close()
	}
}

// seedSequences are valid sessions (and a hostile one) to start from.
func seedSequences() [][]byte {
	enc := func(ms ...wire.Message) []byte {
		var b []byte
		for _, m := range ms {
			p := m.AppendPayload(nil)
			b = append(b, byte(m.Type()))
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
		return b
	}
	const bs = 1424
	content := make([]byte, 3000)
	for i := range content {
		content[i] = byte(i)
	}
	entries := []wire.Entry{
		{Kind: wire.KindDir, Path: "d", Mode: 0o755},
		{Kind: wire.KindFile, Path: "d/f", Mode: 0o644, Size: uint64(len(content)), Hash: xxhashSum(content)},
		{Kind: wire.KindSymlink, Path: "d/l", Target: "f"},
		{Kind: wire.KindFile, Path: "esc/x", Mode: 0o644, Size: 1, Hash: 1},
		{Kind: wire.KindAbsent, Path: "gone"},
	}
	offer := &wire.Offer{Session: 5, BlockSize: bs, Entries: uint32(len(entries)), Count: 1, Items: entries}
	valid := enc(offer,
		&wire.Data{Session: 5, Block: 0, Bytes: content[:bs]},
		&wire.Data{Session: 5, Block: 1, Bytes: content[bs : 2*bs]},
		&wire.Data{Session: 5, Block: 2, Bytes: content[2*bs:]},
		&wire.Data{Session: 5, Block: 3, Bytes: []byte{0}},
		&wire.Poll{Session: 5, Round: 1, Watermark: 4, Final: true},
		&wire.Commit{Session: 5})
	huge := &wire.Offer{Session: 6, BlockSize: 256, Entries: wire.MaxEntries, Count: wire.MaxEntries, Items: []wire.Entry{
		{Kind: wire.KindFile, Path: "big", Mode: 0o644, Size: wire.MaxFileSize}}}
	hostile := enc(huge,
		&wire.Data{Session: 6, Block: 1 << 40, Bytes: make([]byte, 256)},
		&wire.Poll{Session: 6, Round: 1, Watermark: ^uint64(0), Final: true},
		&wire.Chunks{Session: 6, Entry: 0, Total: 1 << 30, Refs: []wire.ChunkRef{{Size: 1, Hash: 1}}},
		&wire.Abort{Session: 6})
	return [][]byte{valid, hostile, append(valid[:len(valid):len(valid)], hostile...)}
}

func xxhashSum(b []byte) uint64 { return xxhash.Sum64(b) }

// TestSeedSessionApplies: the valid seed of FuzzReceiverSequence is a
// whole session that applies (so the fuzzer starts from real paths), and
// its entry through the planted link fails alone.
func TestSeedSessionApplies(t *testing.T) {
	base := t.TempDir()
	if err := os.Symlink("/tmp", filepath.Join(base, "esc")); err != nil {
		t.Fatal(err)
	}
	var sent []wire.Message
	a, _, closeAll := fuzzApplier(t, base)
	a.send = func(m wire.Message) { sent = append(sent, m) }
	in := seedSequences()[0]
	now := time.Unix(1_700_000_000, 0)
	for len(in) >= 3 {
		typ, n := wire.Type(in[0]), int(binary.BigEndian.Uint16(in[1:3]))
		m, err := wire.ParsePayload(typ, in[3:3+n])
		if err != nil {
			t.Fatal(err)
		}
		in = in[3+n:]
		a.Handle(now, m)
	}
	closeAll()
	if b, err := os.ReadFile(filepath.Join(base, "d/f")); err != nil || len(b) != 3000 {
		t.Fatalf("d/f: %d bytes, %v", len(b), err)
	}
	if tgt, err := os.Readlink(filepath.Join(base, "d/l")); err != nil || tgt != "f" {
		t.Fatalf("d/l -> %q, %v", tgt, err)
	}
	res, ok := sent[len(sent)-1].(*wire.Result)
	if !ok || res.Failed != 1 || res.Failures[0].Entry != 3 || res.Failures[0].Code != wire.FailPath {
		t.Fatalf("result %+v", sent[len(sent)-1])
	}
}
