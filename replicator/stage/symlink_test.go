package stage

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The path every operation of TestSymlinkInPath works below, and what
// the fixture puts there: a file, a directory with a file, a symlink.
const (
	linkDirs = "d0/d1/d2"
	leafMode = 0o644
)

// pathOp is one use of the package on entries below p. prepare runs while
// p is made of real directories, then a symbolic link is planted at one
// element of p, then the returned function runs and must fail with
// ErrSymlinkInPath.
type pathOp struct {
	name    string
	prepare func(t *testing.T, d *Dir, p string) func() error
}

// simple makes a pathOp with nothing to prepare.
func simple(name string, op func(d *Dir, p string) error) pathOp {
	return pathOp{name, func(_ *testing.T, d *Dir, p string) func() error {
		return func() error { return op(d, p) }
	}}
}

// staged makes a pathOp on a temp file for p/leaf created, written and
// handed to stage (Park, Ready or nothing) before the link is planted.
func staged(name string, stage func(tmp *Temp) error, op func(d *Dir, tmp *Temp) error) pathOp {
	return pathOp{name, func(t *testing.T, d *Dir, p string) func() error {
		tmp, err := d.CreateTemp(p + "/leaf")
		must(t, err)
		_, err = tmp.Write([]byte("evil"))
		must(t, err)
		if stage != nil {
			must(t, stage(tmp))
		}
		return func() error { return op(d, tmp) }
	}}
}

func pathOps() []pathOp {
	m := Meta{Mode: 0o700, Mtime: time.Unix(5, 0), Uid: 4321, Gid: 4321, SetOwner: os.Geteuid() == 0}
	createTemp := func(rel string) func(d *Dir, p string) error {
		return func(d *Dir, p string) error {
			tmp, err := d.CreateTemp(p + rel)
			if err == nil {
				tmp.Abort()
			}
			return err
		}
	}
	park := func(tmp *Temp) error { return tmp.Park() }
	ready := func(tmp *Temp) error { return tmp.Ready(Meta{Mode: 0o600}) }
	commit := func(_ *Dir, tmp *Temp) error { return tmp.Commit(Meta{Mode: 0o600}) }
	return []pathOp{
		simple("CreateTemp existing", createTemp("/leaf")),
		simple("CreateTemp new", createTemp("/new")),
		simple("CreateTemp missing parents", createTemp("/newdir/sub/f")),
		simple("Mkdir", func(d *Dir, p string) error { return d.Mkdir(p+"/newdir", m) }),
		simple("Mkdir existing", func(d *Dir, p string) error { return d.Mkdir(p+"/ldir", m) }),
		simple("Mkdir missing parents", func(d *Dir, p string) error { return d.Mkdir(p+"/newdir/sub", m) }),
		simple("Symlink", func(d *Dir, p string) error { return d.Symlink(p+"/leaf", "x", m) }),
		simple("Link new name", func(d *Dir, p string) error { return d.Link(p+"/hard", "plain") }),
		simple("Link existing name", func(d *Dir, p string) error { return d.Link("hard", p+"/leaf") }),
		simple("Mknod", func(d *Dir, p string) error {
			return d.Mknod(p+"/fifo", Meta{Mode: fs.ModeNamedPipe | 0o600}, 0)
		}),
		simple("SetMeta", func(d *Dir, p string) error { return d.SetMeta(p+"/leaf", m) }),
		simple("Remove", func(d *Dir, p string) error { return d.Remove(p + "/leaf") }),
		simple("Remove dir", func(d *Dir, p string) error { return d.Remove(p + "/ldir/x") }),
		simple("RemoveAll", func(d *Dir, p string) error { return d.RemoveAll(p + "/ldir") }),
		simple("Open", func(d *Dir, p string) error {
			f, err := d.Open(p + "/leaf")
			if err == nil {
				f.Close()
			}
			return err
		}),
		simple("Lstat", func(d *Dir, p string) error { _, err := d.Lstat(p + "/leaf"); return err }),
		simple("LstatCache", func(d *Dir, p string) error {
			c := d.LstatCache()
			defer c.Close()
			_, err := c.Lstat(p + "/leaf")
			return err
		}),
		simple("Readlink", func(d *Dir, p string) error { _, err := d.Readlink(p + "/lnk"); return err }),
		simple("ReadDir", func(d *Dir, p string) error { _, err := d.ReadDir(p + "/ldir"); return err }),
		simple("ReadDir of the link", func(d *Dir, p string) error { _, err := d.ReadDir(p); return err }),
		simple("WalkDir", func(d *Dir, p string) error {
			return d.WalkDir(p+"/ldir", func(q string, _ fs.DirEntry, err error) error {
				if err == nil {
					return fmt.Errorf("WalkDir visited %q", q)
				}
				return err
			})
		}),
		staged("Commit", nil, commit),
		staged("Commit after Park", park, commit),
		staged("Write after Park", park, func(_ *Dir, tmp *Temp) error {
			_, err := tmp.Write([]byte("more"))
			tmp.Abort()
			return err
		}),
		staged("Ready after Park", park, func(_ *Dir, tmp *Temp) error { return tmp.Ready(Meta{Mode: 0o600}) }),
		staged("CommitAll", ready, func(d *Dir, tmp *Temp) error { return d.CommitAll([]*Temp{tmp})[0] }),
		staged("Abort", nil, func(_ *Dir, tmp *Temp) error { return tmp.Abort() }),
	}
}

