package source

import (
	"os"
	"path"
)

// Dirs resolves paths below Root directory by directory: a push's files
// come in path order, and each open or stat of one by its whole path
// would walk the path from Root again. It keeps the last directory open
// (as Root would resolve it) for the paths that follow in it. Not safe
// for concurrent use; Close releases the directory.
type Dirs struct {
	Root *os.Root
	dir  string
	in   *os.Root
}

// Parent returns the root to use rel's last element in, and that
// element: Root itself for a path at the top, else rel's directory.
func (d *Dirs) Parent(rel string) (*os.Root, string, error) {
	dir, name := path.Split(rel)
	if dir == "" {
		return d.Root, name, nil
	}
	dir = dir[:len(dir)-1]
	if d.in == nil || d.dir != dir {
		d.Close()
		in, err := d.Root.OpenRoot(dir)
		if err != nil {
			return nil, "", err
		}
		d.dir, d.in = dir, in
	}
	return d.in, name, nil
}

// Close closes the directory kept open, if any.
func (d *Dirs) Close() {
	if d.in != nil {
		d.in.Close()
		d.dir, d.in = "", nil
	}
}
