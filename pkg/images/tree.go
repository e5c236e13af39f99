package images

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// TreeFiles describes the host directory root, placed at dest in the
// image: its directories, regular files and symbolic links, with their
// permission bits; files are streamed from root when the image is
// written. A root file system unpacked from packages becomes an image
// this way. Device nodes, pipes and sockets are refused.
func TreeFiles(root, dest string) ([]File, error) {
	var out []File
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		target := path.Join(dest, filepath.ToSlash(rel))
		if dest == "" {
			target = "/" + filepath.ToSlash(rel)
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			out = append(out, File{Path: target, Dir: true, Mode: mode & allowedModeBits})
		case mode&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, File{Path: target, Link: link})
		case mode.IsRegular():
			out = append(out, File{Path: target, Mode: mode & allowedModeBits, Source: p})
		default:
			return fmt.Errorf("%s: %v is neither a directory, a regular file nor a symbolic link", p, mode.Type())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the tree %s: %w", root, err)
	}
	return out, nil
}
