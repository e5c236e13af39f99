package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/tests/nodetest"
)

// The installer tests run install.sh into temporary roots: every directory
// it writes to comes from an INSTALL_SKIFF_*_DIR variable, and systemctl is
// a fake on PATH, so no systemd (and no root-owned host path) is needed.

func installScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../install.sh")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// installRoot is a temporary root for one installation.
type installRoot struct {
	root, bin, systemd, openrc, config, data string
	// fakeBin holds the fake systemctl; calls records its invocations.
	fakeBin, calls string
}

func newInstallRoot(t *testing.T) *installRoot {
	t.Helper()
	root := t.TempDir()
	fake := t.TempDir()
	r := &installRoot{
		root:    root,
		bin:     filepath.Join(root, "usr/local/bin"),
		systemd: filepath.Join(root, "etc/systemd/system"),
		openrc:  filepath.Join(root, "etc/init.d"),
		config:  filepath.Join(root, "etc/skiff"),
		data:    filepath.Join(root, "var/lib/skiff"),
		fakeBin: fake,
		calls:   filepath.Join(fake, "calls.log"),
	}
	for _, tool := range []string{"systemctl", "rc-service", "rc-update"} {
		script := fmt.Sprintf("#!/bin/sh\necho %s \"$@\" >> %q\n", tool, r.calls)
		if err := os.WriteFile(filepath.Join(fake, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// env is the installer's whole environment: the temp dirs plus extra.
func (r *installRoot) env(extra ...string) []string {
	return append([]string{
		"PATH=" + r.fakeBin + ":" + os.Getenv("PATH"),
		"HOME=" + r.root,
		"INSTALL_SKIFF_BIN=" + skiffBin,
		"INSTALL_SKIFF_BIN_DIR=" + r.bin,
		"INSTALL_SKIFF_SYSTEMD_DIR=" + r.systemd,
		"INSTALL_SKIFF_OPENRC_DIR=" + r.openrc,
		"INSTALL_SKIFF_CONFIG_DIR=" + r.config,
		"INSTALL_SKIFF_DATA_DIR=" + r.data,
	}, extra...)
}

// runScript runs a shell script with exactly env and returns its exit code
// and combined output.
func runScript(t *testing.T, env []string, script string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", append([]string{script}, args...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within 2 minutes:\n%s", script, out)
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func (r *installRoot) install(t *testing.T, extra []string, args ...string) string {
	t.Helper()
	code, out := runScript(t, r.env(extra...), installScript(t), args...)
	if code != 0 {
		t.Fatalf("install.sh exited with %d:\n%s", code, out)
	}
	checkMessageFormat(t, out)
	return out
}

// checkMessageFormat: every line of output is an [INFO] or [ERROR] line.
func checkMessageFormat(t *testing.T, out string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l != "" && !strings.HasPrefix(l, "[INFO] ") && !strings.HasPrefix(l, "[ERROR] ") {
			t.Errorf("output line without [INFO]/[ERROR] prefix: %q", l)
		}
	}
}

func (r *installRoot) systemctlCalls(t *testing.T) string {
	b, err := os.ReadFile(r.calls)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// without drops the variables named by prefix (e.g. "INSTALL_SKIFF_BIN=").
func without(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// snapshot maps every non-directory under root to its mode and content hash
// (or its link target).
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[rel] = "symlink -> " + target
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m[rel] = fmt.Sprintf("%v %x", fi.Mode(), sum)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func unitExecStart(t *testing.T, unit string) string {
	t.Helper()
	for _, l := range strings.Split(unit, "\n") {
		if strings.HasPrefix(l, "ExecStart=") {
			return l
		}
	}
	t.Fatalf("no ExecStart= line in unit:\n%s", unit)
	return ""
}

func TestInstallIntoTempRoot(t *testing.T) {
	const secret = "secretvalue"
	token := "K10" + strings.Repeat("ab", 32) + "::server:" + secret

	t.Run("agent", func(t *testing.T) {
		r := newInstallRoot(t)
		extra := []string{
			"INSTALL_SKIFF_INIT=systemd",
			"INSTALL_SKIFF_SKIP_START=true",
			"INSTALL_SKIFF_SKIP_ENABLE=true",
			"SKIFF_URL=https://192.0.2.10:6443",
			"SKIFF_TOKEN=" + token,
		}
		out := r.install(t, extra)
		if strings.Contains(out, secret) {
			t.Errorf("installer output shows the token secret:\n%s", out)
		}

		// The binary: same bytes, 0755.
		installed := filepath.Join(r.bin, "skiff")
		assertMode(t, installed, 0o755)
		if a, b := fileSHA(t, skiffBin), fileSHA(t, installed); a != b {
			t.Errorf("installed binary differs from %s", skiffBin)
		}
		for _, name := range []string{"kubectl", "crictl", "ctr"} {
			p := filepath.Join(r.bin, name)
			resolved, err := filepath.EvalSymlinks(p)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if resolved != installed {
				t.Errorf("%s resolves to %s, want %s", p, resolved, installed)
			}
		}

		// The unit and its environment file.
		unit := readFile(t, filepath.Join(r.systemd, "skiff-agent.service"))
		if got, want := unitExecStart(t, unit), "ExecStart="+installed+" agent"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		envPath := filepath.Join(r.systemd, "skiff-agent.service.env")
		for _, want := range []string{
			"\nType=exec\n",
			"\nEnvironmentFile=-" + envPath + "\n",
			"\nDelegate=yes\n",
			"\nKillMode=process\n",
			"\nRestart=always\n",
			"\nRestartSec=5s\n",
			"\nLimitNOFILE=20000\n",
			"\nTasksMax=infinity\n",
			"\nExecStartPre=-/sbin/modprobe br_netfilter\n",
			"\nExecStartPre=-/sbin/modprobe overlay\n",
		} {
			if !strings.Contains(unit, want) {
				t.Errorf("unit lacks %q:\n%s", strings.TrimSpace(want), unit)
			}
		}
		assertMode(t, envPath, 0o600)
		env := readFile(t, envPath)
		for _, want := range []string{"SKIFF_URL=https://192.0.2.10:6443\n", "SKIFF_TOKEN=" + token + "\n"} {
			if !strings.Contains(env, want) {
				t.Errorf("env file lacks %q", strings.TrimSpace(want))
			}
		}

		// The scripts.
		for _, name := range []string{"skiff-killall.sh", "skiff-agent-uninstall.sh"} {
			assertMode(t, filepath.Join(r.bin, name), 0o755)
		}
		shellcheck(t, filepath.Join(r.bin, "skiff-killall.sh"), filepath.Join(r.bin, "skiff-agent-uninstall.sh"))
		if calls := r.systemctlCalls(t); calls != "" {
			t.Errorf("systemctl was called although start and enable were skipped:\n%s", calls)
		}

		// A second run changes nothing.
		before := snapshot(t, r.root)
		r.install(t, extra)
		after := snapshot(t, r.root)
		for p, v := range before {
			if after[p] != v {
				t.Errorf("re-install changed %s: %q -> %q", p, v, after[p])
			}
		}
		for p := range after {
			if _, ok := before[p]; !ok {
				t.Errorf("re-install added %s", p)
			}
		}

		// The uninstall script removes every file it installed.
		db := layout.New(r.data).Server
		if err := os.MkdirAll(db.DBDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(db.StateDB, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, uout := runScript(t, r.env(), filepath.Join(r.bin, "skiff-agent-uninstall.sh"))
		if code != 0 {
			t.Fatalf("uninstall exited with %d:\n%s", code, uout)
		}
		checkMessageFormat(t, uout)
		if left := snapshot(t, r.root); len(left) != 0 {
			t.Errorf("uninstall left files behind: %v", left)
		}
		for _, d := range []string{r.data, r.config} {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("uninstall left %s (%v)", d, err)
			}
		}
	})

	t.Run("server", func(t *testing.T) {
		r := newInstallRoot(t)
		out := r.install(t, []string{
			"INSTALL_SKIFF_INIT=systemd",
			"INSTALL_SKIFF_SKIP_START=true",
			"INSTALL_SKIFF_SKIP_ENABLE=true",
			"INSTALL_SKIFF_EXEC=--https-listen-port 7443",
			"INSTALL_SKIFF_CONFIG=tls-san: [a.example]",
			"SKIFF_TOKEN=" + secret,
		}, "--tls-san", "b example")
		if strings.Contains(out, secret) {
			t.Errorf("installer output shows the token:\n%s", out)
		}
		installed := filepath.Join(r.bin, "skiff")
		unit := readFile(t, filepath.Join(r.systemd, "skiff.service"))
		want := "ExecStart=" + installed + ` server --https-listen-port 7443 --tls-san "b example"`
		if got := unitExecStart(t, unit); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		envPath := filepath.Join(r.systemd, "skiff.service.env")
		assertMode(t, envPath, 0o600)
		env := readFile(t, envPath)
		if !strings.Contains(env, "SKIFF_TOKEN="+secret+"\n") || strings.Contains(env, "SKIFF_URL") {
			t.Errorf("server env file: %q", env)
		}
		// The config lives in a non-default dir: the service is told where.
		cfg := filepath.Join(r.config, "config.yaml")
		if !strings.Contains(env, "SKIFF_CONFIG_FILE="+cfg+"\n") {
			t.Errorf("server env file lacks SKIFF_CONFIG_FILE: %q", env)
		}
		assertMode(t, cfg, 0o600)
		if got := readFile(t, cfg); got != "tls-san: [a.example]\n" {
			t.Errorf("config.yaml = %q", got)
		}
		if _, err := os.Stat(filepath.Join(r.bin, "skiff-uninstall.sh")); err != nil {
			t.Error(err)
		}
		if calls := r.systemctlCalls(t); calls != "" {
			t.Errorf("systemctl was called:\n%s", calls)
		}
	})

	t.Run("systemd-start", func(t *testing.T) {
		r := newInstallRoot(t)
		r.install(t, []string{"INSTALL_SKIFF_INIT=systemd"})
		want := "systemctl daemon-reload\nsystemctl enable skiff\nsystemctl restart skiff\n"
		if got := r.systemctlCalls(t); got != want {
			t.Errorf("systemctl calls:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("openrc", func(t *testing.T) {
		r := newInstallRoot(t)
		r.install(t, []string{"INSTALL_SKIFF_INIT=openrc", "SKIFF_URL=https://192.0.2.10:6443", "SKIFF_TOKEN=" + token})
		script := readFile(t, filepath.Join(r.openrc, "skiff-agent"))
		for _, want := range []string{"#!/sbin/openrc-run\n", "command=" + filepath.Join(r.bin, "skiff") + "\n", "command_args='agent'\n"} {
			if !strings.Contains(script, want) {
				t.Errorf("openrc script lacks %q:\n%s", want, script)
			}
		}
		assertMode(t, filepath.Join(r.config, "skiff-agent.env"), 0o600)
		want := "rc-update add skiff-agent default\nrc-service skiff-agent restart\n"
		if got := r.systemctlCalls(t); got != want {
			t.Errorf("openrc calls:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("token-required", func(t *testing.T) {
		r := newInstallRoot(t)
		code, out := runScript(t, r.env("INSTALL_SKIFF_INIT=none", "SKIFF_URL=https://192.0.2.10:6443"), installScript(t))
		if code == 0 || !strings.Contains(out, "[ERROR] ") || !strings.Contains(out, "SKIFF_TOKEN") {
			t.Errorf("install with SKIFF_URL but no token: exit %d, output:\n%s", code, out)
		}
		if _, err := os.Stat(filepath.Join(r.bin, "skiff")); !os.IsNotExist(err) {
			t.Errorf("failed install still wrote the binary (%v)", err)
		}
	})

	t.Run("init-none", func(t *testing.T) {
		r := newInstallRoot(t)
		out := r.install(t, []string{"INSTALL_SKIFF_INIT=none"})
		if !strings.Contains(out, "start skiff by hand with: "+filepath.Join(r.bin, "skiff")+" server") {
			t.Errorf("no manual-start hint:\n%s", out)
		}
		for _, p := range []string{r.systemd, r.openrc} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("init=none created %s", p)
			}
		}
	})

	t.Run("existing-kubectl", func(t *testing.T) {
		r := newInstallRoot(t)
		if err := os.MkdirAll(r.bin, 0o755); err != nil {
			t.Fatal(err)
		}
		kubectl := filepath.Join(r.bin, "kubectl")
		if err := os.WriteFile(kubectl, []byte("#!/bin/sh\necho real kubectl\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		r.install(t, []string{"INSTALL_SKIFF_INIT=none"})
		if fi, err := os.Lstat(kubectl); err != nil || !fi.Mode().IsRegular() || readFile(t, kubectl) != "#!/bin/sh\necho real kubectl\n" {
			t.Errorf("existing kubectl was replaced (%v)", err)
		}
		if target, err := os.Readlink(filepath.Join(r.bin, "crictl")); err != nil || target != "skiff" {
			t.Errorf("crictl symlink: %q, %v", target, err)
		}
		// The uninstall script leaves the foreign kubectl in place too.
		code, out := runScript(t, r.env(), filepath.Join(r.bin, "skiff-uninstall.sh"))
		if code != 0 {
			t.Fatalf("uninstall exited with %d:\n%s", code, out)
		}
		if left := snapshot(t, r.root); len(left) != 1 || left["usr/local/bin/kubectl"] == "" {
			t.Errorf("after uninstall: %v, want only usr/local/bin/kubectl", left)
		}
		// With INSTALL_SKIFF_SYMLINK=force it is replaced.
		if err := os.WriteFile(kubectl, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
		r.install(t, []string{"INSTALL_SKIFF_INIT=none", "INSTALL_SKIFF_SYMLINK=force"})
		if target, err := os.Readlink(kubectl); err != nil || target != "skiff" {
			t.Errorf("forced kubectl symlink: %q, %v", target, err)
		}
	})

	t.Run("symlink-skip", func(t *testing.T) {
		r := newInstallRoot(t)
		r.install(t, []string{"INSTALL_SKIFF_INIT=none", "INSTALL_SKIFF_SYMLINK=skip"})
		for _, name := range []string{"kubectl", "crictl", "ctr"} {
			if _, err := os.Lstat(filepath.Join(r.bin, name)); !os.IsNotExist(err) {
				t.Errorf("%s exists with INSTALL_SKIFF_SYMLINK=skip", name)
			}
		}
	})
}

// fakeSkiffBinary writes a small stand-in for the skiff binary, so tests
// that only look at the service files need not copy the real one.
func fakeSkiffBinary(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "skiff")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n# "+content+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// openrcHarness does with a generated OpenRC script what openrc-run and
// supervise-daemon.sh do: source it, then eval the command line unquoted
// ("eval supervise-daemon ... $command -- $command_args ..."). It writes
// each resulting argument to <out>/argv.<n> and the SKIFF_* environment
// the script exports to <out>/env.
const openrcHarness = `out=$2
. "$1"
record() {
	n=0
	for a in "$@"; do
		n=$((n + 1))
		printf '%s' "$a" >"$out/argv.$n"
	done
}
eval record $command -- $command_args $command_args_foreground
env | grep '^SKIFF_' | sort >"$out/env"
`

// openrcLaunch runs the OpenRC script at path through openrcHarness and
// returns the argv supervise-daemon would get after "--", and the SKIFF_*
// environment lines.
func openrcLaunch(t *testing.T, path string) (argv []string, env string) {
	t.Helper()
	dir := t.TempDir()
	harness := filepath.Join(dir, "harness.sh")
	if err := os.WriteFile(harness, []byte(openrcHarness), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if code, output := runScript(t, []string{"PATH=" + os.Getenv("PATH")}, harness, path, out); code != 0 {
		t.Fatalf("sourcing %s the way OpenRC does exited with %d:\n%s", path, code, output)
	}
	for n := 1; ; n++ {
		b, err := os.ReadFile(filepath.Join(out, "argv."+strconv.Itoa(n)))
		if os.IsNotExist(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		argv = append(argv, string(b))
	}
	if len(argv) < 2 || argv[1] != "--" {
		t.Fatalf("OpenRC command line %q does not start with the command and --", argv)
	}
	return append([]string{argv[0]}, argv[2:]...), readFile(t, filepath.Join(out, "env"))
}

// TestInstallQuotesServiceArguments: arguments full of shell and systemd
// syntax reach skiff byte for byte through the OpenRC script and the
// systemd unit.
func TestInstallQuotesServiceArguments(t *testing.T) {
	args := []string{
		"--node-label", `note=a $HOME ` + "`id`" + ` "q" it's`,
		"--node-label", "spaces=two  and\ta tab\nand a newline",
		"--node-label", `odd=100% ${PATH} \n \\ ; * ?`,
		"--kubelet-arg", "max-pods=20",
	}

	t.Run("openrc", func(t *testing.T) {
		r := newInstallRoot(t)
		r.install(t, []string{"INSTALL_SKIFF_INIT=openrc", "INSTALL_SKIFF_SKIP_START=true", "INSTALL_SKIFF_SKIP_ENABLE=true"}, args...)
		script := filepath.Join(r.openrc, "skiff")
		argv, _ := openrcLaunch(t, script)
		want := append([]string{filepath.Join(r.bin, "skiff"), "server"}, args...)
		if !slices.Equal(argv, want) {
			t.Errorf("OpenRC would start\n%q\nwant\n%q\nscript:\n%s", argv, want, readFile(t, script))
		}
	})

	t.Run("systemd", func(t *testing.T) {
		r := newInstallRoot(t)
		r.install(t, []string{"INSTALL_SKIFF_INIT=systemd", "INSTALL_SKIFF_SKIP_START=true", "INSTALL_SKIFF_SKIP_ENABLE=true"}, args...)
		// systemd's rules: in double quotes \" and \\ are escapes and \n a
		// newline, $$ is a literal $ and %% a literal %, in any word.
		want := "ExecStart=" + filepath.Join(r.bin, "skiff") + " server" +
			` --node-label "note=a $$HOME ` + "`id`" + ` \"q\" it's"` +
			` --node-label "spaces=two  and` + "\t" + `a tab\nand a newline"` +
			` --node-label "odd=100%% $${PATH} \\n \\\\ ; * ?"` +
			` --kubelet-arg max-pods=20`
		if got := unitExecStart(t, readFile(t, filepath.Join(r.systemd, "skiff.service"))); got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	})
}

// TestInstallKeepsSecretsOffCommandLines: a token, agent token or datastore
// endpoint given as an argument goes to the service's environment file,
// readable by root only, and into no unit, init script or output.
func TestInstallKeepsSecretsOffCommandLines(t *testing.T) {
	const (
		token      = "K10" + "0123456789abcdef" + "::server:tok-secret"
		agentToken = "agent-secret"
		endpoint   = "postgres://skiff:db-secret@192.0.2.20:5432/skiff"
	)
	secrets := []string{"tok-secret", agentToken, "db-secret"}

	// checkSecretFiles: only envFile holds a secret, and it is not readable
	// by group or others.
	checkSecretFiles := func(t *testing.T, r *installRoot, envFile string) {
		t.Helper()
		err := filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, s := range secrets {
				if !bytes.Contains(b, []byte(s)) {
					continue
				}
				if p != envFile {
					t.Errorf("%s holds the secret %q:\n%s", p, s, b)
				}
				fi, err := os.Stat(p)
				if err != nil {
					return err
				}
				if fi.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s holds the secret %q and has mode %o", p, s, fi.Mode().Perm())
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// extra: the installer's variables (a later one wins over the same
	// name in installRoot.env).
	extra := func(init string, more ...string) []string {
		return append([]string{"INSTALL_SKIFF_BIN=" + fakeSkiffBinary(t, "v1"),
			"INSTALL_SKIFF_INIT=" + init, "INSTALL_SKIFF_SKIP_START=true", "INSTALL_SKIFF_SKIP_ENABLE=true"}, more...)
	}
	install := func(t *testing.T, r *installRoot, extra []string, args ...string) string {
		t.Helper()
		out := r.install(t, extra, args...)
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("installer output shows the secret %q:\n%s", s, out)
			}
		}
		return out
	}

	t.Run("systemd", func(t *testing.T) {
		r := newInstallRoot(t)
		// The argument wins over SKIFF_TOKEN, as skiff's flags win over
		// its environment.
		install(t, r, extra("systemd", "SKIFF_TOKEN=from-the-environment"),
			"server", "--token", token, "--agent-token="+agentToken, "--node-label", "a=b", "--datastore-endpoint", endpoint)
		unit := readFile(t, filepath.Join(r.systemd, "skiff.service"))
		if got, want := unitExecStart(t, unit), "ExecStart="+filepath.Join(r.bin, "skiff")+" server --node-label a=b"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		envFile := filepath.Join(r.systemd, "skiff.service.env")
		env := readFile(t, envFile)
		for _, want := range []string{"SKIFF_TOKEN=" + token + "\n", "SKIFF_AGENT_TOKEN=" + agentToken + "\n", "SKIFF_DATASTORE_ENDPOINT=" + endpoint + "\n"} {
			if !strings.Contains(env, want) {
				t.Errorf("env file lacks %q:\n%s", strings.TrimSpace(want), env)
			}
		}
		if strings.Contains(env, "from-the-environment") {
			t.Errorf("env file kept SKIFF_TOKEN from the environment over --token:\n%s", env)
		}
		assertMode(t, envFile, 0o600)
		checkSecretFiles(t, r, envFile)
	})

	t.Run("openrc", func(t *testing.T) {
		r := newInstallRoot(t)
		install(t, r, extra("openrc", "SKIFF_URL=https://192.0.2.10:6443"),
			"agent", "--token="+token, "--node-label", "a=b")
		envFile := filepath.Join(r.config, "skiff-agent.env")
		assertMode(t, envFile, 0o600)
		checkSecretFiles(t, r, envFile)
		argv, env := openrcLaunch(t, filepath.Join(r.openrc, "skiff-agent"))
		if want := []string{filepath.Join(r.bin, "skiff"), "agent", "--node-label", "a=b"}; !slices.Equal(argv, want) {
			t.Errorf("OpenRC would start %q, want %q", argv, want)
		}
		if want := "SKIFF_TOKEN=" + token + "\n"; !strings.Contains(env, want) {
			t.Errorf("the OpenRC script exports %q, want it to hold %q", env, strings.TrimSpace(want))
		}
	})

	t.Run("no-service", func(t *testing.T) {
		r := newInstallRoot(t)
		out := install(t, r, extra("none"), "-t", token)
		if !strings.Contains(out, "SKIFF_TOKEN=... "+filepath.Join(r.bin, "skiff")+" server\n") {
			t.Errorf("the manual-start hint does not point at SKIFF_TOKEN:\n%s", out)
		}
	})

	for _, arg := range []string{"--token", "--agent-token=", "--datastore-endpoint"} {
		t.Run("missing-value"+arg, func(t *testing.T) {
			r := newInstallRoot(t)
			code, out := runScript(t, r.env(extra("systemd")...), installScript(t), "server", arg)
			flag := strings.TrimSuffix(arg, "=")
			if code == 0 || !strings.Contains(out, "[ERROR] "+flag+" needs a value") {
				t.Errorf("install with %s and no value: exit %d:\n%s", arg, code, out)
			}
			if _, err := os.Stat(filepath.Join(r.bin, "skiff")); !os.IsNotExist(err) {
				t.Errorf("failed install still wrote the binary (%v)", err)
			}
		})
	}
}

// TestInstallRestartsOnlyOnChange: re-running the installer with nothing
// changed leaves a running service alone (and its files untouched); a new
// binary, unit or init script, or environment does restart it.
func TestInstallRestartsOnlyOnChange(t *testing.T) {
	for _, tc := range []struct {
		init, serviceFile, envFile string
		// unchanged: the service calls of a re-run with nothing changed
		// while the service runs.
		unchanged string
		restart   string
	}{
		{"systemd", "etc/systemd/system/skiff.service", "etc/systemd/system/skiff.service.env",
			"systemctl daemon-reload\nsystemctl enable skiff\nsystemctl start skiff\n", "systemctl restart skiff\n"},
		{"openrc", "etc/init.d/skiff", "etc/skiff/skiff.env",
			"rc-update add skiff default\nrc-service skiff status\n", "rc-service skiff restart\n"},
	} {
		t.Run(tc.init, func(t *testing.T) {
			r := newInstallRoot(t)
			v1, v2 := fakeSkiffBinary(t, "v1"), fakeSkiffBinary(t, "v2")
			// A later variable wins over the same name in installRoot.env.
			env := func(binary string, extra ...string) []string {
				return r.env(append([]string{"INSTALL_SKIFF_BIN=" + binary, "INSTALL_SKIFF_INIT=" + tc.init}, extra...)...)
			}
			run := func(env []string, args ...string) string {
				t.Helper()
				if err := os.Remove(r.calls); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				code, out := runScript(t, env, installScript(t), args...)
				if code != 0 {
					t.Fatalf("install.sh exited with %d:\n%s", code, out)
				}
				checkMessageFormat(t, out)
				return r.systemctlCalls(t)
			}
			modTimes := func() map[string]time.Time {
				m := map[string]time.Time{}
				for _, rel := range []string{"usr/local/bin/skiff", tc.serviceFile, tc.envFile} {
					fi, err := os.Stat(filepath.Join(r.root, rel))
					if err != nil {
						t.Fatal(err)
					}
					m[rel] = fi.ModTime()
				}
				return m
			}

			if calls := run(env(v1), "--node-label", "a=b"); !strings.HasSuffix(calls, tc.restart) {
				t.Fatalf("first install: service calls\n%s\nwant a restart", calls)
			}
			before := modTimes()
			// Coarse file system clocks must not hide a rewrite.
			time.Sleep(20 * time.Millisecond)
			if calls := run(env(v1), "--node-label", "a=b"); calls != tc.unchanged {
				t.Errorf("unchanged re-run: service calls\n%s\nwant\n%s", calls, tc.unchanged)
			}
			for rel, mtime := range modTimes() {
				if !mtime.Equal(before[rel]) {
					t.Errorf("unchanged re-run rewrote %s", rel)
				}
			}

			for _, change := range []struct {
				what string
				env  []string
				args []string
			}{
				{"binary", env(v2), []string{"--node-label", "a=b"}},
				{"arguments", env(v2), []string{"--node-label", "a=c"}},
				{"environment", env(v2, "SKIFF_NODE_NAME=n1"), []string{"--node-label", "a=c"}},
			} {
				if calls := run(change.env, change.args...); !strings.HasSuffix(calls, tc.restart) {
					t.Errorf("re-run with a new %s: service calls\n%s\nwant a restart", change.what, calls)
				}
			}
		})
	}

	// A service that is not running is started even when nothing changed.
	t.Run("openrc-stopped", func(t *testing.T) {
		r := newInstallRoot(t)
		extra := []string{"INSTALL_SKIFF_BIN=" + fakeSkiffBinary(t, "v1"), "INSTALL_SKIFF_INIT=openrc"}
		r.install(t, extra)
		stopped := fmt.Sprintf("#!/bin/sh\necho rc-service \"$@\" >> %q\n[ \"$2\" != status ] || exit 3\n", r.calls)
		if err := os.WriteFile(filepath.Join(r.fakeBin, "rc-service"), []byte(stopped), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(r.calls); err != nil {
			t.Fatal(err)
		}
		r.install(t, extra)
		if want := "rc-update add skiff default\nrc-service skiff status\nrc-service skiff restart\n"; r.systemctlCalls(t) != want {
			t.Errorf("re-run with the service stopped: calls\n%s\nwant\n%s", r.systemctlCalls(t), want)
		}
	})
}

// TestInstallDownload installs from a URL base served by the test, with the
// checksum checked.
func TestInstallDownload(t *testing.T) {
	arch := map[string]string{"amd64": "amd64", "arm64": "arm64", "arm": "arm", "s390x": "s390x", "riscv64": "riscv64"}[runtime.GOARCH]
	if arch == "" {
		t.Skipf("no installer architecture for %s", runtime.GOARCH)
	}
	payload := []byte("#!/bin/sh\necho fake skiff\n")
	sum := sha256.Sum256(payload)
	files := map[string]string{
		"/v9.9.9/skiff-" + arch:                   string(payload),
		"/v9.9.9/sha256sum-" + arch + ".txt":      hex.EncodeToString(sum[:]) + "  skiff-" + arch + "\n",
		"/bad/skiff-" + arch:                      string(payload) + "tampered",
		"/bad/sha256sum-" + arch + ".txt":         hex.EncodeToString(sum[:]) + "  skiff-" + arch + "\n",
		"/missing-sum/skiff-" + arch:              string(payload),
		"/missing-sum/sha256sum-" + arch + ".txt": "",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, ok := files[req.URL.Path]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write([]byte(body))
	}))
	defer srv.Close()

	base := func(r *installRoot, version string) []string {
		env := r.env("INSTALL_SKIFF_INIT=none", "INSTALL_SKIFF_URL_BASE="+srv.URL, "INSTALL_SKIFF_VERSION="+version)
		return without(env, "INSTALL_SKIFF_BIN=")
	}

	t.Run("verified", func(t *testing.T) {
		r := newInstallRoot(t)
		code, out := runScript(t, base(r, "v9.9.9"), installScript(t))
		if code != 0 {
			t.Fatalf("install exited with %d:\n%s", code, out)
		}
		if got := readFile(t, filepath.Join(r.bin, "skiff")); got != string(payload) {
			t.Errorf("downloaded binary = %q", got)
		}
		assertMode(t, filepath.Join(r.bin, "skiff"), 0o755)
	})
	for _, tc := range []struct{ version, want string }{
		{"bad", "sha256 mismatch"},
		{"missing-sum", "no checksum"},
		{"v0.0.404", "download of"},
	} {
		t.Run(tc.version, func(t *testing.T) {
			r := newInstallRoot(t)
			code, out := runScript(t, base(r, tc.version), installScript(t))
			if code == 0 || !strings.Contains(out, "[ERROR] ") || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want failure mentioning %q:\n%s", code, tc.want, out)
			}
			checkMessageFormat(t, out)
			if _, err := os.Stat(filepath.Join(r.bin, "skiff")); !os.IsNotExist(err) {
				t.Errorf("failed install wrote the binary (%v)", err)
			}
		})
	}
	t.Run("no-source", func(t *testing.T) {
		r := newInstallRoot(t)
		env := without(r.env("INSTALL_SKIFF_INIT=none"), "INSTALL_SKIFF_BIN=")
		code, out := runScript(t, env, installScript(t))
		for _, v := range []string{"INSTALL_SKIFF_BIN", "INSTALL_SKIFF_URL_BASE", "INSTALL_SKIFF_VERSION"} {
			if code == 0 || !strings.Contains(out, v) {
				t.Errorf("exit %d, want an error naming %s:\n%s", code, v, out)
			}
		}
	})
}

// shellcheck lints generated scripts; scripts/deps installs shellcheck.
func shellcheck(t *testing.T, paths ...string) {
	t.Helper()
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Fatal("shellcheck is not installed: run scripts/deps")
	}
	out, err := exec.Command("shellcheck", append([]string{"-s", "sh"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// killallPodManifest is a pod on the test image with a memory-backed
// emptyDir (a tmpfs mount under the kubelet's root dir, besides the
// service account token's).
const killallPodManifest = `apiVersion: v1
kind: Pod
metadata:
  name: killall-web
  labels:
    app: killall-web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: ` + webImageV1 + `
    imagePullPolicy: Never
    volumeMounts:
    - name: scratch
      mountPath: /scratch
  volumes:
  - name: scratch
    emptyDir:
      medium: Memory
`

// podProcs lists the live processes in the cgroups of the pod with uid.
func podProcs(uid string) []nodetest.Proc {
	scope := nodetest.Scope{PodUIDs: map[string]bool{uid: true}}
	var out []nodetest.Proc
	for _, p := range nodetest.ListProcs() {
		if p.State != 'Z' && inCgroup(p, scope.OwnsPodCgroup) {
			out = append(out, p)
		}
	}
	return out
}

// inCgroup: a component of one of p's cgroup paths satisfies match.
func inCgroup(p nodetest.Proc, match func(string) bool) bool {
	for _, line := range strings.Split(p.Cgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) < 3 {
			continue
		}
		for _, c := range strings.Split(parts[2], "/") {
			if match(c) {
				return true
			}
		}
	}
	return false
}

// mountsUnder lists the mount points at or below any of dirs.
func mountsUnder(dirs ...string) []string {
	var out []string
	for _, m := range nodetest.MountPoints() {
		for _, d := range dirs {
			if nodetest.Under(m, d) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// cniNetns lists the pods' network namespaces (/run/netns/cni-*), as files
// and as mounts.
func cniNetns() []string {
	var out []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "cni-") {
			out = append(out, filepath.Join("/run/netns", e.Name()))
		}
	}
	for _, m := range nodetest.MountPoints() {
		if strings.HasPrefix(m, "/run/netns/cni-") && !contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// nodeRuleLines returns the iptables and ip6tables lines of kube-proxy,
// flannel, the CNI plugins and skiff's cluster-IP guard, and the nftables
// tables of kube-proxy and flannel; tools that are not installed are
// skipped (and logged).
func nodeRuleLines(t *testing.T) []string {
	t.Helper()
	var out []string
	rule := regexp.MustCompile(`KUBE-|CNI-|(?i:flannel)|SKIFF-CLUSTER-IPS`)
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(save); err != nil {
			t.Logf("%s not installed; its rules not checked", save)
			continue
		}
		b, err := exec.Command(save).CombinedOutput()
		if err != nil {
			t.Logf("%s failed (%v); its rules not checked: %s", save, err, b)
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if rule.MatchString(l) {
				out = append(out, save+": "+l)
			}
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		b, _ := exec.Command("nft", "list", "tables").Output()
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 3 && (strings.HasPrefix(f[2], "kube-proxy") || strings.HasPrefix(strings.ToLower(f[2]), "flannel")) {
				out = append(out, "nft: "+l)
			}
		}
	}
	return out
}

// policySets lists the network policy controller's ipsets in the host's
// network namespace.
func policySets(t *testing.T) []string {
	t.Helper()
	b, err := exec.Command("ipset", "list", "-n").CombinedOutput()
	if err != nil {
		t.Fatalf("ipset list: %v: %s", err, b)
	}
	var out []string
	set := regexp.MustCompile(`^(inet6:)?KUBE-(SRC|DST)-`)
	for _, l := range strings.Split(string(b), "\n") {
		if set.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// hostHasLink: the host's network namespace has a link named name.
func hostHasLink(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// outputLine returns the words after prefix on the output line that starts
// with it.
func outputLine(out, prefix string) []string {
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

func pidsOf(procs []nodetest.Proc) []string {
	var out []string
	for _, p := range procs {
		out = append(out, fmt.Sprintf("%d(%s)", p.PID, filepath.Base(p.Exe)))
	}
	return out
}

// TestKillallStopsNode runs the generated skiff-killall.sh against a real
// node (a server with its agent) that runs a pod, and checks that it leaves
// the host as a reboot would: no skiff, containerd, shim or pod process, no
// mount under the kubelet's root dir, the data dir or /run/skiff, no pod
// network namespace, no cni0 or flannel.1, no kube-proxy, flannel or CNI
// rules, no /run/skiff; the data stays and the node starts again.
//
// The server runs from skiffBin, not from the installed copy: the killall
// script also kills processes whose executable is named skiff when they use
// the installed data dir (INSTALL_SKIFF_DATA_DIR, here the server's
// --data-dir). The kubelet's root dir is not given to the installer: the
// script reads it from the running server's --kubelet-arg.
func TestKillallStopsNode(t *testing.T) {
	s := newNode(t)
	s.start()
	s.waitReady()
	s.waitNodeReady(3 * time.Minute)
	pid := s.cmd.Process.Pid

	s.apply(killallPodManifest)
	pod := s.waitPod("default", "killall-web", 2*time.Minute, podInfo.running)
	uid := pod.Metadata.UID

	// What a running node has, so the checks below check something.
	podPIDs := podProcs(uid)
	if len(podPIDs) == 0 {
		t.Fatalf("no process in the cgroups of pod %s", uid)
	}
	var shims, children []nodetest.Proc
	procs := nodetest.ListProcs()
	for _, p := range procs {
		if p.IsShim() && p.State != 'Z' {
			shims = append(shims, p)
		}
	}
	for _, p := range procs {
		// A shim runs runc for a moment to create or probe a container (the
		// addons' pods may still be starting); such a child can be gone
		// before killall looks. Containers are what killall must name; a
		// runc left behind is caught below as a process under the data dir.
		if filepath.Base(p.Exe) == "runc" {
			continue
		}
		for _, sh := range shims {
			if p.PPID == sh.PID && p.State != 'Z' {
				children = append(children, p)
			}
		}
	}
	if len(shims) == 0 || len(children) == 0 {
		t.Fatalf("%d containerd shims with %d children before killall, want some", len(shims), len(children))
	}
	var containerd []nodetest.Proc
	for _, p := range procs {
		if len(p.Argv) > 1 && filepath.Base(p.Exe) == "skiff" && p.Argv[1] == "containerd" && p.PPID == pid {
			containerd = append(containerd, p)
		}
	}
	if len(containerd) != 1 {
		t.Errorf("%d containerd children of the server, want 1", len(containerd))
	}
	t.Logf("before killall: server %d, containerd %v, shims %v, their children %v, pod processes %v",
		pid, pidsOf(containerd), pidsOf(shims), pidsOf(children), pidsOf(podPIDs))
	kubeletMounts := mountsUnder(s.kubeletDir())
	if len(kubeletMounts) == 0 || len(mountsUnder(runDir)) == 0 || len(cniNetns()) == 0 {
		t.Fatalf("before killall: %d mounts under %s, %d under %s, %d cni network namespaces; want some of each",
			len(kubeletMounts), s.kubeletDir(), len(mountsUnder(runDir)), runDir, len(cniNetns()))
	}
	for _, link := range []string{"cni0", "flannel.1"} {
		if !hostHasLink(link) {
			t.Fatalf("no %s before killall", link)
		}
	}
	if len(nodeRuleLines(t)) == 0 {
		t.Fatal("no kube-proxy, flannel or CNI rules before killall")
	}
	// A policy, so that the network policy controller has sets to leave.
	s.apply(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: killall-web}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]
`)
	eventually(t, time.Minute, func() error {
		if len(policySets(t)) == 0 {
			return errors.New("no network policy ipsets before killall")
		}
		return nil
	})
	ipam := s.paths().Agent.CNIIPAMDir
	if _, err := os.Stat(ipam); err != nil {
		t.Fatalf("no IPAM state before killall: %v", err)
	}

	r := newInstallRoot(t)
	r.data = s.dataDir
	r.install(t, []string{"INSTALL_SKIFF_INIT=none", "INSTALL_SKIFF_SKIP_START=true"})
	killall := filepath.Join(r.bin, "skiff-killall.sh")
	shellcheck(t, killall)

	code, out := runScript(t, r.env(), killall)
	t.Logf("skiff-killall.sh:\n%s", out)
	if code != 0 {
		t.Fatalf("killall exited with %d:\n%s", code, out)
	}
	checkMessageFormat(t, out)
	// skiff first (its kubelet would restart the containers), then the
	// shims with the containers under them.
	stopping, killing := outputLine(out, "[INFO] Stopping skiff processes: "), outputLine(out, "[INFO] Killing containerd shims and pod processes: ")
	for _, p := range append([]nodetest.Proc{{PID: pid}}, containerd...) {
		if !contains(stopping, strconv.Itoa(p.PID)) {
			t.Errorf("killall did not stop skiff process %d first:\n%s", p.PID, out)
		}
	}
	for _, p := range append(append([]nodetest.Proc{}, shims...), children...) {
		if !contains(killing, strconv.Itoa(p.PID)) {
			t.Errorf("killall did not kill shim or container process %d (%s) after skiff:\n%s", p.PID, p.Cmdline(), out)
		}
	}
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("skiff server (pid %d) still running 60s after killall:\n%s", pid, out)
	}
	s.cmd = nil

	// Processes: killed ones may linger as zombies (PID 1 here does not
	// reap), which hold nothing.
	procs = nodetest.ListProcs()
	alive := func(pid int) bool { p, ok := procs[pid]; return ok && p.State != 'Z' }
	for _, p := range procs {
		if p.State == 'Z' {
			continue
		}
		switch {
		case filepath.Base(p.Exe) == "skiff" && strings.Contains(p.Cmdline(), s.dataDir):
			t.Errorf("skiff process %d (%s) survived killall", p.PID, p.Cmdline())
		case p.IsShim() || nodetest.Under(p.Exe, s.dataDir):
			t.Errorf("containerd shim %d (%s) survived killall", p.PID, p.Cmdline())
		case inCgroup(p, func(c string) bool { return strings.HasPrefix(c, "kubepods") }):
			t.Errorf("process %d (%s) in a kubepods cgroup survived killall:\n%s", p.PID, p.Cmdline(), p.Cgroup)
		}
	}
	for _, group := range [][]nodetest.Proc{containerd, shims, children, podPIDs} {
		for _, p := range group {
			if alive(p.PID) {
				t.Errorf("process %d (%s) survived killall", p.PID, p.Cmdline())
			}
		}
	}

	// Mounts, network namespaces, links, rules, run dir, IPAM state.
	if left := mountsUnder(s.kubeletDir(), s.dataDir, runDir); len(left) > 0 {
		t.Errorf("mounts left after killall: %v", left)
	}
	if left := cniNetns(); len(left) > 0 {
		t.Errorf("cni network namespaces left after killall: %v", left)
	}
	for _, link := range []string{"cni0", "flannel.1"} {
		if hostHasLink(link) {
			t.Errorf("network link %s exists after killall", link)
		}
	}
	for _, l := range nodeRuleLines(t) {
		t.Errorf("rule left after killall: %s", l)
	}
	if left := policySets(t); len(left) > 0 {
		t.Errorf("network policy ipsets left after killall: %v", left)
	}
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Errorf("%s exists after killall (%v)", runDir, err)
	}
	if _, err := os.Stat(ipam); !os.IsNotExist(err) {
		t.Errorf("%s exists after killall (%v)", ipam, err)
	}
	// The data stays.
	if fi, err := os.Stat(s.paths().Server.Dir); err != nil || !fi.IsDir() {
		t.Errorf("the server's data is gone after killall (%v)", err)
	}

	// Nothing running: killall is a no-op that still succeeds.
	code, out = runScript(t, r.env(), killall)
	if code != 0 {
		t.Fatalf("second killall exited with %d:\n%s", code, out)
	}
	if strings.Contains(out, "Killing") || strings.Contains(out, "Stopping") || strings.Contains(out, "Unmounted") {
		t.Errorf("second killall found something to do:\n%s", out)
	}

	// The node starts again where it stopped, and runs its pod again.
	s.start()
	s.waitReady()
	s.waitNodeReady(3 * time.Minute)
	again := s.waitPod("default", "killall-web", 3*time.Minute, podInfo.running)
	if again.Metadata.UID != uid {
		t.Errorf("pod killall-web has uid %s after the restart, was %s", again.Metadata.UID, uid)
	}
}

// TestKillallIptablesRules feeds killall a fake iptables-save and checks what
// it restores: the skiff, kube-proxy, flannel and CNI rules are gone, the
// host's own rules stay.
func TestKillallIptablesRules(t *testing.T) {
	// The script still acts on the host (processes, links, /run/skiff).
	preflightNode(t)
	r := newInstallRoot(t)
	r.install(t, []string{"INSTALL_SKIFF_INIT=none"})
	rules := strings.Join([]string{
		"*filter",
		":INPUT ACCEPT [0:0]",
		":KUBE-FIREWALL - [0:0]",
		":FLANNEL-FWD - [0:0]",
		":CNI-FORWARD - [0:0]",
		"-A INPUT -j KUBE-FIREWALL",
		"-A INPUT -p tcp --dport 22 -j ACCEPT",
		`-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`,
		`-A INPUT -m comment --comment "skiff supervisor" -j ACCEPT`,
		"COMMIT",
		"",
	}, "\n")
	restored := filepath.Join(r.fakeBin, "restored")
	if err := os.WriteFile(filepath.Join(r.fakeBin, "iptables-save"), []byte("#!/bin/sh\ncat <<'EOF'\n"+rules+"EOF\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.fakeBin, "iptables-restore"), []byte(fmt.Sprintf("#!/bin/sh\ncat > %q\n", restored)), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out := runScript(t, r.env(), filepath.Join(r.bin, "skiff-killall.sh"))
	if code != 0 {
		t.Fatalf("killall exited with %d:\n%s", code, out)
	}
	got := readFile(t, restored)
	want := "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
	if got != want {
		t.Errorf("restored rules:\n%s\nwant:\n%s", got, want)
	}
	if !bytes.Contains([]byte(out), []byte("[INFO] Removed skiff iptables rules")) {
		t.Errorf("killall output:\n%s", out)
	}
}

// TestInstallKillallRemovesIPAMState: skiff-killall.sh removes the pods'
// IP reservations where the binary's layout (`skiff paths`) puts them under
// a data dir that is not the default and needs quoting; it follows the
// binary's answer, and does the same when the binary is gone or answers
// something that is not `skiff paths` output. The rest of the data stays.
func TestInstallKillallRemovesIPAMState(t *testing.T) {
	// The script still acts on the host (processes, links, /run/skiff).
	preflightNode(t)
	r := newInstallRoot(t)
	r.data = filepath.Join(r.root, "srv", "skiff's data dir")
	r.install(t, []string{"INSTALL_SKIFF_INIT=none"})
	killall := filepath.Join(r.bin, "skiff-killall.sh")
	installed := filepath.Join(r.bin, "skiff")
	l := layout.New(r.data)
	other := filepath.Join(r.root, "elsewhere", "networks")

	// reservation writes a host-local IPAM reservation under dir.
	reservation := func(dir string) string {
		t.Helper()
		p := filepath.Join(dir, "cbr0", "10.42.0.5")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("container-id\neth0"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.MkdirAll(l.Server.DBDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.Server.StateDB, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	runKillall := func(t *testing.T) {
		t.Helper()
		code, out := runScript(t, r.env(), killall)
		if code != 0 {
			t.Fatalf("killall exited with %d:\n%s", code, out)
		}
		checkMessageFormat(t, out)
	}
	gone := func(t *testing.T, p string) {
		t.Helper()
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there after killall (%v)", p, err)
		}
	}
	stays := func(t *testing.T, p string) {
		t.Helper()
		if _, err := os.Stat(p); err != nil {
			t.Errorf("killall removed %s: %v", p, err)
		}
	}
	// standIn replaces the installed binary with a script.
	standIn := func(t *testing.T, script string) {
		t.Helper()
		if err := os.WriteFile(installed, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("binary", func(t *testing.T) {
		// The script evaluates the binary's lines as they are: none of them
		// may change a variable of its own, but for the two that are the
		// same paths.
		out, err := exec.Command(installed, "paths", "--config", "", "--data-dir", r.data).Output()
		if err != nil {
			t.Fatalf("skiff paths: %v", err)
		}
		script := readFile(t, killall)
		settings, _, ok := strings.Cut(script, "\n# skiff-killall.sh:")
		if !ok {
			t.Fatalf("skiff-killall.sh has no settings block:\n%s", script)
		}
		for _, m := range regexp.MustCompile(`(?m)^([A-Z][A-Z0-9_]*)=`).FindAllStringSubmatch(string(out), -1) {
			switch {
			case m[1] == "DATA_DIR" || m[1] == "RUN_DIR":
			case regexp.MustCompile(`(?m)^\s*` + m[1] + `=`).MatchString(script):
				t.Errorf("skiff paths prints %s, which skiff-killall.sh also sets", m[1])
			}
		}
		show := `; printf '%s|%s' "$DATA_DIR" "$RUN_DIR"`
		fromBinary, err1 := exec.Command("sh", "-c", `eval "$1"`+show, "sh", string(out)).Output()
		fromSettings, err2 := exec.Command("sh", "-c", settings+show).Output()
		if err1 != nil || err2 != nil || string(fromBinary) != string(fromSettings) || string(fromSettings) != r.data+"|"+layout.RunDir {
			t.Errorf("DATA_DIR|RUN_DIR: skiff paths %q (%v), the script's settings %q (%v), want %q",
				fromBinary, err1, fromSettings, err2, r.data+"|"+layout.RunDir)
		}

		p := reservation(l.Agent.CNIIPAMDir)
		runKillall(t)
		gone(t, l.Agent.CNIIPAMDir)
		gone(t, p)
		stays(t, l.Agent.CNIDataDir)
		stays(t, l.Server.StateDB)
	})
	t.Run("binary-answer", func(t *testing.T) {
		// A binary whose layout has the reservations elsewhere: killall goes
		// there, not to where this version keeps them.
		mine, theirs := reservation(l.Agent.CNIIPAMDir), reservation(other)
		standIn(t, "[ \"$1\" = paths ] && echo \"AGENT_CNI_IPAM_DIR='"+other+"'\"\n")
		runKillall(t)
		gone(t, theirs)
		stays(t, mine)
		if err := os.RemoveAll(l.Agent.CNIIPAMDir); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("not-paths-output", func(t *testing.T) {
		p := reservation(l.Agent.CNIIPAMDir)
		marker := filepath.Join(r.root, "evaluated")
		standIn(t, "echo \"touch '"+marker+"'\"\n")
		runKillall(t)
		gone(t, p)
		gone(t, marker)
	})
	t.Run("binary-gone", func(t *testing.T) {
		p := reservation(l.Agent.CNIIPAMDir)
		if err := os.Remove(installed); err != nil {
			t.Fatal(err)
		}
		runKillall(t)
		gone(t, p)
		stays(t, l.Server.StateDB)
	})
}

// TestKillallKubeletDir checks where skiff-killall.sh finds the kubelet's
// root dir with no node running: the install's --kubelet-arg (either
// form), SKIFF_KUBELET_ARG, the config file and a --config flag. It
// unmounts every mount below that dir, stacked ones too, but never the dir
// itself (it may be the host's own disk) nor another dir's mounts.
func TestKillallKubeletDir(t *testing.T) {
	preflightNode(t)
	cases := []struct {
		name string
		env  func(r *installRoot, dir string) []string
		args func(r *installRoot, dir string) []string
	}{
		{name: "flag", args: func(_ *installRoot, dir string) []string {
			return []string{"--kubelet-arg", "root-dir=" + dir}
		}},
		{name: "exec", env: func(_ *installRoot, dir string) []string {
			return []string{"INSTALL_SKIFF_EXEC=server --kubelet-arg=--root-dir=" + dir + "/"}
		}},
		{name: "environment", env: func(_ *installRoot, dir string) []string {
			return []string{"SKIFF_KUBELET_ARG=max-pods=20,root-dir=" + dir}
		}},
		{name: "config", env: func(_ *installRoot, dir string) []string {
			return []string{"INSTALL_SKIFF_CONFIG=kubelet-arg:\n  - max-pods=20\n  - \"root-dir=" + dir + "\"\n"}
		}},
		{name: "config-flag", args: func(r *installRoot, dir string) []string {
			cfg := filepath.Join(r.root, "my-config.yaml")
			if err := os.WriteFile(cfg, []byte("kubelet-arg: [root-dir="+dir+"]\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"--config", cfg}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newInstallRoot(t)
			dir := filepath.Join(r.root, "kubelet")
			other := filepath.Join(r.root, "other-kubelet")
			t.Cleanup(func() {
				if left := nodetest.UnmountUnder([]string{r.root}); len(left) > 0 {
					t.Errorf("cleanup: still mounted: %v", left)
				}
			})
			volume := filepath.Join(dir, "pods/p1/volumes/kubernetes.io~empty-dir/v")
			for _, m := range []string{dir, volume, volume, filepath.Join(other, "pods/p2")} {
				if err := os.MkdirAll(m, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mount("tmpfs", m, "tmpfs", 0, "size=1m"); err != nil {
					t.Skipf("cannot mount a tmpfs (%v): not root?", err)
				}
			}
			var env, args []string
			if tc.env != nil {
				env = tc.env(r, dir)
			}
			if tc.args != nil {
				args = tc.args(r, dir)
			}
			r.install(t, append(env, "INSTALL_SKIFF_INIT=none"), args...)
			code, out := runScript(t, r.env(), filepath.Join(r.bin, "skiff-killall.sh"))
			if code != 0 {
				t.Fatalf("killall exited with %d:\n%s", code, out)
			}
			checkMessageFormat(t, out)
			if !strings.Contains(out, "[INFO] Unmounted 2 mounts under "+dir+"\n") {
				t.Errorf("killall output does not report 2 unmounts under %s:\n%s", dir, out)
			}
			mounts := nodetest.MountPoints()
			if !contains(mounts, dir) {
				t.Errorf("killall unmounted the kubelet dir %s itself", dir)
			}
			if left := mountsUnder(filepath.Join(dir, "pods")); len(left) > 0 {
				t.Errorf("mounts left under %s: %v", dir, left)
			}
			if !contains(mounts, filepath.Join(other, "pods/p2")) {
				t.Errorf("killall unmounted %s, which is not the kubelet's", filepath.Join(other, "pods/p2"))
			}
		})
	}

	t.Run("relative", func(t *testing.T) {
		r := newInstallRoot(t)
		code, out := runScript(t, r.env("INSTALL_SKIFF_INIT=none"), installScript(t), "--kubelet-arg=root-dir=kubelet")
		if code == 0 || !strings.Contains(out, "[ERROR] --kubelet-arg root-dir must be an absolute path") {
			t.Errorf("install with a relative kubelet root dir: exit %d:\n%s", code, out)
		}
	})
}
