package stage

import "errors"

// Errors returned by this package, wrapped with context. Callers branch on
// them with errors.Is. Errors from the operating system (for example
// fs.ErrNotExist or syscall.ENOTEMPTY) are wrapped too and stay testable.
var (
	// ErrBadPath: a relative path failed CheckPath.
	ErrBadPath = errors.New("stage: bad path")
	// ErrBadTarget: a symbolic link target is empty, too long or holds a NUL byte.
	ErrBadTarget = errors.New("stage: bad link target")
	// ErrBadMode: Meta.Mode carries file type bits that do not fit the operation.
	ErrBadMode = errors.New("stage: mode does not fit the entry type")
	// ErrIsDir: a non-directory would replace a directory. Call RemoveAll first.
	ErrIsDir = errors.New("stage: target is a directory")
	// ErrNotDir: a directory would replace a non-directory, or a parent path
	// element is not a directory. Call Remove first.
	ErrNotDir = errors.New("stage: not a directory")
	// ErrSymlinkInPath: an element above the entry (or of a directory to
	// list) is a symbolic link, which this package never follows. The
	// entry the path names does not exist as such: replace the link by
	// the directory meant, or remove it.
	ErrSymlinkInPath = errors.New("stage: symbolic link in path")
	// ErrNotRegular: Open found something other than a regular file.
	ErrNotRegular = errors.New("stage: not a regular file")
	// ErrClosed: the Temp was already committed or aborted.
	ErrClosed = errors.New("stage: temp file already committed or aborted")
)
