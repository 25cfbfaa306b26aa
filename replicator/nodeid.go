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
	var raw [8]byte
	var id uint64
	for id == 0 {
		if _, err := rand.Read(raw[:]); err != nil {
			return 0, fmt.Errorf("node id: %w", err)
		}
		id = binary.BigEndian.Uint64(raw[:])
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(wire.NodeID(id).String()+"\n"), 0o644); err != nil {
		return 0, fmt.Errorf("write node id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("write node id: %w", err)
	}
	return wire.NodeID(id), nil
}
