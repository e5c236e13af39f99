package agent

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/skiff-io/skiff/pkg/idlegc"
	"github.com/skiff-io/skiff/pkg/startpages"
)

// startPagesDelay is how long after a node process is ready its start-up is
// taken to be over: the addons' pods have started and the informers of
// every component have synced.
const startPagesDelay = 30 * time.Second

// ReleaseStartPages gives back, startPagesDelay after the node is ready,
// the pages of the skiff executable and the heap that only start-up used
// (pkg/startpages says why). It returns at once.
func ReleaseStartPages(ctx context.Context) {
	go startpages.After(ctx, startPagesDelay, func(r startpages.Released, err error) {
		if err != nil {
			logrus.Warnf("release the start-up pages: %v", err)
			return
		}
		logrus.Info(r)
	})
}

// TuneGC runs the garbage collector as pkg/idlegc decides, from the node
// process's start until ctx ends. It returns at once.
func TuneGC(ctx context.Context) {
	go idlegc.Run(ctx, func(change string) { logrus.Info(change) })
}