// TestSymlinkInPath: with a symbolic link at any element above the entry,
// to a directory inside the base or outside it, every method fails with
// ErrSymlinkInPath and changes nothing, neither in the link's target nor
// anywhere else in the base. The link stands where a directory was: for
// the ops on temps it replaced the directory after they were staged, and
// the target is that very directory, moved.
func TestSymlinkInPath(t *testing.T) {
	for _, resolve := range []string{"openat2", "walk"} {
		for pos := range strings.Count(linkDirs, "/") + 1 {
			for _, where := range []string{"inside", "outside"} {
				for _, op := range pathOps() {
					t.Run(fmt.Sprintf("%s/%d/%s/%s", resolve, pos, where, op.name), func(t *testing.T) {
						testSymlinkAt(t, resolve == "walk", pos, where == "outside", op)
					})
				}
			}
		}
	}
}

func testSymlinkAt(t *testing.T, walk bool, pos int, outside bool, op pathOp) {
	d, base := newDir(t)
	d.noOpenat2.Store(walk)
	elems := strings.Split(linkDirs, "/")
	dirs := filepath.Join(base, linkDirs)
	must(t, os.MkdirAll(filepath.Join(dirs, "ldir"), 0o755))
	writeAt(t, filepath.Join(dirs, "leaf"), "orig")
	writeAt(t, filepath.Join(dirs, "ldir/x"), "x")
	must(t, os.Symlink("leaf", filepath.Join(dirs, "lnk")))
	writeAt(t, filepath.Join(base, "plain"), "plain")
	run := op.prepare(t, d, linkDirs)

	// Move the element at pos to the target and link it there.
	elem := filepath.Join(base, filepath.Join(elems[:pos+1]...))
	target, linkTo := filepath.Join(base, "htdocs"), ""
	if outside {
		target = filepath.Join(t.TempDir(), "target")
		linkTo = target
	} else {
		linkTo = strings.Repeat("../", pos) + "htdocs"
	}
	must(t, os.Rename(elem, target))
	must(t, os.Symlink(linkTo, elem))
	before := snapshot(t, base)
	beforeTarget := snapshot(t, target)

	err := run()
	switch {
	case !errors.Is(err, ErrSymlinkInPath):
		t.Errorf("%s with a symlink at %q = %v, want ErrSymlinkInPath", op.name, elems[pos], err)
	case !strings.Contains(err.Error(), "symbolic link"):
		t.Errorf("error %q does not say why", err)
	case errors.Is(err, fs.ErrNotExist):
		t.Errorf("error %v also reads as a missing entry", err)
	}
	diffSnapshots(t, "link target", beforeTarget, snapshot(t, target))
	diffSnapshots(t, "base", before, snapshot(t, base))
}

// writeAt writes a file with fixed mode and times.
func writeAt(t *testing.T, p, content string) {
	t.Helper()
	must(t, os.WriteFile(p, []byte(content), leafMode))
	must(t, os.Chtimes(p, time.Unix(1000, 0), time.Unix(1000, 0)))
}

// snapshot describes every entry under root, symlinks not followed: type,
// mode, owner, times, size, link count, content or link target.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d mtime %v size %d nlink %d", fi.Mode(), st.Uid, st.Gid, fi.ModTime().UnixNano(), fi.Size(), st.Nlink)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %q", b)
		case fi.Mode().Type() == fs.ModeSymlink:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffSnapshots reports every entry added, removed or changed.
