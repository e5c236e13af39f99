package bundle

import (
	"os"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// releaseArchive gives back the pages of the embedded archive that the
// extraction touched. They are clean pages of the executable's read-only
// data, mapped from the file: after MADV_DONTNEED the process no longer
// holds them (tens of MiB of resident memory on an idle node), and should
// anything read the archive again the kernel maps them back from the file.
func releaseArchive() {
	if err := dropPages(archive); err != nil {
		logrus.Debugf("release the helper archive's pages: %v", err)
	}
}

// dropPages applies MADV_DONTNEED to the whole pages inside s's bytes;
// the partial pages at either end are shared with other data and stay.
func dropPages(s string) error {
	if s == "" {
		return nil
	}
	page := uintptr(os.Getpagesize())
	base := unsafe.Pointer(unsafe.StringData(s))
	skip := (page - uintptr(base)%page) % page
	if uintptr(len(s)) <= skip {
		return nil
	}
	n := (uintptr(len(s)) - skip) &^ (page - 1)
	if n == 0 {
		return nil
	}
	return unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(base, skip)), n), unix.MADV_DONTNEED)
}
