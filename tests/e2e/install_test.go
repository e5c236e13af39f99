package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
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
		if err := os.MkdirAll(filepath.Join(r.data, "server/db"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.data, "server/db/state.db"), []byte("x"), 0o600); err != nil {
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
		for _, want := range []string{"#!/sbin/openrc-run\n", "command=" + filepath.Join(r.bin, "skiff") + "\n", "command_args=\"agent\"\n"} {
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

// procExe returns the executable of every process, by pid.
func procExe() map[int]string {
	m := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		m[pid] = strings.TrimSuffix(exe, " (deleted)")
	}
	return m
}

func procCmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// TestKillallStopsServer runs the generated skiff-killall.sh against a real
// server. The server runs from skiffBin, not from the installed copy: the
// killall script also kills processes whose executable is named skiff when
// they use the installed data dir (here the server's --data-dir).
func TestKillallStopsServer(t *testing.T) {
	s := newServer(t)
	s.start()
	s.waitReady()
	pid := s.cmd.Process.Pid

	r := newInstallRoot(t)
	r.data = s.dataDir
	r.install(t, []string{"INSTALL_SKIFF_INIT=none", "INSTALL_SKIFF_SKIP_START=true"})
	killall := filepath.Join(r.bin, "skiff-killall.sh")
	shellcheck(t, killall)

	code, out := runScript(t, r.env(), killall)
	if code != 0 {
		t.Fatalf("killall exited with %d:\n%s", code, out)
	}
	checkMessageFormat(t, out)
	if !strings.Contains(out, strconv.Itoa(pid)) {
		t.Errorf("killall output does not name the server's pid %d:\n%s", pid, out)
	}
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("skiff server (pid %d) still running 60s after killall:\n%s", pid, out)
	}
	s.cmd = nil

	for p, exe := range procExe() {
		if filepath.Base(exe) == "skiff" && strings.Contains(procCmdline(p), s.dataDir) {
			t.Errorf("process %d (%s %s) survived killall", p, exe, procCmdline(p))
		}
	}
	if _, err := exec.LookPath("ip"); err == nil {
		for _, link := range []string{"cni0", "flannel.1"} {
			if err := exec.Command("ip", "link", "show", link).Run(); err == nil {
				t.Errorf("network link %s exists after killall", link)
			}
		}
	} else {
		t.Log("ip not installed; network links not checked")
	}
	if _, err := exec.LookPath("iptables-save"); err == nil {
		save, err := exec.Command("iptables-save").CombinedOutput()
		if err != nil {
			t.Logf("iptables-save failed (%v); rules not checked: %s", err, save)
		} else {
			for _, l := range strings.Split(string(save), "\n") {
				if strings.Contains(l, "KUBE-") || strings.Contains(l, "CNI-") || strings.Contains(strings.ToUpper(l), "FLANNEL") {
					t.Errorf("iptables rule left after killall: %s", l)
				}
			}
		}
	} else {
		t.Log("iptables-save not installed; iptables rules not checked")
	}
	if _, err := os.Stat("/run/skiff"); !os.IsNotExist(err) {
		t.Errorf("/run/skiff exists after killall (%v)", err)
	}

	// Nothing running: killall is a no-op that still succeeds.
	code, out = runScript(t, r.env(), killall)
	if code != 0 {
		t.Fatalf("second killall exited with %d:\n%s", code, out)
	}
}

// TestKillallIptablesRules feeds killall a fake iptables-save and checks what
// it restores: the skiff, kube-proxy, flannel and CNI rules are gone, the
// host's own rules stay.
func TestKillallIptablesRules(t *testing.T) {
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
