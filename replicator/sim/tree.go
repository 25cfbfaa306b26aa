package sim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/replicator/stage"
)

// State is what a member's base directory holds, path by path.
type State map[string]Entry

// Entry is one path's kind, metadata and content.
type Entry struct {
	Mode   fs.FileMode
	Size   int64
	Hash   uint64
	Target string
	Mtime  int64 // non-directories only: a directory's mtime moves with its entries
	Ino    uint64
}

// Snapshot reads the member's base directory without following links.
// Temp files are listed under their own names, so a check can find them.
func (n *Node) Snapshot() (State, error) {
	st := State{}
	err := filepath.WalkDir(n.Base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(n.Base, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := Entry{Mode: fi.Mode()}
		if s, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.Ino = s.Ino
		}
		switch {
		case fi.Mode().IsRegular():
			h, err := n.hashOf(p, fi)
			if err != nil {
				return err
			}
			e.Size, e.Hash, e.Mtime = fi.Size(), h, fi.ModTime().UnixNano()
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Target, _ = os.Readlink(p)
			e.Mtime = fi.ModTime().UnixNano()
		case fi.IsDir():
		default:
			e.Mtime = fi.ModTime().UnixNano()
		}
		st[filepath.ToSlash(rel)] = e
		return nil
	})
	return st, err
}

// hashKey identifies a file version for the snapshot's hash cache: a
// file whose inode, size, mtime and ctime are unchanged is not read again.
type hashKey struct {
	ino          uint64
	size         int64
	mtime, ctime int64
}

func (n *Node) hashOf(p string, fi fs.FileInfo) (uint64, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	var k hashKey
	if ok {
		k = hashKey{st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano()}
		if c, hit := n.hashes[p]; hit && c.key == k {
			return c.hash, nil
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	h := xxhash.Sum64(b)
	if ok {
		if n.hashes == nil {
			n.hashes = map[string]cachedHash{}
		}
		n.hashes[p] = cachedHash{k, h}
	}
	return h, nil
}

type cachedHash struct {
	key  hashKey
	hash uint64
}

// Diff lists how b differs from a (at most max lines; inode numbers do not
// count).
func Diff(a, b State, max int) []string {
	var out []string
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		x, inA := a[k]
		y, inB := b[k]
		x.Ino, y.Ino = 0, 0
		switch {
		case !inA:
			out = append(out, fmt.Sprintf("+%s %v", k, y.Mode))
		case !inB:
			out = append(out, fmt.Sprintf("-%s %v", k, x.Mode))
		case x != y:
			out = append(out, fmt.Sprintf("~%s %+v vs %+v", k, x, y))
		}
		if len(out) >= max {
			break
		}
	}
	return out
}

// History remembers every content each path ever had on any member, so a
// check can tell an old or new version from a torn one.
type History map[string]map[uint64]bool

// Add records the regular files of st.
func (h History) Add(st State) {
	for p, e := range st {
		if e.Mode.IsRegular() {
			if h[p] == nil {
				h[p] = map[uint64]bool{}
			}
			h[p][e.Hash] = true
		}
	}
}

// Gen builds and mutates trees from the cluster's seeded random source.
type Gen struct {
	rng   *rand.Rand
	clock time.Time
}

// NewGen returns a generator drawing from seed.
func NewGen(seed uint64) *Gen {
	return &Gen{rng: rand.New(rand.NewPCG(seed, 0x7e3)), clock: time.Unix(1_600_000_000, 0)}
}

func (g *Gen) mtime() time.Time {
	g.clock = g.clock.Add(time.Duration(1+g.rng.IntN(1000)) * time.Second)
	return g.clock
}

// size draws a file size: mostly small, some empty, some large enough to
// be sent as deltas of several chunks.
func (g *Gen) size() int {
	switch r := g.rng.IntN(20); {
	case r < 2:
		return 0
	case r < 12:
		return 1 + g.rng.IntN(4000)
	case r < 17:
		return 4000 + g.rng.IntN(60000)
	}
	return 100_000 + g.rng.IntN(200_000)
}

func (g *Gen) content(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := g.rng.Uint64()
		for k := 0; k < 8 && i+k < n; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

// Populate fills base with a random tree of about files files.
func (g *Gen) Populate(base string, files int) error {
	dirs := []string{"."}
	for range 1 + g.rng.IntN(5) {
		d := path.Join(dirs[g.rng.IntN(len(dirs))], fmt.Sprintf("d%d", g.rng.IntN(100)))
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			return err
		}
		dirs = append(dirs, d)
	}
	for range files {
		if err := g.newFile(base, path.Join(dirs[g.rng.IntN(len(dirs))], fmt.Sprintf("f%d", g.rng.IntN(1000)))); err != nil {
			return err
		}
	}
	if g.rng.IntN(2) == 0 {
		_ = os.Symlink("../elsewhere", filepath.Join(base, dirs[g.rng.IntN(len(dirs))], "link"))
	}
	return nil
}

func (g *Gen) newFile(base, rel string) error {
	p := filepath.Join(base, rel)
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return nil
	}
	if err := os.WriteFile(p, g.content(g.size()), fs.FileMode(0o600|g.rng.IntN(0o100))); err != nil {
		return err
	}
	t := g.mtime()
	return os.Chtimes(p, t, t)
}

