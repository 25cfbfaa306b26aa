package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/makuo/makuo/exclude"
)

// The original makuosan changed the group of the files it sent (msync -g)
// itself, as root; the daemon no longer does, so msync does it, with the
// operator's rights, before it asks for the push. The kernel decides
// whether it may: the operator must own the files and belong to GROUP
// (or be root).

// resolveGroup turns -g GROUP, a group name or a number, into a gid.
func resolveGroup(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("-g %s: a group id is 0 or more", name)
		}
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("-g %s: %w", name, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("-g %s: group id %q: %w", name, g.Gid, err)
	}
	return gid, nil
}

// chgrp gives gid to each of paths under base (relative to it, or
// absolute under it), without following symlinks. With recursive it also
// changes everything below a directory, skipping what excl excludes; no
// paths then means everything below base, as a push of -r alone sends.
// It stops at the first path it cannot change.
func chgrp(base string, paths []string, recursive bool, excl *exclude.Set, gid int) error {
	root, err := os.OpenRoot(base)
	if err != nil {
		return fmt.Errorf("-g: base directory: %w", err)
	}
	defer root.Close()
	if len(paths) == 0 {
		return walkChgrp(root, ".", excl, gid, false)
	}
	for _, p := range paths {
		rel, err := relPath(base, p)
		if err != nil {
			return err
		}
		fi, err := root.Lstat(rel)
		if err != nil {
			return fmt.Errorf("-g: %s: %w", quotePath(rel), pathErr(err))
		}
		if recursive && fi.IsDir() {
			err = walkChgrp(root, rel, excl, gid, true)
		} else if !excl.Match(rel, fi.IsDir()) {
			err = lchgrp(root, rel, fi, gid)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// walkChgrp changes dir (when self) and everything below it.
func walkChgrp(root *os.Root, dir string, excl *exclude.Set, gid int, self bool) error {
	return fs.WalkDir(root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("-g: %s: %w", quotePath(p), pathErr(err))
		}
		if p == dir && !self {
			return nil
		}
		if excl.Match(p, d.IsDir()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := root.Lstat(p)
		if err != nil {
			return fmt.Errorf("-g: %s: %w", quotePath(p), pathErr(err))
		}
		return lchgrp(root, p, fi, gid)
	})
}

func lchgrp(root *os.Root, rel string, fi fs.FileInfo, gid int) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) == gid {
		return nil
	}
	if err := root.Lchown(rel, -1, gid); err != nil {
		return fmt.Errorf("-g: cannot change the group of %s to %d: %w", quotePath(rel), gid, pathErr(err))
	}
	return nil
}

// pathErr drops an fs.PathError's operation and path, which name os.Root's
// internals ("statat"); the caller names the path.
func pathErr(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// relPath makes p relative to base the way the daemon does: absolute
// paths must lie under base, relative ones must not climb out of it.
func relPath(base, p string) (string, error) {
	if filepath.IsAbs(p) {
		r, err := filepath.Rel(filepath.Clean(base), filepath.Clean(p))
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return "", fmt.Errorf("-g: %s is outside the base directory %s", p, base)
		}
		return filepath.ToSlash(r), nil
	}
	c := path.Clean(filepath.ToSlash(p))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("-g: %s is outside the base directory %s", p, base)
	}
	return c, nil
}
