package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// apply writes t into dst as a makuo receiver would and returns the time
// of each phase.
func apply(cfg config, t *tree, dst string) (phases, error) {
	var ph phases
	root := os.Geteuid() == 0
	start := time.Now()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return ph, err
	}
	// Directories first, each made from its parent's descriptor and kept
	// open for the files in it.
	fds := make([]int, len(t.dirs))
	defer func() {
		for _, fd := range fds {
			if fd > 0 {
				unix.Close(fd)
			}
		}
	}()
	index := map[string]int{}
	for i, rel := range t.dirs {
		index[rel] = i
		if rel == "." {
			fd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return ph, fmt.Errorf("open %s: %w", dst, err)
			}
			fds[i] = fd
			continue
		}
		parent := fds[index[filepath.Dir(rel)]]
		name := filepath.Base(rel)
		if err := unix.Mkdirat(parent, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return ph, fmt.Errorf("mkdir %s: %w", filepath.Join(dst, rel), err)
		}
		fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return ph, fmt.Errorf("open %s: %w", filepath.Join(dst, rel), err)
		}
		fds[i] = fd
	}
	// The group a new file gets in each directory: ours, or the
	// directory's where it has the setgid bit. A file created with the
	// owner it is to have needs no chown, which makuo leaves out too.
	newGid := make([]int, len(fds))
	for i, fd := range fds {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return ph, fmt.Errorf("stat %s: %w", filepath.Join(dst, t.dirs[i]), err)
		}
		newGid[i] = os.Getegid()
		if st.Mode&unix.S_ISGID != 0 {
			newGid[i] = int(st.Gid)
		}
	}
	ph.mkdir = time.Since(start)
	for first := 0; first < len(t.files); first += cfg.batch {
		batch := t.files[first:min(first+cfg.batch, len(t.files))]
		mark := time.Now()
		for k := range batch {
			f := &batch[k]
			chown := root && (f.uid != os.Geteuid() || f.gid != newGid[f.dir])
			if err := create(fds[f.dir], tempName(first+k), f, chown); err != nil {
				return ph, fmt.Errorf("%s: %w", filepath.Join(dst, batch[k].rel), err)
			}
		}
		ph.create += time.Since(mark)
		if err := syncfs(cfg, fds[0], &ph); err != nil {
			return ph, fmt.Errorf("syncfs %s: %w", dst, err)
		}
		mark = time.Now()
		for k := range batch {
			dirfd := fds[batch[k].dir]
			if err := unix.Renameat(dirfd, tempName(first+k), dirfd, batch[k].name); err != nil {
				return ph, fmt.Errorf("rename %s: %w", filepath.Join(dst, batch[k].rel), err)
			}
		}
		ph.rename += time.Since(mark)
		if err := syncfs(cfg, fds[0], &ph); err != nil {
			return ph, fmt.Errorf("syncfs %s: %w", dst, err)
		}
	}
	return ph, nil
}

// tempName is the temp name of file i: the length of makuo's.
func tempName(i int) string { return fmt.Sprintf(".floor-%016x.tmp", i) }

// create writes f under the temp name tmp in dirfd with its metadata,
// its owner only if chown.
func create(dirfd int, tmp string, f *file, chown bool) error {
	fd, err := unix.Openat(dirfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create temp: %w", err)
	}
	err = write(fd, f.content)
	if err == nil && chown {
		err = unix.Fchown(fd, f.uid, f.gid)
	}
	if err == nil {
		err = unix.Fchmod(fd, f.mode)
	}
	if err == nil {
		err = futimens(fd, f.mtime)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

// futimens sets the times through the descriptor, as makuo does:
// utimensat(fd, NULL, ts, 0), which x/sys/unix offers only in path form.
func futimens(fd int, mtime unix.Timespec) error {
	ts := [2]unix.Timespec{mtime, mtime}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("utimens: %w", errno)
	}
	return nil
}

func write(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

func syncfs(cfg config, fd int, ph *phases) error {
	if !cfg.sync {
		return nil
	}
	mark := time.Now()
	err := unix.Syncfs(fd)
	ph.sync += time.Since(mark)
	return err
}
