package apply

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// TestRenameCopiesBasis: an offered file whose named basis holds its
// content is copied locally and needs no data, even where the same
// session then replaces the basis by a directory (the copy is made when
// the entry is decided, of the basis as it was); a basis that does not
// hold the content, or is not a regular file, makes the entry need data.
func TestRenameCopiesBasis(t *testing.T) {
	content := bytes.Repeat([]byte("renamed "), 512)
	other := bytes.Repeat([]byte("changed "), 512)
	file := func(p string, basis string) wire.Entry {
		return wire.Entry{Kind: wire.KindFile, Path: p, Mode: 0o644, Mtime: 1_700_000_000e9,
			Size: uint64(len(content)), Hash: xxhashSum(content), Flags: wire.EntryBasis, Basis: basis}
	}
	dir := wire.Entry{Kind: wire.KindDir, Path: "z", Mode: 0o755, Mtime: 1_700_000_000e9}
	for _, tc := range []struct {
		name     string
		local    map[string][]byte // files in the base before the session
		localDir string            // a directory in the base before the session
		items    []wire.Entry
		wantData bool // b needs its content from the sender
	}{
		{"basis then replaced by a directory", map[string][]byte{"z": content}, "", []wire.Entry{file("b", "z"), dir}, false},
		{"basis kept", map[string][]byte{"z": content}, "", []wire.Entry{file("b", "z")}, false},
		{"basis with other content", map[string][]byte{"z": other}, "", []wire.Entry{file("b", "z")}, true},
		{"basis is a directory", nil, "z", []wire.Entry{file("b", "z"), dir}, true},
		{"basis missing", nil, "", []wire.Entry{file("b", "z")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			for p, b := range tc.local {
				if err := os.WriteFile(filepath.Join(base, p), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.localDir != "" {
				if err := os.Mkdir(filepath.Join(base, tc.localDir), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var sent []wire.Message
			a, _, closeAll := fuzzApplier(t, base)
			a.send = func(m wire.Message) { sent = append(sent, m) }
			now := time.Unix(1_700_000_000, 0)
			a.Handle(now, &wire.Offer{Session: 9, BlockSize: 1424, Entries: uint32(len(tc.items)), Count: 1, Items: tc.items})
			var need *wire.Need
			for _, m := range sent {
				if n, ok := m.(*wire.Need); ok {
					need = n
				}
			}
			if need == nil {
				closeAll()
				t.Fatalf("no need answered: %v", sent)
			}
			if got := wire.IsSet(need.Data, 0); got != tc.wantData {
				closeAll()
				t.Fatalf("b needs data %v, want %v", got, tc.wantData)
			}
			if tc.wantData {
				for k := 0; k*1424 < len(content); k++ {
					a.Handle(now, &wire.Data{Session: 9, Block: uint64(k), Bytes: content[k*1424 : min(len(content), (k+1)*1424)]})
				}
			}
			a.Handle(now, &wire.Poll{Session: 9, Round: 1, Watermark: 3, Final: true})
			a.Handle(now, &wire.Commit{Session: 9})
			closeAll()
			res, ok := sent[len(sent)-1].(*wire.Result)
			if !ok || res.Failed != 0 {
				t.Fatalf("result %+v", sent[len(sent)-1])
			}
			if b, err := os.ReadFile(filepath.Join(base, "b")); err != nil || !bytes.Equal(b, content) {
				t.Fatalf("b: %d bytes, %v", len(b), err)
			}
			if fi, err := os.Lstat(filepath.Join(base, "b")); err != nil || fi.Mode().Perm() != 0o644 || fi.ModTime().UnixNano() != 1_700_000_000e9 {
				t.Fatalf("b: %v, %v", fi, err)
			}
			if len(tc.items) > 1 {
				if fi, err := os.Lstat(filepath.Join(base, "z")); err != nil || !fi.IsDir() {
					t.Fatalf("z is not a directory: %v", err)
				}
			}
		})
	}
}
