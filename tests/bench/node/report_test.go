package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func f(v float64) *float64 { return &v }

func TestStatIsMedianAndRangeOfTheNumbers(t *testing.T) {
	for _, tc := range []struct {
		in   []*float64
		want *Stat
	}{
		{nil, nil},
		{[]*float64{nil, nil}, nil},
		{[]*float64{f(3)}, &Stat{3, 3, 3}},
		{[]*float64{f(5), nil, f(1), f(3)}, &Stat{3, 1, 5}},
		{[]*float64{f(4), f(1), f(2), f(10)}, &Stat{3, 1, 10}},
	} {
		got := stat(tc.in)
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("stat(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestSummaryKeepsTheShellVersionsKeysAndOrder(t *testing.T) {
	cp := int64(380 * 1024)
	runs := []Run{
		{Run: 1, LoadavgBefore: 1.5, ColdNodeReadyS: f(5.5), Idle: &Mem{SkiffKiB: 1000, ControlPlaneKiB: &cp}},
		{Run: 2, LoadavgBefore: 0.5, ColdNodeReadyS: f(6.5), Idle: &Mem{SkiffKiB: 3000, ControlPlaneKiB: &cp}},
	}
	b, err := json.Marshal(summarize(runs))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range regexp.MustCompile(`"([a-z0-9_]+)":(null|\{)`).FindAllSubmatch(b, -1) {
		keys = append(keys, string(m[1]))
	}
	// The keys of the shell version's summary, in its order.
	want := "cold_readyz_s cold_node_ready_s cold_cluster_ready_s cold_coredns_ready_s cold_ingress_ready_s " +
		"warm_readyz_s warm_node_ready_s warm_cluster_ready_s warm_coredns_ready_s warm_ingress_ready_s " +
		"loadavg_1m_before idle_skiff_kib idle_containerd_kib idle_shims_kib idle_total_kib idle_total_pss_kib " +
		"loaded_total_pss_kib idle_control_plane_kib control_plane_readyz_s pods_running_s first_pod_running_s " +
		"pods_per_s loaded_skiff_kib loaded_containerd_kib loaded_shims_kib loaded_shims_pss_kib loaded_total_kib " +
		"loaded_containers_kib delete_s stop_s warm_stop_s helpers_dir_kib"
	if got := strings.Join(keys, " "); got != want {
		t.Fatalf("summary keys:\n%s\nwant\n%s", got, want)
	}
	var s map[string]*Stat
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if *s["cold_node_ready_s"] != (Stat{6, 5.5, 6.5}) || *s["idle_skiff_kib"] != (Stat{2000, 1000, 3000}) ||
		s["pods_running_s"] != nil || s["idle_control_plane_kib"].Median != float64(cp) {
		t.Fatalf("summary: %s", b)
	}
}

func TestSummaryLinesAreThoseOfTheShellVersion(t *testing.T) {
	r := &Report{Summary: Summary{
		"cold_node_ready_s": &Stat{5.7245, 5.5, 6.02},
		"idle_total_kib":    &Stat{600000, 512000, 614400},
		"pods_per_s":        &Stat{1.7, 1.44, 1.8},
	}}
	r.Params.Role, r.Params.Runs, r.Params.IdleSeconds, r.Params.Pods, r.Params.SettleSeconds = "server", 3, 30, 30, 15
	r.Host.Cores = 2
	r.Binary.Bytes = 250 << 20
	var out bytes.Buffer
	printSummary(&out, r, "/tmp/x.json", "/tmp/x.logs")
	text := out.String()
	for _, line := range []string{
		"server node; runs: 3, idle settle: 30s, pods: 30 (settle 15s), cores: 2\n",
		"control plane (for an agent) to /readyz: n/a\n",
		"cold start to node Ready: 5.72 s, range 5.5-6.02\n",
		"idle RSS total: 585.9 MiB, range 500-600\n",
		"30 pods Running: n/a (first pod n/a)\n",
		"pods per second: 1.7, range 1.44-1.8\n",
		"binary: 250 MiB; extracted helpers: n/a\n",
		"raw numbers: /tmp/x.json; logs: /tmp/x.logs\n",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("no line %q in:\n%s", line, text)
		}
	}
	if n := strings.Count(text, "\n"); n != 30 {
		t.Errorf("%d lines, want 30", n)
	}
}

func TestFieldKiBReadsProcStatusAndSmapsRollup(t *testing.T) {
	status := "Name:\tskiff\nVmPeak:\t 2000 kB\nVmRSS:\t  441234 kB\nRssAnon:\t 1 kB\n"
	if got := fieldKiB(bufio.NewScanner(strings.NewReader(status)), "VmRSS"); got != 441234 {
		t.Errorf("VmRSS = %d", got)
	}
	rollup := "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss: 500 kB\nPss: 400 kB\nPss_Anon: 10 kB\nAnonymous: 300 kB\n"
	if got := fieldKiB(bufio.NewScanner(strings.NewReader(rollup)), "Pss"); got != 400 {
		t.Errorf("Pss = %d", got)
	}
	if got := fieldKiB(bufio.NewScanner(strings.NewReader(rollup)), "Swap"); got != 0 {
		t.Errorf("a missing field = %d, want 0", got)
	}
}

func TestProbePassed(t *testing.T) {
	metrics := []byte(`# TYPE prober_probe_total counter
prober_probe_total{container="coredns",namespace="kube-system",pod="coredns-1",pod_uid="u",probe_type="Liveness",result="successful"} 3
prober_probe_total{container="skiff-ingress",namespace="kube-system",pod="i",pod_uid="u",probe_type="Readiness",result="successful"} 1
prober_probe_total{container="coredns",namespace="kube-system",pod="coredns-1",pod_uid="u",probe_type="Readiness",result="failed"} 1
`)
	if probePassed(metrics, "coredns") || !probePassed(metrics, "skiff-ingress") {
		t.Error("only a successful readiness probe counts")
	}
}

func TestLogScannerFindsALineSplitAcrossReads(t *testing.T) {
	log := filepath.Join(t.TempDir(), "server.log")
	write := func(s string) {
		fh, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteString(s)
		fh.Close()
	}
	write("earlier run: msg=\"cluster ready: x\"\n")
	fi, _ := os.Stat(log)
	l := &logScanner{path: log, offset: fi.Size(), re: regexp.MustCompile(`msg="cluster ready`)}
	write("time=1 msg=\"starting\"\ntime=2 msg=\"clus")
	if l.found() {
		t.Fatal("found a line of an earlier run or a partial one")
	}
	write("ter ready: kubeconfig at k\"\n")
	if !l.found() {
		t.Fatal("the line written in two parts was not found")
	}
}

func TestParseOptions(t *testing.T) {
	t.Setenv("BENCH_ROLE", "agent")
	t.Setenv("BENCH_JSON", "/out/node-x.json")
	t.Setenv("BENCH_LOGS", "")
	t.Setenv("BENCH_SETTLE", "5")
	t.Setenv("BENCH_WARM", "0")
	o, err := parseOptions([]string{"1", "5", "3"})
	if err != nil {
		t.Fatal(err)
	}
	if o.runs != 1 || o.idle != 5 || o.pods != 3 || o.settle != 5 || o.warm || o.role != "agent" || o.logs != "/out/node-x.logs" {
		t.Fatalf("options %+v", o)
	}
	for _, args := range [][]string{{"0"}, {"x"}, {"1", "-1"}, {"1", "2", "3", "4"}} {
		if _, err := parseOptions(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	t.Setenv("BENCH_ROLE", "worker")
	if _, err := parseOptions(nil); err == nil {
		t.Error("BENCH_ROLE=worker accepted")
	}
}
