package config

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SigningKey is the server's ed25519 key for events and federation requests.
type SigningKey struct {
	ID         string // e.g. "ed25519:a_Xy12"
	PrivateKey ed25519.PrivateKey
}

// LoadOrCreateSigningKey reads a key file in Synapse's format
// ("ed25519 <version> <unpadded base64 seed>", one key a line) so keys can move
// between servers, creating one with a random version when absent.
func LoadOrCreateSigningKey(path string) (*SigningKey, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return createSigningKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	return ParseSigningKey(raw)
}

// ParseSigningKey parses the first ed25519 key in a Synapse-format key file.
func ParseSigningKey(raw []byte) (*SigningKey, error) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) != 3 || fields[0] != "ed25519" {
			return nil, fmt.Errorf("signing key: want \"ed25519 <version> <base64 seed>\", got %d fields", len(fields))
		}
		seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(fields[2], "="))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing key: seed is not %d bytes of base64", ed25519.SeedSize)
		}
		return &SigningKey{ID: "ed25519:" + fields[1], PrivateKey: ed25519.NewKeyFromSeed(seed)}, nil
	}
	return nil, errors.New("signing key: file holds no key")
}

// Format renders the key in Synapse's key-file format.
func (k *SigningKey) Format() []byte {
	version := strings.TrimPrefix(k.ID, "ed25519:")
	return []byte(fmt.Sprintf("ed25519 %s %s\n", version, base64.RawStdEncoding.EncodeToString(k.PrivateKey.Seed())))
}

func createSigningKey(path string) (*SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating signing key: %w", err)
	}
	suffix, err := RandomSecret(3)
	if err != nil {
		return nil, err
	}
	// Key versions are [a-zA-Z0-9_]; Synapse uses "a_" plus 4 characters.
	suffix = strings.NewReplacer("-", "x", "_", "y").Replace(suffix)
	key := &SigningKey{ID: "ed25519:a_" + suffix, PrivateKey: priv}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating key dir: %w", err)
	}
	if err := writeNew(path, key.Format()); err != nil {
		return nil, err
	}
	return key, nil
}
