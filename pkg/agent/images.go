package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/agent/containerd"
	"github.com/skiff-io/skiff/pkg/images"
)

// PauseImage is the sandbox image every pod starts with. It is built from
// the pause program shipped inside skiff, so no node ever pulls it.
const PauseImage = "skiff.local/system/pause:3.10"

// systemImages imports the images a node needs from the skiff binary itself
// and the user's airgap tarballs, then keeps watching the images folder.
type systemImages struct {
	address string
	binDir  string
	dir     *containerd.ImageDir
}

func (s *systemImages) Name() string { return "images" }

func (s *systemImages) Start(ctx context.Context) (<-chan error, error) {
	if err := s.importPause(ctx); err != nil {
		return nil, err
	}
	if err := s.dir.ImportAll(ctx); err != nil {
		logrus.Warnf("import images from %s: %v", s.dir.Dir, err)
	}
	done := make(chan error, 1)
	go func() {
		if err := s.dir.Watch(ctx); err != nil && ctx.Err() == nil {
			// Losing the watch must not take the node down; files present at
			// the next start are still imported.
			logrus.Warnf("watch %s for new images: %v", s.dir.Dir, err)
		}
		<-ctx.Done()
		close(done)
	}()
	return done, nil
}

func (s *systemImages) importPause(ctx context.Context) error {
	pause := filepath.Join(s.binDir, "pause")
	if _, err := os.Stat(pause); err != nil {
		return fmt.Errorf("pause program missing from the helper executables (%w); rebuild skiff with scripts/build", err)
	}
	var buf bytes.Buffer
	if _, err := images.Write(&buf, images.Spec{
		Name:       PauseImage,
		Entrypoint: []string{"/pause"},
		Files:      []images.File{{Source: pause, Path: "/pause", Mode: 0o755}},
		User:       "65535:65535",
	}); err != nil {
		return fmt.Errorf("build the pause image: %w", err)
	}
	if _, err := containerd.ImportArchive(ctx, s.address, &buf, containerd.WithPinned()); err != nil {
		return fmt.Errorf("import the pause image: %w", err)
	}
	return nil
}
