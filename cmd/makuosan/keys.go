package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/makuo/makuo/replicator/transport"
)

// genKeySize is the random bytes of a --gen-key key: the datagram key's
// own size, so the file holds as much secret as the key can use.
const genKeySize = 32

// genKey writes a new random group key to path (hex, one line, mode
// 0600), refusing to replace an existing file: overwriting a fleet's key
// by mistake would cut this member off. It prints where the key went,
// never the key.
func genKey(path string, stderr io.Writer) error {
	secret := make([]byte, genKeySize)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("--gen-key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return configError{fmt.Errorf("--gen-key: %s exists; not overwriting a key (remove it first if you mean to replace it)", path)}
	}
	if err != nil {
		return fmt.Errorf("--gen-key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(secret) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("--gen-key: %w", err)
	}
	fmt.Fprintf(stderr, "makuosan: wrote a new group key to %s (mode 0600): copy it to every member and start each with -k %s\n", path, path)
	return nil
}

// readKeys derives the datagram keys from the -k files: the first seals,
// all open. It also returns a warning for each file its group or others
// may read.
func readKeys(files []string) (keys [][]byte, warnings []string, err error) {
	for _, f := range files {
		k, err := transport.ReadKey(f)
		if err != nil {
			return nil, nil, configError{fmt.Errorf("-k: %w", err)} // the error names the file
		}
		keys = append(keys, k)
		if w := secretWarning("key", f); w != "" {
			warnings = append(warnings, w)
		}
	}
	return keys, warnings, nil
}

// secretWarning is a warning when the secret file path may be read by its
// group or by others, "" otherwise.
func secretWarning(what, path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o044 == 0 {
		return ""
	}
	return fmt.Sprintf("%s file %s is readable by its group or others (mode %v): whoever reads it can push to every member; chmod 600 %s", what, path, fi.Mode().Perm(), path)
}
