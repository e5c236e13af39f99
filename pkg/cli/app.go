// Package cli turns skiff's command line, environment and config file into a
// config.Server and hands it to the entry points that cmd/skiff wires in.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/version"
)

const appName = "skiff"

// Actions are the entry points the CLI hands control to; cmd/skiff wires the
// real ones, tests pass recorders.
type Actions struct {
	Server func(ctx context.Context, cfg *config.CompletedServer) error
	Agent  func(ctx context.Context, cfg *config.CompletedAgent) error
	Token  func(ctx context.Context, req *config.TokenRequest) error
	// Kubectl runs kubectl with everything after "kubectl", unparsed; the
	// local settings say which kubeconfig is this host's.
	Kubectl func(local Local, args []string) error
	// Containerd, Ctr and Crictl run the embedded tools; args[0] is the
	// tool's name, the rest is unparsed.
	Containerd func(args []string) error
	Ctr        func(args []string) error
	Crictl     func(local Local, args []string) error
	// Cluster runs `skiff cluster`; ClusterNode is the hidden first step
	// of a cluster node's process, in its new namespaces.
	Cluster     func(ctx context.Context, req *config.ClusterRequest) error
	ClusterNode func(nodeDir, hostname string, argv []string) error
}

// errVersionShown stops the run after --version has been answered; Run maps
// it to a zero exit code.
var errVersionShown = errors.New("version shown")

// commandError remembers which command failed so that Run can print
// "skiff <command>: <error>".
type commandError struct {
	command string
	err     error
}

func (e *commandError) Error() string { return e.command + ": " + e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// inCommand tags errors from a command's hooks with the command name. Errors
// that are already tagged, and the version sentinel, pass through unchanged.
func inCommand(name string, err error) error {
	var ce *commandError
	if err == nil || errors.Is(err, errVersionShown) || errors.As(err, &ce) {
		return err
	}
	return &commandError{command: name, err: err}
}

// NewApp builds a fresh application. urfave/cli records state on its flag
// values while parsing, so every run needs its own App.
func NewApp(a Actions) *cli.App {
	app := &cli.App{
		Name:     appName,
		Usage:    "a single-binary Kubernetes distribution",
		HelpName: appName,
		// skiff prints its own two-line version (skiff and Kubernetes), so the
		// built-in flag, which prints a single line, is replaced.
		HideVersion: true,
		// `skiff completion` scripts ask the binary for its commands and
		// flags with --generate-bash-completion.
		EnableBashCompletion: true,
		// Component passthrough flags carry values such as
		// enable-admission-plugins=A,B that must not be split on commas.
		DisableSliceFlagSeparator: true,
		// Errors are printed once, by Run; urfave must neither print them nor
		// call os.Exit.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError(appName, err)
		},
		Flags: []cli.Flag{
			&cli.BoolFlag{
				Name:    "version",
				Aliases: []string{"v"},
				Usage:   "print the skiff and Kubernetes versions",
			},
		},
		Before: func(c *cli.Context) error {
			if c.Bool("version") {
				fmt.Fprintln(c.App.Writer, version.String())
				return errVersionShown
			}
			return nil
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("unknown command %q; run \"skiff --help\" to list the commands", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			serverCommand(a),
			agentCommand(a),
			tokenCommand(a),
			checkConfigCommand(),
			datastoreCommand(),
			etcdSnapshotCommand(),
			certificateCommand(),
			secretsEncryptCommand(),
			completionCommand(),
			pathsCommand(),
			clusterCommand(a),
			clusterNodeCommand(a),
			passthrough("kubectl", "run the embedded kubectl against this server", false, withLocal(a.Kubectl), a.Kubectl != nil),
			passthrough("ctr", "run containerd's ctr against this node's containerd", false, withName("ctr", a.Ctr), a.Ctr != nil),
			passthrough("crictl", "run crictl against this node's container runtime", false, withLocal(func(l Local, args []string) error {
				return a.Crictl(l, append([]string{"crictl"}, args...))
			}), a.Crictl != nil),
			passthrough("containerd", "run the embedded containerd (started by the node agent)", true, withName("containerd", a.Containerd), a.Containerd != nil),
		},
	}
	return app
}

// Run runs the app on args (args[0] is the program name) and returns the
// process exit code; on error it prints exactly one line "skiff: <error>" (or
// "skiff <command>: <error>") to stderr and returns 1.
func Run(ctx context.Context, args []string, a Actions) int {
	return RunWithOutput(ctx, args, a, os.Stdout, os.Stderr)
}

// RunWithOutput is Run with explicit output streams, so tests and embedders
// can capture help, version and error text.
func RunWithOutput(ctx context.Context, args []string, a Actions, stdout, stderr io.Writer) int {
	app := NewApp(a)
	app.Writer = stdout
	app.ErrWriter = stderr
	err := app.RunContext(ctx, args)
	if err == nil || errors.Is(err, errVersionShown) {
		return 0
	}
	// A tool that printed its own error passes its status on.
	var status exitStatus
	if errors.As(err, &status) {
		return int(status)
	}
	fmt.Fprintln(stderr, errorLine(err))
	return 1
}

// errorLine renders err as the single line promised by Run; multi-line
// messages (YAML parser errors, for one) are folded with "; ".
func errorLine(err error) string {
	prefix := appName + ": "
	var ce *commandError
	if errors.As(err, &ce) {
		prefix = appName + " "
	}
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return prefix + strings.Join(parts, "; ")
}

// usageError rewords the flag package's parse errors to point at the help of
// the command that rejected them.
func usageError(helpCommand string, err error) error {
	hint := fmt.Sprintf("run %q to list the flags", helpCommand+" --help")
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		dashes := "--"
		if len(name) == 1 {
			dashes = "-"
		}
		return fmt.Errorf("unknown flag %s%s; %s", dashes, name, hint)
	}
	return fmt.Errorf("%w; %s", err, hint)
}

// withLocal hands a tool this host's settings, as the server finds them.
func withLocal(fn func(Local, []string) error) func([]string) error {
	return func(args []string) error {
		if fn == nil {
			return nil
		}
		l, err := localSettings()
		if err != nil {
			return err
		}
		return fn(l, args)
	}
}

// withName prepends the tool's program name to its arguments.
func withName(name string, fn func([]string) error) func([]string) error {
	return func(args []string) error {
		if fn == nil {
			return nil
		}
		return fn(append([]string{name}, args...))
	}
}

// passthrough is a command that hands its unparsed arguments to an embedded
// tool, which has its own flags, --help included.
func passthrough(name, usage string, hidden bool, run func([]string) error, available bool) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           usage,
		UsageText:       "skiff " + name + " [" + name + " arguments...]",
		SkipFlagParsing: true,
		HideHelp:        true,
		Hidden:          hidden,
		Action: func(c *cli.Context) error {
			if !available {
				return inCommand(name, fmt.Errorf("%s is not available in this build", name))
			}
			return inCommand(name, run(c.Args().Slice()))
		},
	}
}
