package apply

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/makuo/makuo/replicator/chunk"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/tree"
	"github.com/makuo/makuo/replicator/wire"
)

// plan switches entry i to its chunk layout and copies into its temp file
// every chunk its local basis already holds; have[c] tells which. The
// copies share the basis's blocks where the filesystem can (see
// stage.Temp.CopyFrom). If the basis's index key proves its chunk list
// (trustBasis), the file is then verified chunk by chunk, the received
// ones only (chunkCheck); otherwise by its whole-file hash, as a file sent
// whole.
func (s *Session) plan(i int, refs []wire.ChunkRef) ([]bool, *wire.Failure) {
	f, err := s.openFile(i)
	if err == nil {
		err = f.restart(&s.a.wbufs)
	}
	if err != nil {
		s.dropFile(i)
		return nil, fail(err)
	}
	have := make([]bool, len(refs))
	n := s.notes[i]
	if n == nil || n.basisPath == "" {
		return have, nil
	}
	// The new version's list guides chunking a basis the index holds no
	// list of (one received whole): its unchanged chunks are hashed, not
	// rolled over.
	like := refChunks(refs)
	var be tree.Entry
	if err := s.whileBusy(func() (err error) { be, err = s.a.cfg.Index.ChunksLike(n.basisPath, like); return err }); err != nil {
		return have, nil // gone or unreadable since the offer: fetch everything
	}
	basis, err := s.a.cfg.Dir.Open(n.basisPath)
	if err != nil {
		return have, nil
	}
	defer basis.Close()
	runs := matchRuns(refs, be.Chunks)
	var (
		cs      stage.CopyStats
		trusted bool
	)
	err = s.whileBusy(func() (err error) {
		trusted, err = copyRuns(f.tmp, basis, &be, runs, have, &cs)
		return err
	})
	if err != nil {
		s.dropFile(i)
		return nil, fail(err)
	}
	reused := 0
	for _, h := range have {
		if h {
			reused++
		}
	}
	s.a.cfg.Metrics.ChunksReused.Add(float64(reused))
	for how, n := range map[string]int64{"cloned": cs.Cloned, "copied": cs.InKernel, "written": cs.Written} {
		s.a.cfg.Metrics.BasisBytes.WithLabelValues(how).Add(float64(n))
	}
	if trusted {
		if s.a.chunkBuf == nil {
			s.a.chunkBuf = make([]byte, chunk.MaxSize)
		}
		f.check = newChunkCheck(refs, have, s.a.chunkBuf)
	}
	s.a.cfg.Log.Debug("delta basis copied", "path", f.e.Path, "basis", n.basisPath, "chunks", reused, "of", len(refs),
		"cloned", cs.Cloned, "copied_in_kernel", cs.InKernel, "copied", cs.Written, "basis_key_proven", trusted)
	return have, nil
}

// copyRun is a range of the new file that a range of the basis holds:
// chunks first..end-1 of the new chunk list, up to the basis's chunk next.
type copyRun struct {
	src, dst, n int64
	first, end  int
	next        int
}

// matchRuns finds the chunks of refs that the basis's chunk list holds
// (same hash and size) and joins those that follow each other in both
// files into runs, so that an edit in a large file costs a few copy calls.
// A run goes on with the basis's next chunk where it matches, which keeps
// runs whole through repeated content.
func matchRuns(refs []wire.ChunkRef, basis []chunk.Chunk) []copyRun {
	byHash := make(map[uint64]int, len(basis))
	for j := len(basis) - 1; j >= 0; j-- {
		byHash[basis[j].Hash] = j // the first of equal chunks
	}
	var runs []copyRun
	var off int64
	for c, ref := range refs {
		at := off
		off += int64(ref.Size)
		if k := len(runs) - 1; k >= 0 && runs[k].end == c {
			if j := runs[k].next; j < len(basis) && basis[j].Hash == ref.Hash && basis[j].Size == ref.Size {
				runs[k].n += int64(ref.Size)
				runs[k].end, runs[k].next = c+1, j+1
				continue
			}
		}
		j, ok := byHash[ref.Hash]
		if !ok || basis[j].Size != ref.Size {
			continue
		}
		runs = append(runs, copyRun{src: basis[j].Offset, dst: at, n: int64(ref.Size), first: c, end: c + 1, next: j + 1})
	}
	return runs
}

// copyRuns copies the runs from the basis into tmp, marking in have the
// chunks copied. A run the basis no longer holds (it was cut) is left to
// the network. It reports whether the basis's index entry be proves what
// was copied (trustBasis, before and after the copies).
func copyRuns(tmp *stage.Temp, basis *os.File, be *tree.Entry, runs []copyRun, have []bool, cs *stage.CopyStats) (bool, error) {
	trusted := trustBasis(basis, be)
	for _, r := range runs {
		got, err := tmp.CopyFrom(basis, r.src, r.dst, r.n)
		cs.Add(got)
		if errors.Is(err, stage.ErrShortSource) {
			trusted = false
			continue
		}
		if err != nil {
			return false, err
		}
		for c := r.first; c < r.end; c++ {
			have[c] = true
		}
	}
	return trusted && trustBasis(basis, be), nil
}

// trustBasis reports whether the index key of be proves that the open
// basis holds what be's chunk list says: the key the index took when it
// read the content, (Dev, Ino, Size, Mtime, Ctime), is the open file's,
// and that read was neither racy nor unstable. A write after such a read
// changes the key; so the key, checked after the copies, proves that they
// copied what the index hashed, and the copied chunks need no reading.
// The index's cached hashes of unchanged files rest on the same key.
func trustBasis(basis *os.File, be *tree.Entry) bool {
	if be.Unstable || be.Racy || len(be.Chunks) == 0 {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(basis.Fd()), &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && uint64(st.Dev) == be.Dev && st.Ino == be.Ino &&
		st.Size == be.Size && st.Mtim.Nano() == be.Mtime && st.Ctim.Nano() == be.Ctime
}

// refChunks gives refs their offsets.
func refChunks(refs []wire.ChunkRef) []chunk.Chunk {
	out := make([]chunk.Chunk, len(refs))
	var off int64
	for i, r := range refs {
		out[i] = chunk.Chunk{Offset: off, Size: r.Size, Hash: r.Hash}
		off += int64(r.Size)
	}
	return out
}
