package release

import (
	"path/filepath"
	"strings"

	"github.com/skiff-io/skiff/pkg/layout"
)

// passthrough are the names and sub-commands whose arguments belong to an
// embedded upstream tool: a -d there is no data dir (ctr run -d detaches).
var passthrough = map[string]bool{"kubectl": true, "ctr": true, "crictl": true, "containerd": true}

// UnpackDirs lists, best first, the folders the binary of a release
// artifact run with args (os.Args) may be unpacked into: the content
// folder of the data dir the command names (--data-dir, -d or
// SKIFF_DATA_DIR), or else of the default data dir and then, for a user
// who cannot write there (kubectl run by a non-root user), of a data dir in
// the user's cache. A data dir set only in the config file is not seen:
// the binary then goes under the default one.
func UnpackDirs(args []string, getenv func(string) string) []string {
	if dir := dataDirArg(args); dir != "" {
		return []string{layout.New(dir).HelpersDir}
	}
	if dir := getenv("SKIFF_DATA_DIR"); dir != "" {
		return []string{layout.New(dir).HelpersDir}
	}
	dirs := []string{layout.New(layout.DefaultDataDir).HelpersDir}
	cache := getenv("XDG_CACHE_HOME")
	if cache == "" && getenv("HOME") != "" {
		cache = filepath.Join(getenv("HOME"), ".cache")
	}
	if cache != "" {
		dirs = append(dirs, layout.New(filepath.Join(cache, "skiff")).HelpersDir)
	}
	return dirs
}

// dataDirArg is the data dir args give, if any.
func dataDirArg(args []string) string {
	if len(args) == 0 || passthrough[filepath.Base(args[0])] || len(args) > 1 && passthrough[args[1]] {
		return ""
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return ""
		case a == "--data-dir" || a == "-d":
			if i+1 < len(args) {
				return args[i+1]
			}
		case strings.HasPrefix(a, "--data-dir="):
			return strings.TrimPrefix(a, "--data-dir=")
		case strings.HasPrefix(a, "-d="):
			return strings.TrimPrefix(a, "-d=")
		}
	}
	return ""
}
