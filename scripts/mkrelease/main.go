// Command mkrelease writes a release artifact (pkg/release): the launcher,
// then the zstd-compressed skiff binary, then the trailer. scripts/build
// runs it; the compression itself is zstd's command line tool's.
//
//	go run ./scripts/mkrelease LAUNCHER BINARY BINARY.zst OUTPUT
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	"github.com/skiff-io/skiff/pkg/release"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: mkrelease LAUNCHER BINARY BINARY.zst OUTPUT")
		os.Exit(2)
	}
	if err := write(os.Args[1], os.Args[2], os.Args[3], os.Args[4]); err != nil {
		fmt.Fprintf(os.Stderr, "mkrelease: %v\n", err)
		os.Exit(1)
	}
}

func write(launcher, binary, compressed, output string) error {
	sum, err := fileSum(binary)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(output+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	defer os.Remove(output + ".tmp")
	l, err := os.Open(launcher)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, l)
	l.Close()
	if err != nil {
		return fmt.Errorf("copy the launcher: %w", err)
	}
	z, err := os.Open(compressed)
	if err != nil {
		return err
	}
	err = release.Append(out, n, z, sum)
	z.Close()
	if err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(output+".tmp", output)
}

func fileSum(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("hash %s: %w", path, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
