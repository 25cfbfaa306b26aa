package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
)

// bufSize is the size of one write: large enough that the per-call cost
// vanishes next to the copy, small enough to stay in cache.
const bufSize = 1 << 20

// seed derives the ChaCha8 seed of one stream from a tag and two numbers,
// so every file (and every modify generation) has its own stream.
func seed(tag string, a, b uint64) [32]byte {
	var s [32]byte
	copy(s[:16], tag)
	binary.LittleEndian.PutUint64(s[16:], a)
	binary.LittleEndian.PutUint64(s[24:], b)
	return s
}

// writeFile writes size bytes of the stream seeded with s to path.
func writeFile(path string, size int64, s [32]byte) error {
	if err := writeStream(path, size, rand.NewChaCha8(s), make([]byte, min(size, bufSize))); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	return nil
}

// writeStream writes size bytes from src to path, reusing buf.
func writeStream(path string, size int64, src *rand.ChaCha8, buf []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err // a *PathError: names the operation and the path
	}
	for left := size; left > 0; {
		b := buf[:min(left, int64(len(buf)))]
		_, _ = src.Read(b) // ChaCha8.Read never fails
		if _, err := f.Write(b); err != nil {
			f.Close()
			return err
		}
		left -= int64(len(b))
	}
	return f.Close()
}

// mixedSize is the size of file i of the mixed set: 1 B .. 512 KiB.
func mixedSize(i int, _ *rand.Rand) int64 { return 1 << (i % 20) }

// fixedSize returns the size function of the fixed set: every file size bytes.
func fixedSize(size int64) func(int, *rand.Rand) int64 {
	return func(int, *rand.Rand) int64 { return size }
}

// uniformSize returns the size function of the small set.
func uniformSize(maxSize int64) func(int, *rand.Rand) int64 {
	return func(_ int, r *rand.Rand) int64 { return r.Int64N(maxSize + 1) }
}

// writeTree writes n files over dirs subdirectories of dir; size gives
// file i's size, drawn from the file's own stream when it is random.
func writeTree(dir string, n, dirs int, tag string, size func(int, *rand.Rand) int64) error {
	for d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, dirName(d)), 0o755); err != nil {
			return fmt.Errorf("tree: %w", err)
		}
	}
	buf := make([]byte, bufSize)
	for i := range n {
		src := rand.NewChaCha8(seed(tag, uint64(i), 0))
		sz := size(i, rand.New(src))
		path := filepath.Join(dir, dirName(i*dirs/n), fmt.Sprintf("f%07d", i))
		if err := writeStream(path, sz, src, buf); err != nil {
			return fmt.Errorf("tree file %d: %w", i, err)
		}
	}
	return nil
}

func dirName(d int) string { return fmt.Sprintf("d%04d", d) }

type modStats struct {
	files, total int
	bytes        int64
	changed      []string // the picked files, relative to the directory, in path order
}

// modify changes pct percent of the regular files under dir, picked by a
// stream seeded with gen; see the command doc.
func modify(dir string, pct float64, gen uint64) (modStats, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return modStats{}, fmt.Errorf("modify: %w", err)
	}
	st := modStats{total: len(files)}
	k := int(math.Round(float64(len(files)) * pct / 100))
	if k == 0 && pct > 0 && len(files) > 0 {
		k = 1
	}
	src := rand.NewChaCha8(seed("modify", gen, 0))
	r := rand.New(src)
	picked := r.Perm(len(files))[:k]
	// In path order, so the disk sees the changes front to back.
	slices.Sort(picked)
	for _, i := range picked {
		n, err := modifyFile(files[i], src, r)
		if err != nil {
			return st, fmt.Errorf("modify: %w", err)
		}
		st.files++
		st.bytes += n
		rel, err := filepath.Rel(dir, files[i])
		if err != nil {
			return st, fmt.Errorf("modify: %w", err)
		}
		st.changed = append(st.changed, rel)
	}
	return st, nil
}

// modifyFile overwrites up to 4 KiB of path at a random position with new
// bytes, or appends 100 bytes to an empty file, and returns the bytes
// written.
func modifyFile(path string, src *rand.ChaCha8, r *rand.Rand) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	n := min(size, 4096)
	off := r.Int64N(size - n + 1)
	if size == 0 {
		n = 100
	}
	old := make([]byte, n)
	if size > 0 {
		if _, err := f.ReadAt(old, off); err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err) // io.EOF names no path
		}
	}
	b := make([]byte, n)
	_, _ = src.Read(b)
	// Random bytes can equal the old ones (1 in 256 for a 1-byte file);
	// the benchmark needs a real change.
	if size > 0 && bytes.Equal(b, old) {
		b[0] ^= 0xff
	}
	if _, err := f.WriteAt(b, off); err != nil {
		return 0, err
	}
	return n, f.Close()
}

// patchStats says what patch changed.
type patchStats struct {
	off, n, size int64
}

// patch overwrites n bytes in the middle of the regular file path (from
// offset (size-n)/2) with bytes of a stream seeded with gen and the size,
// guaranteed to differ from the old ones, so the change is real and the
// same arguments change the same bytes the same way.
func patch(path string, n int64, gen uint64) (patchStats, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return patchStats{}, fmt.Errorf("patch: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return patchStats{}, fmt.Errorf("patch: %w", err)
	}
	st := patchStats{n: n, size: fi.Size(), off: (fi.Size() - n) / 2}
	if !fi.Mode().IsRegular() || n > st.size {
		return patchStats{}, fmt.Errorf("patch %s: %d bytes wanted, the file is not a regular file of at least that size (%d bytes)", path, n, st.size)
	}
	old := make([]byte, n)
	if _, err := f.ReadAt(old, st.off); err != nil {
		return patchStats{}, fmt.Errorf("patch: read %s: %w", path, err) // io.EOF names no path
	}
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(seed("patch", gen, uint64(st.size))).Read(b)
	// Equal bytes would make no change; flip every byte that happens to
	// match (1 in 256 each) so that all n differ.
	for i := range b {
		if b[i] == old[i] {
			b[i] ^= 0xff
		}
	}
	if _, err := f.WriteAt(b, st.off); err != nil {
		return patchStats{}, fmt.Errorf("patch: %w", err)
	}
	if err := f.Close(); err != nil {
		return patchStats{}, fmt.Errorf("patch: %w", err)
	}
	return st, nil
}