func diffSnapshots(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(before)) {
		switch a, ok := after[p]; {
		case !ok:
			t.Errorf("%s: %s removed", what, p)
		case a != before[p]:
			t.Errorf("%s: %s changed\n from %s\n   to %s", what, p, before[p], a)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s added: %s", what, p, after[p])
		}
	}
}

// TestLstatErrors: a missing entry reads as fs.ErrNotExist, one below a
// file as ENOTDIR, one below a symbolic link as ErrSymlinkInPath and not
// as missing.
func TestLstatErrors(t *testing.T) {
	d, base := newDir(t)
	put(t, d, "dir/f", "x", Meta{Mode: 0o644})
	must(t, os.Symlink("dir", filepath.Join(base, "link")))
	for _, tc := range []struct {
		rel         string
		want        error
		notExisting bool
	}{
		{"missing", fs.ErrNotExist, true},
		{"missing/f", fs.ErrNotExist, true},
		{"dir/missing", fs.ErrNotExist, true},
		{"dir/f/below", syscall.ENOTDIR, false},
		{"link/f", ErrSymlinkInPath, false},
		{"link/missing", ErrSymlinkInPath, false},
	} {
		_, err := d.Lstat(tc.rel)
		if !errors.Is(err, tc.want) || errors.Is(err, fs.ErrNotExist) != tc.notExisting {
			t.Errorf("Lstat(%q) = %v, want %v", tc.rel, err, tc.want)
		}
		// A cache that resolved the directory already answers alike.
		c := d.LstatCache()
		c.Lstat("dir/f")
		_, err = c.Lstat(tc.rel)
		if !errors.Is(err, tc.want) || errors.Is(err, fs.ErrNotExist) != tc.notExisting {
			t.Errorf("LstatCache.Lstat(%q) = %v, want %v", tc.rel, err, tc.want)
		}
		c.Close()
	}
	// A dangling link in a parent position is not created through.
	must(t, os.Symlink("nowhere", filepath.Join(base, "dangling")))
	for _, rel := range []string{"dangling/f", "dangling/x/f"} {
		if _, err := d.Lstat(rel); !errors.Is(err, ErrSymlinkInPath) || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Lstat(%q) = %v, want ErrSymlinkInPath", rel, err)
		}
		if _, err := d.CreateTemp(rel); !errors.Is(err, ErrSymlinkInPath) {
			t.Errorf("CreateTemp(%q) = %v, want ErrSymlinkInPath", rel, err)
		}
		if err := d.Mkdir(rel, Meta{Mode: 0o755}); !errors.Is(err, ErrSymlinkInPath) {
			t.Errorf("Mkdir(%q) = %v, want ErrSymlinkInPath", rel, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(base, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the dangling link's target was made: %v", err)
	}
	for _, rel := range []string{"dir", "dir/f", "link"} {
		fi, err := d.Lstat(rel)
		must(t, err)
		if want := lstat(t, base, rel); !SameFile(fi, want) || fi.Mode() != want.Mode() || fi.Name() != want.Name() {
			t.Errorf("Lstat(%q) = %v %v, want %v %v", rel, fi.Name(), fi.Mode(), want.Name(), want.Mode())
		}
	}
}

// TestReadDir: entries sorted, typed from the listing, a symbolic link
// reported as one; the base itself is listed as ".".
func TestReadDir(t *testing.T) {
	d, base := newDir(t)
	put(t, d, "dir/f", "x", Meta{Mode: 0o644})
	must(t, d.Mknod("dir/p", Meta{Mode: fs.ModeNamedPipe | 0o600}, 0))
	must(t, d.Mkdir("dir/sub", Meta{Mode: 0o755}))
	must(t, d.Symlink("dir/l", "sub", Meta{}))
	must(t, d.Symlink("dir/out", t.TempDir(), Meta{}))
	tmp, err := d.CreateTemp("dir/g")
	must(t, err)
	defer tmp.Abort()
	ents, err := d.ReadDir("dir")
	must(t, err)
	var got []string
	for _, e := range ents {
		got = append(got, fmt.Sprintf("%s %v", e.Name(), e.Type()))
		fi, err := e.Info()
		must(t, err)
		if want := lstat(t, base, "dir/"+e.Name()); fi.Mode() != want.Mode() || !SameFile(fi, want) {
			t.Errorf("%s: Info %v, want %v", e.Name(), fi.Mode(), want.Mode())
		}
		if e.IsDir() != (e.Type() == fs.ModeDir) {
			t.Errorf("%s: IsDir %v with type %v", e.Name(), e.IsDir(), e.Type())
		}
	}
	want := []string{tmp.Name()[len("dir/"):] + " ----------", "f ----------", "l L---------", "out L---------", "p p---------", "sub d---------"}
	if !slices.Equal(got, want) {
		t.Errorf("ReadDir(dir) = %q, want %q", got, want)
	}
	ents, err = d.ReadDir(".")
	if err != nil || len(ents) != 1 || ents[0].Name() != "dir" || !ents[0].IsDir() {
		t.Errorf("ReadDir(.) = %v, %v", ents, err)
	}
	for rel, want := range map[string]error{"dir/l": ErrSymlinkInPath, "dir/f": ErrNotDir, "missing": fs.ErrNotExist, "a//b": ErrBadPath} {
		if _, err := d.ReadDir(rel); !errors.Is(err, want) {
			t.Errorf("ReadDir(%q) = %v, want %v", rel, err, want)
		}
	}
}

// TestWalkDir: the walk visits what fs.WalkDir would, in its order, but
// enters no symbolic link, the root included, and honours SkipDir and
// SkipAll.
func TestWalkDir(t *testing.T) {
	d, base := newDir(t)
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), nil, 0o600))
	for _, rel := range []string{"a/b/f", "a/c", "a/z/y", "top"} {
		put(t, d, rel, "x", Meta{Mode: 0o644})
	}
	must(t, d.Symlink("a/in", "b", Meta{}))
	must(t, d.Symlink("a/out", outside, Meta{}))
	must(t, d.Symlink("root", "a", Meta{}))
	walk := func(root string, skip map[string]error) []string {
		var got []string
		err := d.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				got = append(got, p+" error")
				return nil
			}
			got = append(got, fmt.Sprintf("%s %v", p, e.Type()))
			return skip[p]
		})
		must(t, err)
		return got
	}
	all := []string{". d---------", "a d---------", "a/b d---------", "a/b/f ----------", "a/c ----------",
		"a/in L---------", "a/out L---------", "a/z d---------", "a/z/y ----------", "root L---------", "top ----------"}
	if got := walk(".", nil); !slices.Equal(got, all) {
		t.Errorf("WalkDir(.) = %q\nwant %q", got, all)
	}
	if got, want := walk("root", nil), []string{"root L---------"}; !slices.Equal(got, want) {
		t.Errorf("WalkDir(root) = %q, want %q", got, want)
	}
	if got, want := walk("root/b", nil), []string{"root/b error"}; !slices.Equal(got, want) {
		t.Errorf("WalkDir(root/b) = %q, want %q", got, want)
	}
	skipped := walk(".", map[string]error{"a/b": fs.SkipDir, "a/c": fs.SkipDir, "root": fs.SkipAll})
	if want := []string{". d---------", "a d---------", "a/b d---------", "a/c ----------", "root L---------"}; !slices.Equal(skipped, want) {
		t.Errorf("WalkDir with skips = %q, want %q", skipped, want)
	}
	// A directory swapped for a symlink after its listing is not entered:
	// fn hears of it with ErrSymlinkInPath.
	var got []string
	err := d.WalkDir("a", func(p string, e fs.DirEntry, err error) error {
		if p == "a/b" && err == nil {
			must(t, os.Rename(filepath.Join(base, "a/b"), filepath.Join(base, "moved")))
			must(t, os.Symlink(outside, filepath.Join(base, "a/b")))
		}
		if err != nil {
			if !errors.Is(err, ErrSymlinkInPath) {
				t.Errorf("%s: %v, want ErrSymlinkInPath", p, err)
			}
			got = append(got, p+" error")
		} else {
			got = append(got, p)
		}
		return nil
	})
	must(t, err)
	if want := []string{"a", "a/b", "a/b error", "a/c", "a/in", "a/out", "a/z", "a/z/y"}; !slices.Equal(got, want) {
		t.Errorf("WalkDir over a swapped directory = %q, want %q", got, want)
	}
}
