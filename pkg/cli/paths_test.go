package cli

import (
	"encoding/json"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/pkg/layout"
)

// layoutFields maps every string field of l, by its Go path
// ("Agent.CNIIPAMDir"), to its value.
func layoutFields(l layout.Layout) map[string]string {
	out := map[string]string{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i), strings.TrimPrefix(path+"."+v.Type().Field(i).Name, "."))
			}
		case reflect.String:
			out[path] = v.String()
		}
	}
	walk(reflect.ValueOf(l), "")
	return out
}

// parsePaths reads `skiff paths` output as the shell would for plain
// values: NAME='value' a line.
func parsePaths(t *testing.T, out string) (names []string, values map[string]string) {
	t.Helper()
	values = map[string]string{}
	line := regexp.MustCompile(`^([A-Z][A-Z0-9_]*)='([^']*)'$`)
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q is not NAME='value'", l)
		}
		if _, dup := values[m[1]]; dup {
			t.Errorf("name %s printed twice", m[1])
		}
		names = append(names, m[1])
		values[m[1]] = m[2]
	}
	return names, values
}

// Every path of the layout is printed once, under a unique name derived
// from its field, with the field's value.
func TestPathsPrintsTheLayout(t *testing.T) {
	isolate(t)
	const dataDir = "/srv/skiff"
	r := run(t, "paths", "--config", "", "--data-dir", dataDir)
	if r.code != 0 {
		t.Fatalf("code %d, stderr %q", r.code, r.stderr)
	}
	names, values := parsePaths(t, r.stdout)
	l := layout.New(dataDir)
	fields := layoutFields(l)
	if len(names) != len(fields) {
		t.Errorf("%d paths printed, the layout has %d: %v", len(names), len(fields), names)
	}
	// The names are the fields' in upper snake case, each field's value
	// under its own name.
	for path, value := range fields {
		group, field, ok := strings.Cut(path, ".")
		name := shellName(group)
		if ok {
			name += "_" + shellName(field)
		}
		if values[name] != value {
			t.Errorf("%s (%s) = %q, want %q", name, path, values[name], value)
		}
	}
	for name, want := range map[string]string{
		"DATA_DIR":             l.DataDir,
		"HELPERS_DIR":          l.HelpersDir,
		"STORAGE_DIR":          l.StorageDir,
		"SERVER_DIR":           l.Server.Dir,
		"SERVER_TLS_DIR":       l.Server.TLSDir,
		"SERVER_STATE_DB":      l.Server.StateDB,
		"SERVER_DB_DIR":        l.Server.DBDir,
		"AGENT_CNI_IPAM_DIR":   l.Agent.CNIIPAMDir,
		"AGENT_CNI_CONF_DIR":   l.Agent.CNIConfDir,
		"AGENT_IMAGES_DIR":     l.Agent.ImagesDir,
		"RUN_DIR":              layout.RunDir,
		"RUN_CONTAINERD_DIR":   layout.ContainerdStateDir,
		"AGENT_CONTAINERD_DIR": l.Agent.ContainerdDir,
	} {
		if values[name] != want {
			t.Errorf("%s = %q, want %q", name, values[name], want)
		}
	}
	if r := run(t, "paths", "--config", "", "--data-dir", dataDir, "--json"); r.code != 0 {
		t.Errorf("--json: code %d, stderr %q", r.code, r.stderr)
	} else {
		var got map[string]string
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("--json printed %q: %v", r.stdout, err)
		}
		if !reflect.DeepEqual(got, values) {
			t.Errorf("--json = %v, want the shell lines' %v", got, values)
		}
	}
}

func TestShellName(t *testing.T) {
	for field, want := range map[string]string{
		"DataDir":                     "DATA_DIR",
		"CNIIPAMDir":                  "CNI_IPAM_DIR",
		"TLSDir":                      "TLS_DIR",
		"StateDB":                     "STATE_DB",
		"ControllerManagerKubeconfig": "CONTROLLER_MANAGER_KUBECONFIG",
		"Dir":                         "DIR",
		"HostCNIBinDir":               "HOST_CNI_BIN_DIR",
		"XYZDir":                      "XYZ_DIR",
		"Run":                         "RUN",
	} {
		if got := shellName(field); got != want {
			t.Errorf("shellName(%q) = %q, want %q", field, got, want)
		}
	}
}

