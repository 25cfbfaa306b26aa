package apply

import (
	"errors"
	"io"
	"math/bits"

	"github.com/cespare/xxhash/v2"

	"github.com/makuo/makuo/replicator/session"
	"github.com/makuo/makuo/replicator/stage"
	"github.com/makuo/makuo/replicator/wire"
)

// writeBufSize bounds the write-combining buffer of one file being
// received.
const writeBufSize = 256 << 10

// maxOpenTemps bounds the temp files a receiver holds open with their
// write buffers. Under loss most files of a big tree wait for a repair;
// open, they would cost a descriptor and a buffer each.
const maxOpenTemps = 128

// file is the state of a file whose content is being received. Blocks
// mostly arrive in order: they are gathered in wbuf (starting at file
// offset woff) and written in large pieces, and the whole-file hash
// advances over the received prefix as it grows, so verifying a complete
// file costs no second read.
type file struct {
	entry  int
	e      *wire.Entry
	tmp    *stage.Temp
	wbuf   []byte
	woff   int64
	digest *xxhash.Digest
	hashed int64
	check  *chunkCheck // set: a delta verified chunk by chunk, digest unused
	listed bool        // in Applier.written
	busy   func()
}

// write stages b at file offset off, combining contiguous blocks in a
// buffer from pool.
func (f *file) write(b []byte, off int64, pool *bufPool) error {
	if len(f.wbuf) > 0 && off == f.woff+int64(len(f.wbuf)) && len(f.wbuf)+len(b) <= cap(f.wbuf) {
		f.wbuf = append(f.wbuf, b...)
		return nil
	}
	if err := f.flush(); err != nil {
		return err
	}
	if f.wbuf == nil {
		f.wbuf = pool.get(min(writeBufSize, max(int(f.e.Size), len(b))))
	}
	if len(b) > cap(f.wbuf) {
		_, err := f.tmp.WriteAt(b, off)
		return err
	}
	f.woff = off
	f.wbuf = append(f.wbuf[:0], b...)
	return nil
}

// flush writes the combined blocks out.
func (f *file) flush() error {
	if len(f.wbuf) == 0 {
		return nil
	}
	_, err := f.tmp.WriteAt(f.wbuf, f.woff)
	f.wbuf = f.wbuf[:0]
	return err
}

// hashTo feeds the digest up to end, from the write buffer when it holds
// those bytes, else from the temp file.
func (f *file) hashTo(end int64) error {
	if f.check != nil {
		return f.checkTo(end)
	}
	if end <= f.hashed {
		return nil
	}
	if f.hashed >= f.woff && end <= f.woff+int64(len(f.wbuf)) {
		f.digest.Write(f.wbuf[f.hashed-f.woff : end-f.woff])
		f.hashed = end
		return nil
	}
	if err := f.flush(); err != nil {
		return err
	}
	var src io.Reader = io.NewSectionReader(f.tmp, f.hashed, end-f.hashed)
	if f.busy != nil {
		src = &busyReader{r: src, f: f.busy}
	}
	if _, err := io.Copy(f.digest, src); err != nil {
		return err
	}
	f.hashed = end
	return nil
}

// restart forgets the hash progress: the content is rewritten (a delta
// plan, or a delta that failed and is fetched whole).
func (f *file) restart(pool *bufPool) error {
	err := f.flush()
	pool.put(f.wbuf)
	f.wbuf = nil
	f.digest.Reset()
	f.hashed = 0
	f.check = nil
	return err
}

// busyReader calls f every few MiB read.
type busyReader struct {
	r    io.Reader
	f    func()
	read int
}

func (b *busyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += n
	if b.read > 8<<20 {
		b.read = 0
		b.f()
	}
	return n, err
}

// openFile returns the write state of entry i, creating its temp file.
func (s *Session) openFile(i int) (*file, error) {
	if f := s.files[i]; f != nil {
		return f, nil
	}
	we, _, ok := s.r.Lookup(i)
	if !ok {
		return nil, errors.New("bug: write to an entry not offered")
	}
	e := &we
	t, err := s.createTemp(i, e)
	if err != nil {
		return nil, err
	}
	f := &file{entry: i, e: e, tmp: t, digest: xxhash.New()}
	if s.a.cfg.Busy > 0 {
		f.busy = s.busy
	}
	s.files[i] = f
	return f, nil
}

