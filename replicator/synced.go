package replicator

import (
	"io/fs"
	"sync"
	"syscall"
)

// syncedSet remembers, per path, the signature (size, mtime, inode) of the
// version this member knows every other member has: one it received and
// applied, one it pushed to every member, or one unchanged since the index
// was saved at the last stop. A local file that does not match its
// signature is an edit not replicated yet, which the conflict rule
// protects: a receiver keeps it against an older version, saves it as a
// conflict copy against a newer one, and a rescan's mirror never deletes
// it. Deciding from the file itself, not from what the watcher has
// reported so far, also covers an edit made moments before a conflicting
// version arrives. It is safe for concurrent use.
type syncedSet struct {
	mu sync.Mutex
	m  map[string]fileSig
}

type fileSig struct {
	size, mtime int64
	ino         uint64
}

func sigOf(fi fs.FileInfo) fileSig {
	s := fileSig{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// set records the current version of rel (nil fi: rel is gone).
func (s *syncedSet) set(rel string, fi fs.FileInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]fileSig{}
	}
	if fi == nil {
		delete(s.m, rel)
		return
	}
	s.m[rel] = sigOf(fi)
}

// setSig records a known signature (from the saved index).
func (s *syncedSet) setSig(rel string, sig fileSig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]fileSig{}
	}
	s.m[rel] = sig
}

// localEdit reports whether the file rel, as fi shows it now, is a version
// no other member is known to have.
func (s *syncedSet) localEdit(rel string, fi fs.FileInfo) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sig, ok := s.m[rel]
	return !ok || sig != sigOf(fi)
}
