// Command skiff-launcher is the front of the release artifact
// (pkg/release): it unpacks the skiff binary it carries once, then execs it
// with the same arguments, name and environment, so the artifact, and
// links to it such as kubectl, work as the binary itself does.
package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/skiff-io/skiff/pkg/release"
)

func main() {
	target, err := unpacked()
	if err != nil {
		fmt.Fprintf(os.Stderr, "skiff: %v\n", err)
		os.Exit(1)
	}
	err = syscall.Exec(target, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "skiff: run %s: %v; remove its folder and run skiff again to unpack it anew\n", target, err)
	os.Exit(1)
}

// unpacked returns the path of the carried binary, unpacking it if no
// folder has it yet.
func unpacked() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this executable: %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", exe, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read %s: %w", exe, err)
	}
	p, err := release.ReadPayload(f, st.Size())
	if err != nil {
		return "", fmt.Errorf("%s carries no skiff binary (%v): it is damaged or cut short; download it again", exe, err)
	}
	dirs := release.UnpackDirs(os.Args, os.Getenv)
	if target, ok := release.Unpacked(p, dirs); ok {
		return target, nil
	}
	var errs []error
	for _, dir := range dirs {
		target, err := release.Unpack(f, p, dir)
		if err == nil {
			return target, nil
		}
		if errors.Is(err, release.ErrCorrupt) {
			return "", fmt.Errorf("%s is damaged (%v); download it again", exe, err)
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("cannot unpack the skiff binary: %w; free space or give write access to one of these folders, or pass --data-dir", errors.Join(errs...))
}
