package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
)

// Run is every number of one run, as it goes into the JSON. A nil pointer
// is null: not measured in this run (no pods, no warm restart, a server
// has no control plane of its own) or not seen in time.
type Run struct {
	Run                 int      `json:"run"`
	LoadavgBefore       float64  `json:"loadavg_1m_before"`
	ControlPlaneReadyzS *float64 `json:"control_plane_readyz_s"`
	ColdReadyzS         *float64 `json:"cold_readyz_s"`
	ColdNodeReadyS      *float64 `json:"cold_node_ready_s"`
	ColdClusterReadyS   *float64 `json:"cold_cluster_ready_s"`
	ColdCoreDNSReadyS   *float64 `json:"cold_coredns_ready_s"`
	ColdIngressReadyS   *float64 `json:"cold_ingress_ready_s"`
	Idle                *Mem     `json:"idle"`
	PodsRunningS        *float64 `json:"pods_running_s"`
	FirstPodRunningS    *float64 `json:"first_pod_running_s"`
	PodsPerS            *float64 `json:"pods_per_s"`
	Loaded              *Mem     `json:"loaded"`
	DeleteS             *float64 `json:"delete_s"`
	StopS               *float64 `json:"stop_s"`
	StopExit            int      `json:"stop_exit"`
	WarmReadyzS         *float64 `json:"warm_readyz_s"`
	WarmNodeReadyS      *float64 `json:"warm_node_ready_s"`
	WarmClusterReadyS   *float64 `json:"warm_cluster_ready_s"`
	WarmCoreDNSReadyS   *float64 `json:"warm_coredns_ready_s"`
	WarmIngressReadyS   *float64 `json:"warm_ingress_ready_s"`
	WarmStopS           *float64 `json:"warm_stop_s"`
	HelpersDirKiB       int64    `json:"helpers_dir_kib"`
	DataDirKiB          int64    `json:"data_dir_kib"`
}

// Report is the JSON file: the host, the parameters, every run and the
// summary over the runs. scripts/bench reads it.
type Report struct {
	Date    string `json:"date"`
	Version string `json:"version"`
	Host    struct {
		Cores       int    `json:"cores"`
		MemTotalKiB int64  `json:"mem_total_kib"`
		Kernel      string `json:"kernel"`
	} `json:"host"`
	Params struct {
		Role          string `json:"role"`
		Runs          int    `json:"runs"`
		IdleSeconds   int    `json:"idle_seconds"`
		Pods          int    `json:"pods"`
		SettleSeconds int    `json:"settle_seconds"`
		WarmRestart   bool   `json:"warm_restart"`
	} `json:"params"`
	Binary struct {
		Bytes   int64 `json:"bytes"`
		DiskKiB int64 `json:"disk_kib"`
	} `json:"binary"`
	Runs    []Run   `json:"runs"`
	Summary Summary `json:"summary"`
}

// Stat is the median, min and max of one measurement over the runs.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// stat is the Stat of the values that are not nil; nil when there are
// none. The median of an even count is the mean of the middle two.
func stat(values []*float64) *Stat {
	var v []float64
	for _, x := range values {
		if x != nil {
			v = append(v, *x)
		}
	}
	if len(v) == 0 {
		return nil
	}
	sort.Float64s(v)
	s := &Stat{Min: v[0], Max: v[len(v)-1]}
	if n := len(v); n%2 == 1 {
		s.Median = v[n/2]
	} else {
		s.Median = (v[n/2-1] + v[n/2]) / 2
	}
	return s
}

