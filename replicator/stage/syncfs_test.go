package stage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// syncCall is one call of the syncfs hook: the filesystem it flushed and
// how many of the batch's targets held their new content then.
type syncCall struct {
	dev     uint64
	visible int
}

// TestCommitAllSyncsEveryFilesystem: a batch with files on the base's
// filesystem and on one mounted below the base flushes each filesystem
// once before any rename and once after them all, and no other.
func TestCommitAllSyncsEveryFilesystem(t *testing.T) {
	needRoot(t) // to mount a filesystem below the base
	d, base := newDir(t)
	mnt := filepath.Join(base, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount tmpfs below the base: %v", err)
	}
	t.Cleanup(func() { must(t, unix.Unmount(mnt, unix.MNT_DETACH)) })
	devOf := func(p string) uint64 {
		var st unix.Stat_t
		must(t, unix.Stat(p, &st))
		return st.Dev
	}
	baseDev, mntDev := devOf(base), devOf(mnt)
	if baseDev == mntDev {
		t.Fatal("the tmpfs has the base's device number")
	}

	names := []string{"a", "mnt/b", "dir/c", "mnt/sub/d", "mnt/e"}
	var calls []syncCall
	d.syncfs = func(fd int) error {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		c := syncCall{dev: st.Dev}
		for _, n := range names {
			if b, _ := os.ReadFile(filepath.Join(base, n)); string(b) == "new "+n {
				c.visible++
			}
		}
		calls = append(calls, c)
		return unix.Syncfs(fd)
	}
	var ts []*Temp
	for _, n := range names {
		tmp, err := d.CreateTemp(n)
		must(t, err)
		_, err = tmp.Write([]byte("new " + n))
		must(t, err)
		must(t, tmp.Ready(Meta{Mode: 0o644}))
		ts = append(ts, tmp)
	}
	for i, err := range d.CommitAll(ts) {
		if err != nil {
			t.Errorf("%s: %v", names[i], err)
		}
	}
	want := []syncCall{{baseDev, 0}, {mntDev, 0}, {baseDev, len(names)}, {mntDev, len(names)}}
	if !slices.Equal(calls, want) {
		t.Errorf("syncfs calls (device, targets renamed) = %v, want %v (base %d, mount %d)", calls, want, baseDev, mntDev)
	}
	noTemps(t, base)
}

// TestCommitAllSyncError: when the flush before the renames fails, no
// target is replaced and every temp is removed; when the one after fails,
// the renamed files report it.
func TestCommitAllSyncError(t *testing.T) {
	d, base := newDir(t)
	put(t, d, "old", "old", Meta{Mode: 0o644})
	boom := errors.New("boom")
	for _, failAt := range []int{1, 2} {
		calls := 0
		d.syncfs = func(fd int) error {
			if calls++; calls == failAt {
				return boom
			}
			return unix.Syncfs(fd)
		}
		var ts []*Temp
		for _, n := range []string{"old", "new"} {
			tmp, err := d.CreateTemp(n)
			must(t, err)
			_, err = tmp.Write([]byte("staged"))
			must(t, err)
			must(t, tmp.Ready(Meta{Mode: 0o644}))
			ts = append(ts, tmp)
		}
		for i, err := range d.CommitAll(ts) {
			if !errors.Is(err, boom) {
				t.Errorf("sync %d fails: %s: %v, want the sync error", failAt, ts[i].Target(), err)
			}
		}
		b, _ := os.ReadFile(filepath.Join(base, "old"))
		if failAt == 1 && string(b) != "old" || failAt == 2 && string(b) != "staged" {
			t.Errorf("sync %d fails: old holds %q", failAt, b)
		}
		noTemps(t, base)
	}
}
