// Command skiff-volume-helper creates and removes the directories of
// local-path volumes. The upstream local-path-provisioner runs it in a
// short-lived pod on the volume's node, as its setupCommand and
// teardownCommand, in place of a shell script in a busybox image that no
// node could pull offline.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-volume-helper:", err)
		os.Exit(1)
	}
}

// run takes the arguments the provisioner passes to its helper commands:
// -p PATH -s SIZE_BYTES -m Filesystem|Block -a create|delete.
func run(args []string) error {
	flags := flag.NewFlagSet("skiff-volume-helper", flag.ContinueOnError)
	path := flags.String("p", "", "the volume's directory")
	flags.String("s", "0", "the requested size in bytes (directories are not size-limited)")
	mode := flags.String("m", "Filesystem", "the volume mode")
	action := flags.String("a", "", "create or delete")
	if err := flags.Parse(args); err != nil {
		return err
	}
	dir, err := volumeDir(*path)
	if err != nil {
		return err
	}
	switch *action {
	case "create":
		if *mode != "Filesystem" {
			return fmt.Errorf("volume mode %q is not supported: local-path volumes are directories (volumeMode: Filesystem)", *mode)
		}
		// World-writable, as upstream's own setup script makes it, so
		// pods running as any user can write their volume.
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return fmt.Errorf("create volume directory: %w", err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			return fmt.Errorf("create volume directory: %w", err)
		}
		fmt.Println("created", dir)
	case "delete":
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("delete volume directory: %w", err)
		}
		fmt.Println("deleted", dir)
	default:
		return fmt.Errorf("-a %q: the action must be create or delete", *action)
	}
	return nil
}

// volumeDir refuses paths that could not be one volume's own directory, so
// that a bad storage class parameter can never have delete remove a
// parent directory.
func volumeDir(path string) (string, error) {
	if path == "" {
		return "", errors.New("-p is required: the volume's directory")
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("volume path %q is not absolute", path)
	}
	clean := filepath.Clean(path)
	if clean != strings.TrimSuffix(path, "/") || strings.Count(clean, "/") < 2 {
		return "", fmt.Errorf("volume path %q must be a clean path at least two levels below /", path)
	}
	return clean, nil
}
