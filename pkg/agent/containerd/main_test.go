package containerd

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// mainEnv makes the test binary act as another program, so tests can run
// containerd (Main) as a child without building skiff.
const mainEnv = "SKIFF_CONTAINERD_TEST_MAIN"

func TestMain(m *testing.M) {
	switch os.Getenv(mainEnv) {
	case "containerd":
		if err := Main(os.Args); err != nil {
			fmt.Fprintln(os.Stderr, "containerd:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "pause":
		// A pod sandbox process: wait to be stopped.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		os.Exit(0)
	}
	os.Exit(m.Run())
}
