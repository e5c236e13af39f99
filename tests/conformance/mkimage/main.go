// Command mkimage packs a directory tree (a root file system that
// scripts/conformance assembles from Debian packages and built programs)
// into an OCI image tarball under the name a conformance spec asks for, so
// that the suite runs with no registry.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/skiff-io/skiff/pkg/images"
)

// list is a repeatable flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var spec images.Spec
	var root, out string
	var entrypoint, cmd, env, ports list
	flag.StringVar(&spec.Name, "name", "", "the image's full name, e.g. registry.k8s.io/e2e-test-images/agnhost:2.66.1")
	flag.StringVar(&root, "root", "", "the directory tree that becomes the image's file system")
	flag.StringVar(&out, "o", "", "the OCI layout tarball to write")
	flag.StringVar(&spec.User, "user", "", "the user the image runs as, e.g. 65534")
	flag.StringVar(&spec.WorkingDir, "workdir", "", "the image's working directory")
	flag.Var(&entrypoint, "entrypoint", "one word of the entrypoint; repeat")
	flag.Var(&cmd, "cmd", "one word of the command; repeat")
	flag.Var(&env, "env", "KEY=value; repeat")
	flag.Var(&ports, "port", "an exposed port, e.g. 80 or 53/udp; repeat")
	flag.Parse()
	if spec.Name == "" || root == "" || out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -name NAME -root DIR -o FILE.tar [-entrypoint W]... [-cmd W]... [-env K=V]... [-port P]...")
		os.Exit(2)
	}
	spec.Entrypoint, spec.Cmd, spec.Env, spec.ExposedPorts = entrypoint, cmd, env, ports
	files, err := images.TreeFiles(root, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
	spec.Files = files
	if _, err := images.WriteFile(out, spec); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %s: %v\n", spec.Name, err)
		os.Exit(1)
	}
}
