// Package release owns the release artifact: the file a user downloads,
// dist/skiff-<arch>. It is a small launcher executable followed by the
// zstd-compressed skiff binary and a trailer naming it. The launcher
// unpacks the binary once, by its content hash, under the data dir, and
// every start after that execs the unpacked binary without reading the
// payload again.
package release

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// magic starts the trailer; a file without it at its end carries no
// payload.
var magic = [16]byte{'s', 'k', 'i', 'f', 'f', '-', 'r', 'e', 'l', 'e', 'a', 's', 'e', '-', 'v', '1'}

// trailerSize is the trailer's length: magic, the payload's offset and
// length, and the SHA-256 of the binary the payload decompresses to.
const trailerSize = 16 + 8 + 8 + sha256.Size

// Payload is the compressed binary inside a release artifact.
type Payload struct {
	// Offset and Size place the compressed bytes in the artifact.
	Offset, Size int64
	// Sum is the SHA-256 of the decompressed binary: its content address.
	Sum [sha256.Size]byte
}

// Hash is Sum in hex, the name of the folder the binary is unpacked to.
func (p Payload) Hash() string { return hex.EncodeToString(p.Sum[:]) }

// ErrNoPayload means the file carries no payload: it is no release
// artifact, or was cut short.
var ErrNoPayload = errors.New("no skiff payload at the end of the file")

// ReadPayload finds the payload of the artifact f.
func ReadPayload(f io.ReaderAt, size int64) (Payload, error) {
	if size < trailerSize {
		return Payload{}, ErrNoPayload
	}
	var t [trailerSize]byte
	if _, err := f.ReadAt(t[:], size-trailerSize); err != nil {
		return Payload{}, fmt.Errorf("read the trailer: %w", err)
	}
	if !bytes.Equal(t[:16], magic[:]) {
		return Payload{}, ErrNoPayload
	}
	p := Payload{
		Offset: int64(binary.LittleEndian.Uint64(t[16:24])),
		Size:   int64(binary.LittleEndian.Uint64(t[24:32])),
	}
	copy(p.Sum[:], t[32:])
	if p.Offset < 0 || p.Size <= 0 || p.Offset+p.Size != size-trailerSize {
		return Payload{}, fmt.Errorf("the trailer places the payload at %d+%d in a file of %d bytes: %w", p.Offset, p.Size, size, ErrNoPayload)
	}
	return p, nil
}

// Append writes to w, which holds the launcher's bytes up to offset, the
// zstd-compressed binary compressed and the trailer naming it with sum,
// the SHA-256 of the binary.
func Append(w io.Writer, offset int64, compressed io.Reader, sum [sha256.Size]byte) error {
	n, err := io.Copy(w, compressed)
	if err != nil {
		return fmt.Errorf("write the payload: %w", err)
	}
	if n == 0 {
		return errors.New("write the payload: it is empty")
	}
	var t [trailerSize]byte
	copy(t[:16], magic[:])
	binary.LittleEndian.PutUint64(t[16:24], uint64(offset))
	binary.LittleEndian.PutUint64(t[24:32], uint64(n))
	copy(t[32:], sum[:])
	if _, err := w.Write(t[:]); err != nil {
		return fmt.Errorf("write the trailer: %w", err)
	}
	return nil
}

// ErrCorrupt means the payload does not decompress to the binary its
// trailer names: the download is damaged.
var ErrCorrupt = errors.New("the payload is corrupt")

// maxWindow bounds the memory the decompression may take; the build
// compresses with a window of at most this size (zstd --long=27).
const maxWindow = 128 << 20

// Unpack decompresses the payload of artifact into dir/<hash>/skiff and
// returns that path. The binary appears there only whole and verified: it
// is written and checked under a temporary name first. An existing
// dir/<hash>/skiff is taken as it is, without reading the payload.
func Unpack(artifact *os.File, p Payload, dir string) (string, error) {
	target := filepath.Join(dir, p.Hash(), "skiff")
	if _, err := os.Stat(target); err == nil {
		return target, nil
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(target), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), ".skiff-*")
	if err != nil {
		return "", fmt.Errorf("unpack into %s: %w", filepath.Dir(target), err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := decompress(tmp, io.NewSectionReader(artifact, p.Offset, p.Size), p.Sum); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", fmt.Errorf("make %s executable: %w", tmp.Name(), err)
	}
	// The rename must not expose a binary whose pages are not on disk yet.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return "", fmt.Errorf("unpack into %s: %w", target, err)
	}
	if d, err := os.Open(filepath.Dir(target)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return target, nil
}

// decompress writes the binary payload decompresses to into w and checks it
// against sum.
func decompress(w io.Writer, payload io.Reader, sum [sha256.Size]byte) error {
	dec, err := zstd.NewReader(payload, zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer dec.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), dec); err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			return fmt.Errorf("write the unpacked binary: %w", err)
		}
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, sum[:]) {
		return fmt.Errorf("%w: it unpacks to a binary with SHA-256 %x, not the %x it names", ErrCorrupt, got, sum)
	}
	return nil
}

// Unpacked returns where, of dirs, the binary of p is already unpacked.
func Unpacked(p Payload, dirs []string) (string, bool) {
	for _, dir := range dirs {
		target := filepath.Join(dir, p.Hash(), "skiff")
		if err := unix.Access(target, unix.X_OK); err == nil {
			return target, true
		}
	}
	return "", false
}
