package apply

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// TestRenamesWhileReceiving: files verified over longer than readyAge are
// renamed into place while the session still receives, not all after its
// last datagram (a push the link paces would otherwise wait for every
// rename at its end); a file verified after that starts the next batch,
// and the commit renames it.
func TestRenamesWhileReceiving(t *testing.T) {
	names := []string{"a", "b", "c"}
	content := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 100) }
	var items []wire.Entry
	for i, p := range names {
		items = append(items, wire.Entry{Kind: wire.KindFile, Path: p, Mode: 0o644, Mtime: 1_700_000_000e9,
			Size: 100, Hash: xxhashSum(content(i))})
	}
	base := t.TempDir()
	var sent []wire.Message
	a, _, closeAll := fuzzApplier(t, base)
	defer closeAll()
	a.send = func(m wire.Message) { sent = append(sent, m) }
	now := time.Unix(1_700_000_000, 0)
	a.cfg.Now = func() time.Time { return now }
	exists := func(p string) bool {
		_, err := os.Lstat(filepath.Join(base, p))
		return err == nil
	}
	a.Handle(now, &wire.Offer{Session: 9, BlockSize: 1424, Entries: uint32(len(items)), Count: 1, Items: items})
	data := func(i int) { a.Handle(now, &wire.Data{Session: 9, Block: uint64(i), Bytes: content(i)}) }

	data(0)
	if exists("a") {
		t.Fatal("a renamed into place as soon as it was verified: no batching")
	}
	now = now.Add(readyAge)
	data(1)
	if !exists("a") || !exists("b") {
		t.Fatalf("after %v of verified files: a in place %v, b %v; want both renamed while the session receives", readyAge, exists("a"), exists("b"))
	}
	data(2)
	if exists("c") {
		t.Fatal("c renamed at once: it starts the next batch")
	}
	a.Handle(now, &wire.Poll{Session: 9, Round: 1, Watermark: 3, Final: true})
	a.Handle(now, &wire.Commit{Session: 9})
	if res, ok := sent[len(sent)-1].(*wire.Result); !ok || res.Failed != 0 {
		t.Fatalf("result %+v", sent[len(sent)-1])
	}
	for i, p := range names {
		if b, err := os.ReadFile(filepath.Join(base, p)); err != nil || !bytes.Equal(b, content(i)) {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
}
