package replicator

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/makuo/makuo/replicator/wire"
)

// nodeIDFile names the file in the state directory that keeps the node id
// across restarts.
const nodeIDFile = "node-id"

// loadNodeID reads the node id from dir, creating dir and a fresh random id
// on first start.
func loadNodeID(dir string) (wire.NodeID, error) {
	path := filepath.Join(dir, nodeIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		v, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
		if perr != nil || v == 0 {
			return 0, fmt.Errorf("node id file %s is corrupt (remove it to get a new id): %q", path, b)
		}
		return wire.NodeID(v), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read node id: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("state directory: %w", err)
	}
	return newNodeID(dir, 0)
}

// newNodeID picks a random node id other than 0 and old and writes it to
// dir durably: an id handed to peers must survive a crash.
func newNodeID(dir string, old wire.NodeID) (wire.NodeID, error) {
	var raw [8]byte
	var id wire.NodeID
	for id == 0 || id == old {
		if _, err := rand.Read(raw[:]); err != nil {
			return 0, fmt.Errorf("node id: %w", err)
		}
		id = wire.NodeID(binary.BigEndian.Uint64(raw[:]))
	}
	if err := writeFileDurable(dir, nodeIDFile, []byte(id.String()+"\n")); err != nil {
		return 0, fmt.Errorf("write node id: %w", err)
	}
	return id, nil
}

// writeFileDurable replaces dir/name with data so that after a crash the
// file holds either its old or its new content, and the new one once this
// returns: a temporary file, fsync, rename, fsync of the directory.
func writeFileDurable(dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