// Mutate changes a few paths of base the way people do: edits in the
// middle of large files, appends, new files, renames, deletions, mode
// changes and type changes.
func (g *Gen) Mutate(base string, n int) error {
	files, dirs, err := list(base)
	if err != nil {
		return err
	}
	for range n {
		if len(files) == 0 {
			return g.newFile(base, fmt.Sprintf("new%d", g.rng.IntN(1000)))
		}
		f := files[g.rng.IntN(len(files))]
		p := filepath.Join(base, f)
		var err error
		switch g.rng.IntN(8) {
		case 0, 1: // edit in the middle
			err = g.edit(p)
		case 2:
			err = g.newFile(base, path.Join(dirs[g.rng.IntN(len(dirs))], fmt.Sprintf("n%d", g.rng.IntN(1000))))
		case 3: // rename
			err = os.Rename(p, filepath.Join(base, dirs[g.rng.IntN(len(dirs))], fmt.Sprintf("r%d", g.rng.IntN(1000))))
		case 4:
			err = os.Remove(p)
		case 5:
			err = os.Chmod(p, fs.FileMode(0o600|g.rng.IntN(0o100)))
		case 6: // a file becomes a directory
			if err = os.Remove(p); err == nil {
				err = os.Mkdir(p, 0o755)
			}
		case 7:
			if d := dirs[g.rng.IntN(len(dirs))]; d != "." && g.rng.IntN(3) == 0 {
				err = os.RemoveAll(filepath.Join(base, d)) // a whole directory goes
			} else {
				err = g.edit(p)
			}
		}
		// A mutation that does not apply (the name it drew is taken by
		// a directory, the file went with its directory) is skipped.
		if err != nil && !os.IsNotExist(err) && !os.IsExist(err) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EISDIR) {
			return err
		}
		if files, dirs, err = list(base); err != nil {
			return err
		}
	}
	return nil
}

// edit overwrites a few bytes inside a file (or appends to a short one).
func (g *Gen) edit(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil {
		off := int64(0)
		if fi.Size() > 0 {
			off = g.rng.Int64N(fi.Size())
		}
		_, err = f.WriteAt(g.content(1+g.rng.IntN(5000)), off)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	t := g.mtime()
	return os.Chtimes(p, t, t)
}

// list returns the regular files and directories of base (never a temp).
func list(base string) (files, dirs []string, err error) {
	dirs = []string{"."}
	err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == "." || stage.IsTempName(d.Name()):
		case d.IsDir():
			dirs = append(dirs, rel)
		case d.Type().IsRegular():
			files = append(files, rel)
		}
		return nil
	})
	return files, dirs, err
}

// Reindex brings the member's index up to date with its base directory
// (after the test changed files behind the daemon's back, as a rescan
// would).
func (n *Node) Reindex() error {
	_, err := n.index.Scan(context.Background())
	return err
}
