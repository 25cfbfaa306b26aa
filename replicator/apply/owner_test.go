package apply

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/makuo/makuo/replicator/wire"
)

// TestOwnerOfCreatedFiles: a file created in a directory the session made
// skips the chown only when it already has the offered owner; one offered
// with another owner, one in a setgid directory (new files take the
// directory's group) and one in a directory that existed before are
// chowned, and every file ends with the owner offered.
func TestOwnerOfCreatedFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (it applies owners), and CI runs as root")
		}
		t.Skip("needs root: it applies owners")
	}
	base := t.TempDir()
	if err := os.Mkdir(filepath.Join(base, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	const otherUID, otherGID, dirGID = 4000123, 4000124, 4000125
	entries := []wire.Entry{
		{Kind: wire.KindDir, Path: "d", Mode: 0o755, Uid: uid, Gid: gid},
		{Kind: wire.KindFile, Path: "d/mine", Mode: 0o644, Uid: uid, Gid: gid},
		{Kind: wire.KindFile, Path: "d/theirs", Mode: 0o644, Uid: otherUID, Gid: otherGID},
		{Kind: wire.KindFile, Path: "d/group", Mode: 0o644, Uid: uid, Gid: otherGID},
		{Kind: wire.KindDir, Path: "g", Mode: 0o2775, Uid: uid, Gid: dirGID},
		{Kind: wire.KindFile, Path: "g/f", Mode: 0o644, Uid: uid, Gid: gid},
		{Kind: wire.KindDir, Path: "old", Mode: 0o755, Uid: uid, Gid: gid},
		{Kind: wire.KindFile, Path: "old/f", Mode: 0o644, Uid: uid, Gid: gid},
	}
	var msgs []wire.Message
	block := uint64(0)
	for i := range entries {
		if e := &entries[i]; e.Kind == wire.KindFile {
			content := []byte(e.Path)
			e.Size, e.Hash = uint64(len(content)), xxhashSum(content)
			msgs = append(msgs, &wire.Data{Session: 5, Block: block, Bytes: content})
			block++
		}
	}
	offer := &wire.Offer{Session: 5, BlockSize: 1424, Entries: uint32(len(entries)), Count: 1, Items: entries}
	msgs = append([]wire.Message{offer}, msgs...)
	msgs = append(msgs, &wire.Poll{Session: 5, Round: 1, Watermark: block, Final: true}, &wire.Commit{Session: 5})

	a, _, closeAll := fuzzApplier(t, base)
	a.cfg.SetOwner = true
	var sent []wire.Message
	a.send = func(m wire.Message) { sent = append(sent, m) }
	now := time.Unix(1_700_000_000, 0)
	for _, m := range msgs {
		a.Handle(now, m)
	}
	closeAll()
	if res, ok := sent[len(sent)-1].(*wire.Result); !ok || res.Failed != 0 {
		t.Fatalf("result %+v", sent[len(sent)-1])
	}
	for _, e := range entries {
		fi, err := os.Lstat(filepath.Join(base, e.Path))
		if err != nil {
			t.Errorf("%s: %v", e.Path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != e.Uid || st.Gid != e.Gid {
			t.Errorf("%s: owner %d:%d, offered %d:%d", e.Path, st.Uid, st.Gid, e.Uid, e.Gid)
		}
	}
}
