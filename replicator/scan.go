package replicator

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/makuo/makuo/exclude"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/wire"
)

// ErrOutsideBase reports a push path that is not under the base directory.
var ErrOutsideBase = errors.New("path is outside the base directory")

// scanOptions say what a push covers.
type scanOptions struct {
	recursive bool
	mirror    bool // flag directory roots with EntryMirror (--delete)
	sync      bool // a missing root becomes a KindAbsent entry (--sync)
	excludes  *exclude.Set
}

// scanResult is the sender's view of what it offers.
type scanResult struct {
	entries []wire.Entry
	bytes   uint64 // content bytes of the file entries
}

// relPath turns a path given to msync into a clean path relative to base
// ("." for base itself), refusing anything outside it.
func relPath(base, p string) (string, error) {
	if p == "" {
		return ".", nil
	}
	if filepath.IsAbs(p) {
		r, err := filepath.Rel(base, filepath.Clean(p))
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return "", fmt.Errorf("%s: %w %s", p, ErrOutsideBase, base)
		}
		return filepath.ToSlash(r), nil
	}
	c := path.Clean(filepath.ToSlash(p))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%s: %w %s", p, ErrOutsideBase, base)
	}
	return c, nil
}

// scan builds the entries for roots, in an order receivers can apply:
// parents before children, a hard link's first name before the others.
func (n *Node) scan(roots []string, opt scanOptions) (*scanResult, error) {
	s := &scanState{node: n, opt: opt, seen: map[string]bool{}, links: map[[2]uint64]uint32{}, res: &scanResult{}}
	for _, r := range roots {
		if err := s.root(r); err != nil {
			return nil, err
		}
	}
	return s.res, nil
}

type scanState struct {
	node  *Node
	opt   scanOptions
	seen  map[string]bool
	links map[[2]uint64]uint32 // (dev, ino) → entry index of the first name
	res   *scanResult
}

func (s *scanState) root(rel string) error {
	root := s.node.root
	fi, err := root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		if !s.opt.sync {
			return fmt.Errorf("%s: no such file or directory (use --sync to delete it on the members)", rel)
		}
		if rel == "." {
			return errors.New("the base directory itself cannot be deleted")
		}
		s.add(wire.Entry{Kind: wire.KindAbsent, Path: rel})
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if rel != "." {
		if err := stage.CheckPath(rel); err != nil {
			return err
		}
	}
	if !fi.IsDir() || !s.opt.recursive {
		return s.entry(rel, fi, s.opt.mirror && s.opt.recursive && fi.IsDir())
	}
	first := true
	return fs.WalkDir(root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("scan %s: %w", p, err)
		}
		isRoot := first
		first = false
		if !isRoot && (s.opt.excludes.Match(p, d.IsDir()) || stage.IsTempName(d.Name())) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // vanished since the directory was read
		}
		if err != nil {
			return fmt.Errorf("scan %s: %w", p, err)
		}
		return s.entry(p, info, isRoot && s.opt.mirror)
	})
}

// entry appends the entry for rel, reading the file's hash if needed.
func (s *scanState) entry(rel string, fi fs.FileInfo, mirror bool) error {
	if s.seen[rel] {
		return nil
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	e := wire.Entry{Path: rel, Mode: uint32(fi.Mode().Perm()), Mtime: fi.ModTime().UnixNano()}
	if fi.Mode()&fs.ModeSetuid != 0 {
		e.Mode |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		e.Mode |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		e.Mode |= 0o1000
	}
	if st != nil {
		e.Uid, e.Gid = st.Uid, st.Gid
	}
	if mirror {
		e.Flags |= wire.EntryMirror
	}
	switch m := fi.Mode(); {
	case m.IsDir():
		e.Kind = wire.KindDir
	case m.IsRegular():
		if st != nil && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := s.links[key]; ok {
				e.Kind, e.LinkTo = wire.KindHardlink, first
				s.add(e)
				return nil
			}
			s.links[key] = uint32(len(s.res.entries))
		}
		f, err := s.node.root.Open(rel)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		h, err := s.node.hashes.hash(f, fi, nil)
		f.Close()
		if err != nil {
			return err
		}
		e.Kind, e.Size, e.Hash = wire.KindFile, uint64(fi.Size()), h
		s.res.bytes += e.Size
	case m&fs.ModeSymlink != 0:
		t, err := s.node.root.Readlink(rel)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		e.Kind, e.Target = wire.KindSymlink, t
	case m&fs.ModeNamedPipe != 0:
		e.Kind = wire.KindFifo
	case m&fs.ModeDevice != 0:
		e.Kind = wire.KindBlockDev
		if m&fs.ModeCharDevice != 0 {
			e.Kind = wire.KindCharDev
		}
		if st != nil {
			e.Rdev = st.Rdev
		}
	default:
		return nil // unix sockets and the like are not replicated
	}
	s.add(e)
	return nil
}

func (s *scanState) add(e wire.Entry) {
	s.seen[e.Path] = true
	s.res.entries = append(s.res.entries, e)
}

// openRoot opens the base directory for confined reads.
func openRoot(base string) (*os.Root, error) {
	r, err := os.OpenRoot(base)
	if err != nil {
		return nil, fmt.Errorf("open base directory: %w", err)
	}
	return r, nil
}
