package cli

import (
	"fmt"
	"os"

	"github.com/skiff-io/skiff/pkg/config"
)

// Local says where this host's skiff keeps its files, for the embedded
// tools (kubectl, crictl), whose own flags skiff does not parse.
type Local struct {
	DataDir    string
	Kubeconfig string
}

// ExitStatus ends a command with code, the tool having printed its own
// message already; 0 is no error.
func ExitStatus(code int) error {
	if code == 0 {
		return nil
	}
	return exitStatus(code)
}

type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// localSettings finds the data dir and the admin kubeconfig as `skiff
// server` does: its environment variables, else the config file
// (SKIFF_CONFIG_FILE, default /etc/skiff/config.yaml) and its drop-ins,
// else the defaults.
func localSettings() (Local, error) {
	l := Local{DataDir: config.DefaultDataDir, Kubeconfig: config.DefaultKubeconfig}
	path, explicit := os.LookupEnv(envVar(flagConfig)[0])
	if !explicit {
		path = config.DefaultConfigFile
	}
	entries, err := loadConfigFiles(path, explicit && path != "")
	if err != nil {
		return l, err
	}
	for _, e := range entries {
		if len(e.values) == 0 {
			continue
		}
		switch e.key {
		case flagDataDir:
			l.DataDir = e.values[0]
		case flagKubeconfig:
			l.Kubeconfig = e.values[0]
		}
	}
	if v := os.Getenv(envVar(flagDataDir)[0]); v != "" {
		l.DataDir = v
	}
	if v := os.Getenv(envVar(flagKubeconfig)[0]); v != "" {
		l.Kubeconfig = v
	}
	return l, nil
}