// summaryFields are the summary's measurements, in the JSON's order.
var summaryFields = []struct {
	key string
	get func(Run) *float64
}{
	{"cold_readyz_s", func(r Run) *float64 { return r.ColdReadyzS }},
	{"cold_node_ready_s", func(r Run) *float64 { return r.ColdNodeReadyS }},
	{"cold_cluster_ready_s", func(r Run) *float64 { return r.ColdClusterReadyS }},
	{"cold_coredns_ready_s", func(r Run) *float64 { return r.ColdCoreDNSReadyS }},
	{"cold_ingress_ready_s", func(r Run) *float64 { return r.ColdIngressReadyS }},
	{"warm_readyz_s", func(r Run) *float64 { return r.WarmReadyzS }},
	{"warm_node_ready_s", func(r Run) *float64 { return r.WarmNodeReadyS }},
	{"warm_cluster_ready_s", func(r Run) *float64 { return r.WarmClusterReadyS }},
	{"warm_coredns_ready_s", func(r Run) *float64 { return r.WarmCoreDNSReadyS }},
	{"warm_ingress_ready_s", func(r Run) *float64 { return r.WarmIngressReadyS }},
	{"loadavg_1m_before", func(r Run) *float64 { return &r.LoadavgBefore }},
	{"idle_skiff_kib", idle(func(m *Mem) int64 { return m.SkiffKiB })},
	{"idle_containerd_kib", idle(func(m *Mem) int64 { return m.ContainerdKiB })},
	{"idle_shims_kib", idle(func(m *Mem) int64 { return m.ShimsKiB })},
	{"idle_total_kib", idle(func(m *Mem) int64 { return m.TotalKiB })},
	{"idle_total_pss_kib", idle(func(m *Mem) int64 { return m.TotalPSSKiB })},
	{"loaded_total_pss_kib", loaded(func(m *Mem) int64 { return m.TotalPSSKiB })},
	{"idle_control_plane_kib", func(r Run) *float64 {
		if r.Idle == nil || r.Idle.ControlPlaneKiB == nil {
			return nil
		}
		return kib(*r.Idle.ControlPlaneKiB)
	}},
	{"control_plane_readyz_s", func(r Run) *float64 { return r.ControlPlaneReadyzS }},
	{"pods_running_s", func(r Run) *float64 { return r.PodsRunningS }},
	{"first_pod_running_s", func(r Run) *float64 { return r.FirstPodRunningS }},
	{"pods_per_s", func(r Run) *float64 { return r.PodsPerS }},
	{"loaded_skiff_kib", loaded(func(m *Mem) int64 { return m.SkiffKiB })},
	{"loaded_containerd_kib", loaded(func(m *Mem) int64 { return m.ContainerdKiB })},
	{"loaded_shims_kib", loaded(func(m *Mem) int64 { return m.ShimsKiB })},
	{"loaded_shims_pss_kib", loaded(func(m *Mem) int64 { return m.ShimsPSSKiB })},
	{"loaded_total_kib", loaded(func(m *Mem) int64 { return m.TotalKiB })},
	{"loaded_containers_kib", loaded(func(m *Mem) int64 { return m.ContainersKiB })},
	{"delete_s", func(r Run) *float64 { return r.DeleteS }},
	{"stop_s", func(r Run) *float64 { return r.StopS }},
	{"warm_stop_s", func(r Run) *float64 { return r.WarmStopS }},
	{"helpers_dir_kib", func(r Run) *float64 { return kib(r.HelpersDirKiB) }},
}

func kib(v int64) *float64 {
	f := float64(v)
	return &f
}

func idle(get func(*Mem) int64) func(Run) *float64 {
	return func(r Run) *float64 {
		if r.Idle == nil {
			return nil
		}
		return kib(get(r.Idle))
	}
}

func loaded(get func(*Mem) int64) func(Run) *float64 {
	return func(r Run) *float64 {
		if r.Loaded == nil {
			return nil
		}
		return kib(get(r.Loaded))
	}
}

// Summary is the Stat of every summaryFields measurement, by key.
type Summary map[string]*Stat

func summarize(runs []Run) Summary {
	s := Summary{}
	for _, f := range summaryFields {
		values := make([]*float64, len(runs))
		for i, r := range runs {
			values[i] = f.get(r)
		}
		s[f.key] = stat(values)
	}
	return s
}