// createTemp creates the temp file of entry i, first removing a directory
// that decide found where the file goes (the sender's tree wins; the
// conflict rule kept it at decide time if it held local edits). One made
// since fails the rename.
func (s *Session) createTemp(i int, e *wire.Entry) (*stage.Temp, error) {
	d := s.a.cfg.Dir
	if n := s.notes[i]; n != nil && n.replaceDir {
		if fi, err := d.Lstat(e.Path); err == nil && fi.IsDir() {
			if err := d.RemoveAll(e.Path); err != nil {
				return nil, err
			}
			s.a.noteApplied(e.Path, s.r.Key().Node)
		}
	}
	return d.CreateTemp(e.Path)
}

// write runs a write effect and reports its outcome.
func (s *Session) write(ef session.Effect) *session.Ready {
	f, err := s.openFile(ef.Entry)
	if err == nil && len(ef.Bytes) > 0 {
		s.a.noteWritten(f)
		err = f.write(ef.Bytes, ef.Offset, &s.a.wbufs)
	}
	if err == nil {
		err = f.hashTo(ef.Hashed)
	}
	if err != nil {
		s.dropFile(ef.Entry)
		return s.r.Wrote(ef.Entry, session.Failed, fail(err))
	}
	if !ef.Last {
		return nil
	}
	v, fl := s.finish(f)
	if v == session.Mismatch {
		if err := f.restart(&s.a.wbufs); err != nil {
			v, fl = session.Failed, fail(err)
		}
	}
	if v == session.Failed {
		s.dropFile(ef.Entry)
	}
	return s.r.Wrote(ef.Entry, v, fl)
}

// dropFile aborts entry i's temp file and frees its buffer.
func (s *Session) dropFile(i int) {
	f := s.files[i]
	if f == nil {
		return
	}
	if f.tmp != nil {
		f.tmp.Abort()
		f.tmp = nil
	}
	s.a.wbufs.put(f.wbuf)
	f.wbuf = nil
	delete(s.files, i)
}

// noteWritten lists f as written to and parks the oldest listed file still
// waiting for blocks once more than maxOpenTemps are listed.
func (a *Applier) noteWritten(f *file) {
	if f.listed {
		return
	}
	f.listed = true
	a.written = append(a.written, f)
	for len(a.written) > maxOpenTemps {
		old := a.written[0]
		a.written[0] = nil
		a.written = a.written[1:]
		old.listed = false
		if old.tmp != nil {
			a.park(old)
		}
	}
}

// park writes out f's buffered blocks, frees the buffer and closes the
// temp file until its next block arrives.
func (a *Applier) park(f *file) {
	err := f.flush()
	if err == nil {
		err = f.tmp.Park()
	}
	a.wbufs.put(f.wbuf)
	f.wbuf = nil
	if err != nil {
		// The next write reopens it and reports the error then.
		a.cfg.Log.Debug("parking a temp file failed", "path", f.e.Path, "err", err)
	}
}

// bufPool recycles the write-combining buffers of files being received,
// in power-of-two size classes from minPooledBuf to writeBufSize. Without
// it, a push of 100,000 small files allocates (and leaves to the garbage
// collector) a buffer per file, which for a while doubles the heap. It
// keeps a few buffers per class, and is owned by one receive loop.
type bufPool struct {
	free [poolClasses][][]byte
}

const (
	minPooledBuf = 4 << 10
	poolClasses  = 7 // 4 KiB ... 256 KiB (writeBufSize)
	poolKeep     = 8 // free buffers kept per class
)

// get returns an empty buffer with room for at least n bytes (at most
// writeBufSize).
func (p *bufPool) get(n int) []byte {
	c := poolClass(n)
	if c >= poolClasses {
		return make([]byte, 0, n)
	}
	if f := p.free[c]; len(f) > 0 {
		b := f[len(f)-1]
		f[len(f)-1] = nil
		p.free[c] = f[:len(f)-1]
		return b[:0]
	}
	return make([]byte, 0, minPooledBuf<<c)
}

// put gives b back; buffers that did not come from get are dropped.
func (p *bufPool) put(b []byte) {
	c := poolClass(cap(b))
	if c >= poolClasses || cap(b) != minPooledBuf<<c || len(p.free[c]) >= poolKeep {
		return
	}
	p.free[c] = append(p.free[c], b)
}

// poolClass is the smallest class whose buffers hold n bytes.
func poolClass(n int) int {
	if n <= minPooledBuf {
		return 0
	}
	return bits.Len(uint(n-1)) - bits.Len(uint(minPooledBuf-1))
}