// What sh makes of the output is each path, byte for byte, also for a data
// dir with blanks, quotes, a newline and shell syntax in its name.
func TestPathsEvaluateInShell(t *testing.T) {
	isolate(t)
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	for _, dataDir := range []string{"/var/lib/skiff", "/srv/my skiff's data", "/srv/a'b'\"c\" $(x) `y` \\n;&|*\nz/"} {
		r := run(t, "paths", "--config", "", "--data-dir", dataDir)
		if r.code != 0 {
			t.Fatalf("%q: code %d, stderr %q", dataDir, r.code, r.stderr)
		}
		l := layout.New(dataDir)
		cmd := exec.Command("sh", "-c", `eval "$(cat)"; printf %s "$AGENT_CNI_IPAM_DIR"`)
		cmd.Stdin = strings.NewReader(r.stdout)
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != l.Agent.CNIIPAMDir {
			t.Errorf("%q: sh printed %q (%v), want %q", dataDir, out, err, l.Agent.CNIIPAMDir)
		}
		// Every name: sh prints NAME, NUL, value, NUL for each.
		paths, err := layoutPaths(l)
		if err != nil {
			t.Fatal(err)
		}
		script := `eval "$(cat)"`
		for _, p := range paths {
			script += `; printf '%s\0%s\0' ` + p.name + ` "$` + p.name + `"`
		}
		cmd = exec.Command("sh", "-c", script)
		cmd.Stdin = strings.NewReader(r.stdout)
		out, err = cmd.Output()
		if err != nil {
			t.Fatalf("%q: sh: %v", dataDir, err)
		}
		fields := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		if len(fields) != 2*len(paths) {
			t.Fatalf("%q: sh printed %d fields, want %d", dataDir, len(fields), 2*len(paths))
		}
		for i, p := range paths {
			if fields[2*i] != p.name || fields[2*i+1] != p.value {
				t.Errorf("%q: sh has %s = %q, want %s = %q", dataDir, fields[2*i], fields[2*i+1], p.name, p.value)
			}
		}
		if r := run(t, "paths", "--config", "", "--data-dir", dataDir, "--json"); r.code != 0 {
			t.Errorf("%q --json: code %d", dataDir, r.code)
		} else {
			var got map[string]string
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got["AGENT_CNI_IPAM_DIR"] != l.Agent.CNIIPAMDir {
				t.Errorf("%q --json: %v, AGENT_CNI_IPAM_DIR = %q", dataDir, err, got["AGENT_CNI_IPAM_DIR"])
			}
		}
	}
}

// The data dir comes from the flag, SKIFF_DATA_DIR or the config file, as
// for the other commands; a relative one is refused.
func TestPathsDataDir(t *testing.T) {
	isolate(t)
	ipam := func(t *testing.T, args ...string) string {
		t.Helper()
		r := run(t, append([]string{"paths"}, args...)...)
		if r.code != 0 {
			t.Fatalf("%v: code %d, stderr %q", args, r.code, r.stderr)
		}
		_, values := parsePaths(t, r.stdout)
		return values["AGENT_CNI_IPAM_DIR"]
	}
	t.Setenv("SKIFF_CONFIG_FILE", writeFile(t, "config.yaml", "data-dir: /srv/from-file\n"))
	if got := ipam(t); got != layout.New("/srv/from-file").Agent.CNIIPAMDir {
		t.Errorf("config file: %q", got)
	}
	t.Setenv("SKIFF_DATA_DIR", "/srv/from-env")
	if got := ipam(t); got != layout.New("/srv/from-env").Agent.CNIIPAMDir {
		t.Errorf("environment: %q", got)
	}
	if got := ipam(t, "-d", "/srv/from-flag"); got != layout.New("/srv/from-flag").Agent.CNIIPAMDir {
		t.Errorf("flag: %q", got)
	}

	r := run(t, "paths", "--data-dir", "relative/dir")
	if r.code == 0 || !strings.HasPrefix(r.stderr, "skiff paths: invalid --data-dir \"relative/dir\"") {
		t.Errorf("relative data dir: code %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, "paths", "extra")
	if r.code == 0 || !strings.Contains(r.stderr, `unexpected argument "extra"`) {
		t.Errorf("argument: code %d, stderr %q", r.code, r.stderr)
	}
}
