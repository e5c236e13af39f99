package cli

import (
	"errors"
	"fmt"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/pkg/config"
)

// agentFlagNames are the server flags that also configure a joining node;
// sharing the definitions keeps names, help and environment variables the
// same on both commands.
var agentFlagNames = []string{
	flagConfig, flagDataDir, flagDebug,
	flagServer, flagToken, flagTokenFile,
	flagNodeIP, flagNodeName, flagNodeExternalIP, flagNodeInternalDNS, flagNodeExternalDNS,
	flagNodeLabel, flagNodeTaint,
	flagFlannelIface, flagSnapshotter, flagRegistries, flagNoDefaultEndpoint, flagDefaultRuntime,
	flagKubeletArg, flagKubeProxyArg,
}

func agentFlags() []cli.Flag {
	var flags []cli.Flag
	// The server's wording of these speaks of the server's own state.
	usage := map[string]string{
		flagServer:    "URL of the server to join, e.g. https://192.168.1.10:6443",
		flagToken:     "join token printed by \"skiff token\" on the server (K10 form, which pins the server's CA, or the bare secret)",
		flagTokenFile: "file holding the join token; exclusive with --token",
		flagDataDir:   "absolute directory for the node's credentials, helper executables, images and containerd state",
	}
	for _, f := range serverFlags() {
		name := f.Names()[0]
		if !slices.Contains(agentFlagNames, name) {
			continue
		}
		if u, ok := usage[name]; ok {
			if sf, isString := f.(*cli.StringFlag); isString {
				sf.Usage = u
			}
		}
		flags = append(flags, f)
	}
	return flags
}

func agentCommand(a Actions) *cli.Command {
	const name = "agent"
	return configurable(&cli.Command{
		Name:      name,
		Usage:     "run a node that joins a server",
		UsageText: "skiff agent --server https://SERVER:6443 --token TOKEN [flags]",
		Description: "The token is printed by \"skiff token\" on the server. Settings come from flags, their SKIFF_*\n" +
			"environment variables (SKIFF_URL and SKIFF_TOKEN for the two above) or the config file.",
		Flags: agentFlags(),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return inCommand(name, fmt.Errorf("unexpected argument %q; agent takes only flags", c.Args().First()))
			}
			opts, err := agentConfig(c)
			if err != nil {
				return inCommand(name, err)
			}
			cfg, err := opts.Complete()
			if err != nil {
				return inCommand(name, err)
			}
			if a.Agent == nil {
				return inCommand(name, errors.New("the agent is not available in this build"))
			}
			return inCommand(name, a.Agent(c.Context, cfg))
		},
	})
}

// agentConfig copies the merged flag values into config.Agent options.
func agentConfig(c *cli.Context) (*config.Agent, error) {
	token, err := joinToken(c)
	if err != nil {
		return nil, err
	}
	return &config.Agent{
		Node: config.Node{
			NodeLabels:         splitCommas(c.StringSlice(flagNodeLabel)),
			NodeTaints:         splitCommas(c.StringSlice(flagNodeTaint)),
			ExtraKubeletArgs:   copyList(c.StringSlice(flagKubeletArg)),
			ExtraKubeProxyArgs: copyList(c.StringSlice(flagKubeProxyArg)),
			FlannelIface:       c.String(flagFlannelIface),
			NodeExternalIP:     c.String(flagNodeExternalIP),
			NodeInternalDNS:    splitCommas(c.StringSlice(flagNodeInternalDNS)),
			NodeExternalDNS:    splitCommas(c.StringSlice(flagNodeExternalDNS)),
			NoDefaultEndpoint:  c.Bool(flagNoDefaultEndpoint),
			Snapshotter:        c.String(flagSnapshotter),
			RegistriesFile:     c.String(flagRegistries),
			DefaultRuntime:     c.String(flagDefaultRuntime),
		},
		DataDir:   c.String(flagDataDir),
		ServerURL: c.String(flagServer),
		Token:     token,
		NodeName:  c.String(flagNodeName),
		NodeIP:    c.String(flagNodeIP),
		Debug:     c.Bool(flagDebug),
	}, nil
}
