package stage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReadDir lists the directory rel ("." for the base) sorted by name. rel is
// resolved like every path here: a symbolic link in any of its elements,
// the last included, fails with ErrSymlinkInPath. The entries' types come
// from the listing itself and a symbolic link is reported as one, never
// followed. Temp files are listed too; IsTempName tells them apart.
func (d *Dir) ReadDir(rel string) ([]fs.DirEntry, error) {
	if rel != "." {
		if err := CheckPath(rel); err != nil {
			return nil, err
		}
	}
	var ents []dirent
	err := d.inDir(rel, dirRead, func(dirfd int) (err error) {
		ents, err = readDirFd(dirfd)
		return err
	})
	if err != nil {
		return nil, opErr("readdir", rel, err)
	}
	out := make([]fs.DirEntry, len(ents))
	for i, e := range ents {
		out[i] = &dirEntry{d: d, dir: rel, dirent: e}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// WalkDir walks the tree rooted at rel ("." for the base) as fs.WalkDir
// does, lexically ordered, with paths relative to the base, but it never
// follows a symbolic link: one is passed to fn as an entry of type
// fs.ModeSymlink and not entered, be it the root or inside. A directory
// replaced by a symbolic link after it was listed is not entered either:
// fn is called again for it with the ErrSymlinkInPath error of ReadDir.
func (d *Dir) WalkDir(rel string, fn fs.WalkDirFunc) error {
	var err error
	if rel != "." {
		err = CheckPath(rel)
	}
	var fi fs.FileInfo
	if err == nil {
		fi, err = d.lstat(rel)
	}
	if err != nil {
		err = fn(rel, nil, err)
	} else {
		err = d.walk(rel, fs.FileInfoToDirEntry(fi), fn)
	}
	if errors.Is(err, fs.SkipDir) || errors.Is(err, fs.SkipAll) {
		return nil
	}
	return err
}

// walk is fs.WalkDir's recursion over ReadDir.
func (d *Dir) walk(p string, e fs.DirEntry, fn fs.WalkDirFunc) error {
	if err := fn(p, e, nil); err != nil || !e.IsDir() {
		if errors.Is(err, fs.SkipDir) && e.IsDir() {
			err = nil
		}
		return err
	}
	ents, err := d.ReadDir(p)
	if err != nil {
		if err = fn(p, e, err); err != nil {
			if errors.Is(err, fs.SkipDir) {
				err = nil
			}
			return err
		}
	}
	for _, e1 := range ents {
		if err := d.walk(path.Join(p, e1.Name()), e1, fn); err != nil {
			if errors.Is(err, fs.SkipDir) {
				break
			}
			return err
		}
	}
	return nil
}

// dirEntry is an fs.DirEntry from ReadDir. Info resolves the entry again,
// as Lstat does.
type dirEntry struct {
	d   *Dir
	dir string
	dirent
}

func (e *dirEntry) Name() string               { return e.name }
func (e *dirEntry) IsDir() bool                { return e.typ == fs.ModeDir }
func (e *dirEntry) Type() fs.FileMode          { return e.typ }
func (e *dirEntry) Info() (fs.FileInfo, error) { return e.d.lstat(path.Join(e.dir, e.name)) }
func (e *dirEntry) String() string             { return fs.FormatDirEntry(e) }

// dirent is a name and its type bits from a directory listing.
type dirent struct {
	name string
	typ  fs.FileMode
}

// Layout of struct linux_dirent64, the record getdents64 returns.
const (
	direntReclen = int(unsafe.Offsetof(unix.Dirent{}.Reclen))
	direntType   = int(unsafe.Offsetof(unix.Dirent{}.Type))
	direntName   = int(unsafe.Offsetof(unix.Dirent{}.Name))
)

// readDirFd lists the directory open at fd, without "." and "..". A type
// the filesystem does not report (DT_UNKNOWN) is read with fstatat, which
// does not follow a link; an entry that vanished meanwhile is left out.
func readDirFd(fd int) ([]dirent, error) {
	buf := make([]byte, 32<<10)
	var out []dirent
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("getdents: %w", err)
		}
		if n <= 0 {
			return out, nil
		}
		for off := 0; off < n; {
			if off+direntName > n {
				return nil, fmt.Errorf("getdents: record cut at %d of %d bytes", off, n)
			}
			reclen := int(binary.NativeEndian.Uint16(buf[off+direntReclen:]))
			if reclen <= direntName || off+reclen > n {
				return nil, fmt.Errorf("getdents: bad record length %d at %d of %d bytes", reclen, off, n)
			}
			rec := buf[off : off+reclen]
			off += reclen
			name := rec[direntName:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			e := dirent{name: string(name)}
			switch rec[direntType] {
			case unix.DT_REG:
			case unix.DT_DIR:
				e.typ = fs.ModeDir
			case unix.DT_LNK:
				e.typ = fs.ModeSymlink
			case unix.DT_FIFO:
				e.typ = fs.ModeNamedPipe
			case unix.DT_SOCK:
				e.typ = fs.ModeSocket
			case unix.DT_CHR:
				e.typ = fs.ModeDevice | fs.ModeCharDevice
			case unix.DT_BLK:
				e.typ = fs.ModeDevice
			default:
				var st unix.Stat_t
				err := unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW)
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("lstat %q: %w", e.name, err)
				}
				e.typ = fileType(st.Mode)
			}
			out = append(out, e)
		}
	}
}
