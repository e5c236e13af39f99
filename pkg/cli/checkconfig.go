package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/pkg/checkconfig"
)

func checkConfigCommand() *cli.Command {
	const name = "check-config"
	return &cli.Command{
		Name:      name,
		Usage:     "check that this host's kernel and cgroups can run a skiff node",
		UsageText: "skiff check-config",
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return inCommand(name, usageError(appName+" "+name, err))
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return inCommand(name, fmt.Errorf("unexpected argument %q; check-config takes no arguments", c.Args().First()))
			}
			report, err := checkconfig.Check("/")
			if err != nil {
				return inCommand(name, err)
			}
			report.Write(c.App.Writer)
			if missing := report.Missing(); len(missing) > 0 {
				return inCommand(name, errors.New("missing required kernel features: "+strings.Join(missing, ", ")+"; use a kernel built with them"))
			}
			return nil
		},
	}
}
