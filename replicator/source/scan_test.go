package source

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/makuo/makuo/replicator/wire"
)

// TestBuildOwnerOnly: with OwnerOnly (makuosan -O) a push offers only the
// paths the uid owns, walking on below directories it leaves out; a
// hard link's names stay consistent; and a mirrored root below which
// something was left out loses EntryMirror, so receivers delete nothing
// the sender merely skipped.
func TestBuildOwnerOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (it chowns files), and CI runs as root")
		}
		t.Skip("needs root: it chowns files to another uid")
	}
	const mine, theirs = 4000123, 4000124
	base := t.TempDir()
	files := []struct {
		path string
		dir  bool
		uid  int
	}{
		{"mine", true, mine}, {"mine/a", false, mine}, {"mine/b", false, mine},
		{"theirs", true, theirs}, {"theirs/x", false, theirs}, {"theirs/y", false, mine},
		{"top", false, mine}, {"other", false, theirs},
	}
	for _, f := range files {
		p := filepath.Join(base, f.path)
		var err error
		if f.dir {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, []byte(f.path), 0o644)
		}
		if err == nil {
			err = os.Lchown(p, f.uid, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(base, "mine/a"), filepath.Join(base, "mine/a2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(base, 0, 0); err != nil {
		t.Fatal(err)
	}
	_, ix := indexOf(t, base)
	build := func(roots []string, opt Options) *Scan {
		t.Helper()
		opt.Recursive = true
		sc, err := Build(context.Background(), ix, roots, opt)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	paths := func(sc *Scan) []string {
		var ps []string
		for _, e := range sc.Entries {
			ps = append(ps, e.Path)
		}
		return ps
	}

	all := build([]string{"."}, Options{})
	if got := paths(all); len(got) != 10 || all.OwnerSkipped != 0 {
		t.Fatalf("without OwnerOnly: %v, %d skipped", got, all.OwnerSkipped)
	}

	sc := build([]string{"."}, Options{OwnerOnly: true, Owner: mine})
	want := []string{"mine", "mine/a", "mine/a2", "mine/b", "theirs/y", "top"}
	if got := paths(sc); !slices.Equal(got, want) {
		t.Fatalf("offered %v, want %v", got, want)
	}
	if sc.OwnerSkipped != 4 { // ".", "other", "theirs", "theirs/x"
		t.Errorf("%d skipped, want 4", sc.OwnerSkipped)
	}
	a, a2 := sc.Entries[1], sc.Entries[2]
	if a.Kind != wire.KindFile || a2.Kind != wire.KindHardlink || a2.LinkTo != 1 {
		t.Errorf("hard link: %v and %v (link to %d), want a file and a link to entry 1", a.Kind, a2.Kind, a2.LinkTo)
	}

	// Mirroring: "mine" holds only the uid's paths and stays mirrored;
	// "theirs" had something left out and loses the flag, as does ".",
	// which is not even offered.
	sc = build([]string{"mine", "theirs"}, Options{OwnerOnly: true, Owner: mine, Mirror: true})
	if sc.Entries[0].Path != "mine" || sc.Entries[0].Flags&wire.EntryMirror == 0 {
		t.Errorf("mine: %+v, want it mirrored", sc.Entries[0])
	}
	for _, e := range sc.Entries[1:] {
		if e.Flags&wire.EntryMirror != 0 {
			t.Errorf("%s offered with EntryMirror", e.Path)
		}
	}
	if !slices.Equal(sc.MirrorDropped, []string{"theirs"}) {
		t.Errorf("mirror dropped for %v, want [theirs]", sc.MirrorDropped)
	}
	sc = build([]string{"."}, Options{OwnerOnly: true, Owner: mine, Mirror: true})
	if !slices.Equal(sc.MirrorDropped, []string{"."}) || slices.ContainsFunc(sc.Entries, func(e wire.Entry) bool { return e.Flags&wire.EntryMirror != 0 }) {
		t.Errorf("whole tree: mirror dropped for %v, entries %+v", sc.MirrorDropped, sc.Entries)
	}
	// Without OwnerOnly a mirrored root keeps its flag.
	sc = build([]string{"theirs"}, Options{Mirror: true})
	if sc.Entries[0].Flags&wire.EntryMirror == 0 || sc.MirrorDropped != nil {
		t.Errorf("without OwnerOnly: %+v, dropped %v", sc.Entries[0], sc.MirrorDropped)
	}
}

// TestBuildNamesBasis: a path the scan finds added or changed with the
// content of a file that vanished names that file as its basis (a rename,
// a directory moved, a file moved over another); a path unchanged since
// the last scan names none, even with a vanished file's content, and a
// file whose path is now a directory is no basis.
func TestBuildNamesBasis(t *testing.T) {
	base := t.TempDir()
	write := func(p, content string) {
		t.Helper()
		p = filepath.Join(base, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "content of a")
	write("d/x", "content of x")
	write("over", "old content of over")
	write("moved", "content of moved")
	write("twin", "content of gone twin")
	write("gonetwin", "content of gone twin")
	write("k", "content of k")
	_, ix := indexOf(t, base)
	if _, err := Build(context.Background(), ix, []string{"."}, Options{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	for _, mv := range [][2]string{{"a", "b"}, {"d", "e"}, {"moved", "over"}} {
		if err := os.Rename(filepath.Join(base, mv[0]), filepath.Join(base, mv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(base, "gonetwin")); err != nil {
		t.Fatal(err)
	}
	// k becomes a directory, and its content moves to kk: kk is sent
	// whole, since receivers will have made k a directory.
	if err := os.Rename(filepath.Join(base, "k"), filepath.Join(base, "kk")); err != nil {
		t.Fatal(err)
	}
	write("k/inside", "other")
	sc, err := Build(context.Background(), ix, []string{"."}, Options{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"b": "a", "e/x": "d/x", "over": "moved", "twin": "", "kk": ""}
	for p, basis := range want {
		e := sc.Entries[entryIndex(t, sc, p)]
		if got := e.Basis; got != basis || (e.Flags&wire.EntryBasis != 0) != (basis != "") {
			t.Errorf("%s: basis %q (flags %#x), want %q", p, got, e.Flags, basis)
		}
	}
}

// TestScanIno: a regular file's entry carries the inode it was scanned
// at, so size, mtime and inode name the version offered exactly as a stat
// of it names it; a hard link's second name, a symlink and a directory
// carry none.
func TestScanIno(t *testing.T) {
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "f"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(base, "f"), filepath.Join(base, "g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(base, "s")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(base, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, ix := indexOf(t, base)
	sc, err := Build(context.Background(), ix, []string{"."}, Options{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(base, "f"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	f := entryIndex(t, sc, "f")
	ino, ok := sc.Ino(f)
	if e := sc.Entries[f]; !ok || ino != st.Ino || int64(e.Size) != fi.Size() || e.Mtime != fi.ModTime().UnixNano() {
		t.Errorf("f: ino %d (%v), size %d, mtime %d; stat says ino %d, size %d, mtime %d",
			ino, ok, e.Size, e.Mtime, st.Ino, fi.Size(), fi.ModTime().UnixNano())
	}
	for _, p := range []string{"g", "s", "d"} {
		if ino, ok := sc.Ino(entryIndex(t, sc, p)); ok {
			t.Errorf("%s: ino %d, want none", p, ino)
		}
	}
	for _, i := range []int{-1, len(sc.Entries)} {
		if _, ok := sc.Ino(i); ok {
			t.Errorf("Ino(%d) found an inode", i)
		}
	}
}
