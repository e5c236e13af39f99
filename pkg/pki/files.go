package pki

import (
	"os"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

const (
	dirMode  os.FileMode = 0o700
	keyMode  os.FileMode = 0o600
	certMode os.FileMode = 0o644
)

// readOptional and ensureMode are fileutil's, named for this package's
// many uses.
var (
	readOptional = fileutil.ReadOptional
	ensureMode   = fileutil.EnsureMode
)

// ServerFiles names the server's PKI files under dir without touching the
// disk, for code that lists them (what servers of a cluster share).
func ServerFiles(dir string) *ServerPKI { return newServerPKI(dir) }
