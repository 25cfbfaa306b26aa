package source

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// maxOpenFiles bounds the descriptors a Reader keeps: data goes out file
// after file, and repairs reopen what they need, so a session of a million
// files holds a few descriptors, not a million.
const maxOpenFiles = 64

// ErrChanged reports a file that is no longer the one the scan saw: it was
// replaced (by another file, a symbolic link, a FIFO) since.
var ErrChanged = errors.New("source: file replaced since the scan")

// Reader reads the content of a scan's files for a send session. It never
// follows a symbolic link in the last element nor blocks on a FIFO: each
// file is opened with O_NOFOLLOW|O_NONBLOCK and must still be the regular
// file the scan saw (same device and inode). When that fails, or a read
// does, the blocks of that file go out as zeros: the receivers' hash check
// then fails that file alone, and the session goes on for the others. A
// Reader is not safe for concurrent use.
type Reader struct {
	root  *os.Root
	dirs  Dirs // the files' directories, below root
	sc    *Scan
	files map[int]*os.File
	order []int        // entry indexes, oldest first
	bad   map[int]bool // files that could not be read
}

// NewReader returns a Reader of sc's files under root.
func NewReader(root *os.Root, sc *Scan) *Reader {
	return &Reader{root: root, dirs: Dirs{Root: root}, sc: sc, files: map[int]*os.File{}, bad: map[int]bool{}}
}

// ReadAt fills buf with the content of file entry i at off. It always
// fills buf (with zeros past a file that shrank, or for a file that
// cannot be read); the error, returned the first time a file fails, says
// why, for the log.
func (r *Reader) ReadAt(i int, buf []byte, off int64) error {
	if r.bad[i] {
		clear(buf)
		return nil
	}
	f, err := r.open(i)
	n := 0
	if err == nil {
		n, err = f.ReadAt(buf, off)
		if err == io.EOF {
			// A file that shrank since the scan sends zeros; the
			// receivers' hash check then fails it instead of applying a
			// torn copy.
			err = nil
		}
	}
	clear(buf[n:])
	if err != nil {
		r.bad[i] = true
		r.drop(i)
		return fmt.Errorf("read %s: %w", r.sc.Entries[i].Path, err)
	}
	return nil
}

func (r *Reader) open(i int) (*os.File, error) {
	if f := r.files[i]; f != nil {
		return f, nil
	}
	e := &r.sc.Entries[i]
	if e.Kind != wire.KindFile {
		return nil, fmt.Errorf("bug: entry %d is a %v", i, e.Kind)
	}
	in, name, err := r.dirs.Parent(e.Path)
	if err != nil {
		return nil, err
	}
	f, err := in.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		st, ok := fi.Sys().(*syscall.Stat_t)
		id := r.sc.ids[i]
		if !fi.Mode().IsRegular() || !ok || uint64(st.Dev) != id.dev || st.Ino != id.ino {
			err = ErrChanged
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if len(r.order) >= maxOpenFiles {
		r.drop(r.order[0])
	}
	r.files[i] = f
	r.order = append(r.order, i)
	return f, nil
}

func (r *Reader) drop(i int) {
	f := r.files[i]
	if f == nil {
		return
	}
	f.Close()
	delete(r.files, i)
	for k, j := range r.order {
		if j == i {
			r.order = append(r.order[:k], r.order[k+1:]...)
			break
		}
	}
}

// Open returns the number of files the Reader holds open.
func (r *Reader) Open() int { return len(r.files) }

// Close closes every file.
func (r *Reader) Close() {
	for _, f := range r.files {
		f.Close()
	}
	clear(r.files)
	r.order = r.order[:0]
	r.dirs.Close()
}

// ChunkLists returns the chunk lists of the scan's files i in want, from
// the index (cached while a file is unchanged). A file whose content is no
// longer the one offered (it changed since the scan) or cannot be chunked
// has none: it is sent whole, and the receivers' hash check decides.
//
// An entry's chunk list always comes from the same read as its hash, so a
// list the index holds with the offered hash describes the offered content
// and is taken as it is, even where the index would read the file again
// (a racy entry: one just written, as a file is right after an edit);
// only a file without one is read for it.
func ChunkLists(ix *tree.Index, sc *Scan, want []int) map[int][]wire.ChunkRef {
	out := make(map[int][]wire.ChunkRef, len(want))
	for _, i := range want {
		e := &sc.Entries[i]
		te, ok := ix.Lookup(e.Path)
		if !ok || te.Kind != tree.KindFile || te.Hash != e.Hash || len(te.Chunks) == 0 {
			var err error
			if te, err = ix.Chunks(e.Path); err != nil {
				continue
			}
		}
		if te.Hash != e.Hash || len(te.Chunks) == 0 {
			continue
		}
		refs := make([]wire.ChunkRef, len(te.Chunks))
		for k, c := range te.Chunks {
			refs[k] = wire.ChunkRef{Size: c.Size, Hash: c.Hash}
		}
		out[i] = refs
	}
	return out
}