// MarshalJSON writes the keys in summaryFields' order.
func (s Summary) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range summaryFields {
		if i > 0 {
			b.WriteByte(',')
		}
		v, err := json.Marshal(s[f.key])
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%q:%s", f.key, v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// num formats a number as jq prints it: the shortest form that reads
// back the same, no exponent, no trailing ".0".
func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// round rounds to the given decimals, halves away from zero (jq's round).
func round(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(v*p) / p
}

// seconds is a Stat as the summary prints it: "median<unit>, range
// min-max", two decimals; "n/a" when nil.
func seconds(s *Stat, unit string) string {
	if s == nil {
		return "n/a"
	}
	return fmt.Sprintf("%s%s, range %s-%s", num(round(s.Median, 2)), unit, num(round(s.Min, 2)), num(round(s.Max, 2)))
}

// mib is a Stat of KiB as the summary prints it, in MiB with one decimal.
func mib(s *Stat) string {
	if s == nil {
		return "n/a"
	}
	m := func(v float64) string { return num(round(v/1024, 1)) }
	return fmt.Sprintf("%s MiB, range %s-%s", m(s.Median), m(s.Min), m(s.Max))
}

// printSummary writes the summary lines the shell version printed.
func printSummary(w io.Writer, r *Report, jsonPath, logs string) {
	s, n := r.Summary, r.Params.Pods
	fmt.Fprintf(w, "%s node; runs: %d, idle settle: %ds, pods: %d (settle %ds), cores: %d\n",
		r.Params.Role, r.Params.Runs, r.Params.IdleSeconds, n, r.Params.SettleSeconds, r.Host.Cores)
	for _, line := range []string{
		"control plane (for an agent) to /readyz: " + seconds(s["control_plane_readyz_s"], " s"),
		"cold start to /readyz: " + seconds(s["cold_readyz_s"], " s"),
		"cold start to node Ready: " + seconds(s["cold_node_ready_s"], " s"),
		`cold start to "cluster ready" logged: ` + seconds(s["cold_cluster_ready_s"], " s"),
		"cold start to a CoreDNS pod Ready: " + seconds(s["cold_coredns_ready_s"], " s"),
		"cold start to the ingress pod Ready: " + seconds(s["cold_ingress_ready_s"], " s"),
		"warm restart to /readyz: " + seconds(s["warm_readyz_s"], " s"),
		"warm restart to node Ready: " + seconds(s["warm_node_ready_s"], " s"),
		`warm restart to "cluster ready" logged: ` + seconds(s["warm_cluster_ready_s"], " s"),
		"warm restart to a CoreDNS pod Ready: " + seconds(s["warm_coredns_ready_s"], " s"),
		"warm restart to the ingress pod Ready: " + seconds(s["warm_ingress_ready_s"], " s"),
		"idle RSS skiff: " + mib(s["idle_skiff_kib"]),
		"idle RSS containerd: " + mib(s["idle_containerd_kib"]),
		"idle RSS shims: " + mib(s["idle_shims_kib"]),
		"idle RSS total: " + mib(s["idle_total_kib"]),
		"idle PSS total: " + mib(s["idle_total_pss_kib"]),
		"idle RSS of the control plane an agent joined (not in the total): " + mib(s["idle_control_plane_kib"]),
		fmt.Sprintf("%d pods Running: %s (first pod %s)", n, seconds(s["pods_running_s"], " s"), seconds(s["first_pod_running_s"], " s")),
		"pods per second: " + seconds(s["pods_per_s"], ""),
		fmt.Sprintf("RSS with %d pods, skiff: %s", n, mib(s["loaded_skiff_kib"])),
		fmt.Sprintf("RSS with %d pods, containerd: %s", n, mib(s["loaded_containerd_kib"])),
		fmt.Sprintf("RSS with %d pods, shims: %s (PSS %s)", n, mib(s["loaded_shims_kib"]), mib(s["loaded_shims_pss_kib"])),
		fmt.Sprintf("RSS with %d pods, total: %s", n, mib(s["loaded_total_kib"])),
		fmt.Sprintf("PSS with %d pods, total: %s", n, mib(s["loaded_total_pss_kib"])),
		"RSS of the processes in the pods (not in the total): " + mib(s["loaded_containers_kib"]),
		"delete to pods and shims gone: " + seconds(s["delete_s"], " s"),
		"SIGTERM to exit: " + seconds(s["stop_s"], " s"),
		fmt.Sprintf("binary: %d MiB; extracted helpers: %s", r.Binary.Bytes/1048576, mib(s["helpers_dir_kib"])),
	} {
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "raw numbers: %s; logs: %s\n", jsonPath, logs)
}
