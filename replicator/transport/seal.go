package transport

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"

	"golang.org/x/crypto/chacha20poly1305"
)

// ErrWeakKey reports a key file too short to give real protection.
var ErrWeakKey = errors.New("transport: key file must hold at least 16 bytes")

// ReadKey reads a group key file and derives the 32-byte datagram key from
// its contents (HKDF-SHA256). Leading and trailing white space is ignored so
// that a key typed into an editor and one written with a newline agree.
func ReadKey(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	return DeriveKey(raw)
}

// DeriveKey derives the datagram key from the contents of a key file.
func DeriveKey(secret []byte) ([]byte, error) {
	secret = bytes.TrimSpace(secret)
	if len(secret) < 16 {
		return nil, ErrWeakKey
	}
	k, err := hkdf.Key(sha256.New, secret, nil, "makuo v1 datagram key", chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	return k, nil
}
