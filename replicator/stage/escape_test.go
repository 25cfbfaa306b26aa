package stage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// escapeFixture makes a base with symlinks leading outside: "abs" (absolute
// link to the outside directory), "rel" (relative link to it), "esc" (link
// to a file outside) and "dotdot" (link to the base's parent).
func escapeFixture(t *testing.T) (d *Dir, base, outside, secret string) {
	t.Helper()
	d, base = newDir(t)
	outside = t.TempDir()
	secret = filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1000, 0)
	if err := os.Chtimes(secret, old, old); err != nil {
		t.Fatal(err)
	}
	relOut, err := filepath.Rel(base, outside)
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"abs":    outside,
		"rel":    relOut,
		"esc":    secret,
		"dotdot": "..",
	} {
		if err := os.Symlink(target, filepath.Join(base, name)); err != nil {
			t.Fatal(err)
		}
	}
	return d, base, outside, secret
}

// checkOutside fails t if the outside directory changed: it must hold only
// the untouched secret file.
func checkOutside(t *testing.T, outside, secret string) {
	t.Helper()
	if got := listNames(t, outside); !slices.Equal(got, []string{"secret"}) {
		t.Errorf("outside directory now holds %q", got)
	}
	fi, err := os.Lstat(secret)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(secret)
	if string(b) != "secret" || fi.Mode() != 0o600 || !fi.ModTime().Equal(time.Unix(1000, 0)) {
		t.Errorf("secret changed: %q %v %v", b, fi.Mode(), fi.ModTime())
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Geteuid() {
		t.Errorf("secret owner changed to %d", st.Uid)
	}
}

// TestEscapeParent: every operation whose parent path leads outside the
// base through a symlink fails and creates or changes nothing outside.
func TestEscapeParent(t *testing.T) {
	d, base, outside, secret := escapeFixture(t)
	m := Meta{Mode: 0o777, Uid: 4321, Gid: 4321, SetOwner: true, Mtime: time.Unix(5, 0)}
	for _, dir := range []string{"abs", "rel", "dotdot"} {
		target := "secret"
		if dir == "dotdot" {
			// base's parent holds "base" itself; aim at a new name there.
			target = "x"
		}
		rel := dir + "/" + target
		ops := map[string]error{
			"Mkdir":        d.Mkdir(dir+"/newdir", m),
			"Mkdir deep":   d.Mkdir(dir+"/a/b", m),
			"Symlink":      d.Symlink(rel, "x", m),
			"Link":         d.Link(dir+"/hard", "esc"),
			"Link from":    d.Link("hard", rel),
			"Mknod":        d.Mknod(dir+"/fifo", Meta{Mode: fs.ModeNamedPipe | 0o666}, 0),
			"SetMeta":      d.SetMeta(rel, m),
			"Remove":       d.Remove(rel),
			"RemoveAll":    d.RemoveAll(rel),
			"RemoveAll up": d.RemoveAll(dir + "/..."),
		}
		_, ops["CreateTemp"] = d.CreateTemp(rel)
		_, ops["CreateTemp new"] = d.CreateTemp(dir + "/x")
		_, ops["CreateTemp deep"] = d.CreateTemp(dir + "/deep/x")
		_, ops["Open"] = d.Open(rel)
		_, ops["Lstat"] = d.Lstat(rel)
		_, ops["Readlink"] = d.Readlink(rel)
		for op, err := range ops {
			if err == nil {
				t.Errorf("%s through %q succeeded", op, dir)
			}
		}
		checkOutside(t, outside, secret)
		if _, err := os.Lstat(filepath.Join(filepath.Dir(base), "x")); err == nil {
			t.Errorf("created %s", filepath.Join(filepath.Dir(base), "x"))
		}
	}
	noTemps(t, base)
	noTemps(t, outside)
}

// TestEscapeLastElement: a symlink pointing outside, as the last element,
// is itself replaced, updated or removed; its target is never touched.
func TestEscapeLastElement(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   func(d *Dir) error
		want fs.FileMode // type of "esc" afterwards; 0 regular, ^0 removed
	}{
		{"Commit", func(d *Dir) error {
			tmp, err := d.CreateTemp("esc")
			if err != nil {
				return err
			}
			tmp.Write([]byte("replaced"))
			return tmp.Commit(Meta{Mode: 0o644})
		}, 0},
		{"Symlink", func(d *Dir) error { return d.Symlink("esc", "elsewhere", Meta{Mode: 0o777}) }, fs.ModeSymlink},
		{"Mknod", func(d *Dir) error { return d.Mknod("esc", Meta{Mode: fs.ModeNamedPipe | 0o644}, 0) }, fs.ModeNamedPipe},
		{"Link", func(d *Dir) error {
			if err := d.Mkdir("d", Meta{Mode: 0o755}); err != nil {
				return err
			}
			return d.Link("d/esc2", "esc") // links the symlink itself
		}, fs.ModeSymlink},
		{"SetMeta", func(d *Dir) error {
			return d.SetMeta("esc", Meta{Mode: 0o777, Mtime: time.Unix(7, 0), Uid: 4321, Gid: 4321, SetOwner: os.Geteuid() == 0})
		}, fs.ModeSymlink},
		{"Remove", func(d *Dir) error { return d.Remove("esc") }, ^fs.FileMode(0)},
		{"RemoveAll", func(d *Dir) error { return d.RemoveAll("abs") }, fs.ModeSymlink},
		{"Mkdir", func(d *Dir) error {
			if err := d.Mkdir("esc", Meta{Mode: 0o755}); !errors.Is(err, ErrNotDir) {
				return errors.New("Mkdir over symlink did not fail with ErrNotDir")
			}
			return nil
		}, fs.ModeSymlink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, base, outside, secret := escapeFixture(t)
			if err := tc.op(d); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(filepath.Join(base, "esc"))
			switch {
			case tc.want == ^fs.FileMode(0):
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("esc not removed: %v", err)
				}
			case err != nil:
				t.Fatal(err)
			case fi.Mode().Type() != tc.want:
				t.Errorf("esc is %v, want type %v", fi.Mode(), tc.want)
			}
			checkOutside(t, outside, secret)
			noTemps(t, base)
		})
	}
}

// TestEscapeParentSwapped: the parent directory is replaced by a symlink
// leading outside between CreateTemp and Commit; Commit fails and writes
// nothing outside.
func TestEscapeParentSwapped(t *testing.T) {
	d, base, outside, secret := escapeFixture(t)
	tmp, err := d.CreateTemp("sub/secret")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Write([]byte("evil"))
	// The attacker moves sub away and links it to the outside directory,
	// carrying the temp file along into a place that is still inside.
	if err := os.Rename(filepath.Join(base, "sub"), filepath.Join(base, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(base, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(Meta{Mode: 0o644}); err == nil {
		t.Fatal("Commit through a swapped parent succeeded")
	}
	checkOutside(t, outside, secret)
	// The temp file, now unreachable by its old path, is left for
	// CleanStale.
	if removed, err := d.CleanStale(); removed != 1 || err != nil {
		t.Errorf("CleanStale = %d, %v; want 1, nil", removed, err)
	}
	if got := listNames(t, filepath.Join(base, "moved")); len(got) != 0 {
		t.Errorf("temp left in moved dir: %q", got)
	}
}
